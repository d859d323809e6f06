#!/usr/bin/env bash
# The binary answers --help, refuses bad flags, and in local insecure mode
# serves /readyz as leader until SIGTERM.
set -euo pipefail
bin=controller/rpci-controller
"$bin" --help | grep -q -- "--store"
if "$bin" --store=etcd --insecure 2>/dev/null; then echo "bad --store accepted"; exit 1; fi
if "$bin" --no-such-flag 2>/dev/null; then echo "unknown flag accepted"; exit 1; fi
dir="$TEST_TMPDIR/state"
port=$(( 20000 + RANDOM % 20000 ))
"$bin" --store=local --state-dir="$dir" --insecure --listen=127.0.0.1:0 \
  --http-listen=127.0.0.1:$port --log-level=warn &
pid=$!
for i in $(seq 1 50); do
  if out=$(exec 3<>/dev/tcp/127.0.0.1/$port && printf 'GET /readyz HTTP/1.0\r\n\r\n' >&3 && cat <&3); then
    echo "$out" | grep -q leader && break
  fi
  sleep 0.1
done
echo "$out" | grep -q "leader" || { echo "readyz did not say leader: $out"; kill $pid; exit 1; }
kill -TERM $pid
wait $pid
test -f "$dir/lock"
