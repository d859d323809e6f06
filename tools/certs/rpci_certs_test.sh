#!/usr/bin/env bash
# rpci-certs writes a CA and certificates that openssl verifies against it,
# with the requested common names.
set -euo pipefail
bin="$TEST_SRCDIR/rpci/tools/certs/rpci-certs"
dir="$TEST_TMPDIR/certs"
"$bin" --help | grep -q -- "--names"
if "$bin" --dir "$dir" 2>/dev/null; then echo "missing --names accepted"; exit 1; fi
"$bin" --dir "$dir" --names controller,agent:node-a >/dev/null
for n in controller agent-node-a; do
  openssl verify -CAfile "$dir/ca.crt" "$dir/$n.crt" | grep -q ": OK"
  [ "$(stat -c %a "$dir/$n.key")" = 600 ]
done
openssl x509 -in "$dir/agent-node-a.crt" -noout -subject | grep -q "CN = agent:node-a"
openssl x509 -in "$dir/agent-node-a.crt" -noout -ext subjectAltName | grep -q "IP Address:127.0.0.1"
echo PASS
