#!/bin/bash
# `rpci-agent serve` as a process: --help, bad flags and bad config exit 2
# with the key named.
set -u
bin="agent/rpci-agent"
tmp="$(mktemp -d /tmp/serve-cli.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
source tools/testing/cli_check.sh
check 0 "serve" --help
check 0 "--fabric-provider" serve --help
check 0 "--emu-count" serve --help
check 2 "unknown flag --nope" serve --nope
check 2 "controller.address: required" serve --node=dev-a --insecure --emu-count=1
check 2 "fabric.provider" serve --node=dev-a --controller=127.0.0.1:1 --insecure --emu-count=1 --fabric-provider=udp
printf 'node: dev-a\nsesion: {listen: ":1"}\n' >"$tmp/typo.yaml"
check 2 "sesion" serve --config="$tmp/typo.yaml"
check 2 "cannot open config file" serve --config="$tmp/missing.yaml"

# The daemon itself: serves /healthz, is not ready without a controller,
# logs JSON lines and exits 0 on SIGTERM.
port=$((20000 + RANDOM % 20000))
mkdir -p "$tmp/state"
"$bin" serve --node=dev-a --controller=127.0.0.1:1 --insecure --emu-count=2 \
  --session-listen=127.0.0.1:0 --http-listen=127.0.0.1:$port --state-dir="$tmp/state" \
  --fabric-provider='tcp;ofi_rxm' --fabric-address=127.0.0.1 2>"$tmp/log" &
pid=$!
health=""
for _ in $(seq 100); do
  health="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" && [[ "$health" == 200 ]] && break
  sleep 0.05
done
ready="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz")"
kill -TERM "$pid"
wait "$pid"
status=$?
if [[ "$health" != 200 || "$ready" != 503 || "$status" != 0 ]]; then
  echo "FAIL: serve: healthz $health (want 200), readyz $ready (want 503), exit $status (want 0)"
  cat "$tmp/log"; fail=1
elif ! grep -q '"msg":"signal received; shutting down"' "$tmp/log" && ! grep -q 'signal received; shutting down' "$tmp/log"; then
  echo "FAIL: serve: no shutdown log line"; cat "$tmp/log"; fail=1
elif ! head -1 "$tmp/log" | python3 -c 'import json,sys; json.loads(sys.stdin.readline())'; then
  echo "FAIL: serve: log is not JSON lines"; cat "$tmp/log"; fail=1
else
  echo "ok: rpci-agent serve runs, answers /healthz and /readyz, stops on SIGTERM"
fi
exit $fail
