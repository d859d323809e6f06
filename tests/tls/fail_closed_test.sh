#!/bin/bash
# Every daemon fails closed: told nothing about TLS it refuses to start
# (exit 2, naming the flags that fix it); half-given TLS files are refused;
# --insecure runs, with a warning at start.
set -u
tmp="$(mktemp -d /tmp/fail-closed.XXXXXX)"
trap 'rm -rf "$tmp"' EXIT
source tools/testing/cli_check.sh
refusal="refusing to run without peer authentication"

bin="controller/rpci-controller"
check 2 "$refusal" --store=local --state-dir="$tmp/ctl" --listen=127.0.0.1:0 --http-listen=127.0.0.1:0
check 2 "cert, key and ca are all required" --store=local --state-dir="$tmp/ctl" --tls-cert="$tmp/x.crt"
check 2 "insecure is set together with TLS files" --store=local --state-dir="$tmp/ctl" --insecure --tls-ca="$tmp/ca.crt"
check 2 "needs TLS, not --insecure" --store=local --state-dir="$tmp/ctl" --insecure --identity-listen=127.0.0.1:0

bin="agent/rpci-agent"
check 2 "$refusal" serve --node=dev-a --controller=127.0.0.1:1 --emu-count=1
check 2 "identity-address, token-file, cert-dir and ca together" serve --node=dev-a --controller=127.0.0.1:1 \
  --emu-count=1 --identity-address=127.0.0.1:1 --tls-ca="$tmp/ca.crt"

bin="plugin/rpci-plugin"
check 2 "$refusal" --node=cmp-a --controller=127.0.0.1:1 --plugin-dir="$tmp/kubelet" --health-addr=
check 2 "cert, key and ca are all required" --node=cmp-a --tls-cert="$tmp/x.crt" --tls-key="$tmp/x.key"

# --insecure starts and says so, loudly, every time.
started() {  # <log> <command...>: runs the daemon 2 s, then stops it
  local log="$1"; shift
  timeout -s TERM 2 "$@" >"$log" 2>&1
  if ! grep -q '"level":"warn".*WITHOUT TLS (insecure)' "$log"; then
    echo "FAIL: $1 --insecure: no warning at start"; cat "$log"; fail=1
  else
    echo "ok: $(basename "$1") --insecure warns at start"
  fi
}
mkdir -p "$tmp/state" "$tmp/kubelet"
started "$tmp/ctl.log" controller/rpci-controller --store=local --state-dir="$tmp/ctl" --insecure \
  --listen=127.0.0.1:0 --http-listen=127.0.0.1:0
started "$tmp/agent.log" agent/rpci-agent serve --node=dev-a --controller=127.0.0.1:1 --insecure --emu-count=1 \
  --session-listen=127.0.0.1:0 --http-listen= --state-dir="$tmp/state" --fabric-provider='tcp;ofi_rxm' \
  --fabric-address=127.0.0.1
started "$tmp/plugin.log" plugin/rpci-plugin --node=cmp-a --controller=127.0.0.1:1 --insecure \
  --plugin-dir="$tmp/kubelet" --health-addr= --state-dir="$tmp/state" --cdi-dir="$tmp/cdi"
exit $fail
