#!/usr/bin/env bash
# deploy/helm/rpci/files/issue-node-cert.sh issues "<role>:<node>" certificates
# that chain to the chart's CA, carry the node's SANs, and refuses bad input.
set -euo pipefail

script="$TEST_SRCDIR/$TEST_WORKSPACE/deploy/helm/rpci/files/issue-node-cert.sh"
tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/cert.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# A CA like Helm's genCA makes (RSA 2048, self-signed).
mkdir -p "$tmp/ca"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=rpci-ca" \
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
  -keyout "$tmp/ca/tls.key" -out "$tmp/ca/tls.crt" 2>/dev/null

echo "case: issues an agent certificate that chains to the CA"
NODE_NAME=node-a HOST_IP=10.0.0.7 CA_DIR="$tmp/ca" OUT_DIR="$tmp/out" CERT_DAYS=2 sh "$script" agent
openssl verify -CAfile "$tmp/ca/tls.crt" "$tmp/out/tls.crt" >/dev/null || fail "does not chain to the CA"
subject=$(openssl x509 -in "$tmp/out/tls.crt" -noout -subject -nameopt RFC2253)
[ "$subject" = "subject=CN=agent:node-a" ] || fail "subject is \"$subject\""
text=$(openssl x509 -in "$tmp/out/tls.crt" -noout -text)
grep -q "DNS:node-a, IP Address:10.0.0.7" <<<"$text" || fail "SANs missing: $text"
grep -q "TLS Web Server Authentication, TLS Web Client Authentication" <<<"$text" || fail "extended key usage"
[ "$(openssl x509 -in "$tmp/out/tls.crt" -noout -pubkey)" = "$(openssl pkey -in "$tmp/out/tls.key" -pubout)" ] ||
  fail "key does not match the certificate"
cmp -s "$tmp/out/ca.crt" "$tmp/ca/tls.crt" || fail "ca.crt is not the CA"
[ "$(stat -c %a "$tmp/out/tls.key")" = "600" ] || fail "key mode is $(stat -c %a "$tmp/out/tls.key")"
openssl x509 -in "$tmp/out/tls.crt" -noout -checkend $((3 * 86400)) >/dev/null && fail "CERT_DAYS ignored"

echo "case: a plugin certificate without a host IP names only the node"
NODE_NAME=cmp-1 CA_DIR="$tmp/ca" OUT_DIR="$tmp/out2" sh "$script" plugin
subject=$(openssl x509 -in "$tmp/out2/tls.crt" -noout -subject -nameopt RFC2253)
[ "$subject" = "subject=CN=plugin:cmp-1" ] || fail "subject is \"$subject\""
openssl x509 -in "$tmp/out2/tls.crt" -noout -text | grep -q "IP Address" && fail "unexpected IP SAN"

echo "case: refuses an unknown role, a missing node name and a missing CA"
set +e
NODE_NAME=n CA_DIR="$tmp/ca" OUT_DIR="$tmp/x" sh "$script" controller 2>"$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q 'role must be agent or plugin' "$tmp/err" || fail "bad role: rc $rc"
env -u NODE_NAME CA_DIR="$tmp/ca" OUT_DIR="$tmp/x" sh "$script" agent 2>"$tmp/err"; rc=$?
[ $rc -ne 0 ] && grep -q NODE_NAME "$tmp/err" || fail "missing NODE_NAME: rc $rc"
NODE_NAME=n CA_DIR="$tmp/none" OUT_DIR="$tmp/x" sh "$script" agent 2>"$tmp/err"; rc=$?
[ $rc -ne 0 ] && grep -q "$tmp/none/tls.crt is not readable" "$tmp/err" || fail "missing CA: rc $rc"
[ ! -e "$tmp/x/tls.key" ] || fail "wrote a key after failing"
set -e
echo "PASS"
