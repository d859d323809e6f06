#!/usr/bin/env bash
# The installed binary answers --help, refuses bad usage with status 2 and
# reports an unreachable API server with status 1 and a clear message.
set -euo pipefail
bin=kubectl_rpci/kubectl-rpci
"$bin" --help | grep -q "drain <device>"
set +e
"$bin" frobnicate 2>/dev/null; [ $? -eq 2 ] || { echo "unknown command not a usage error"; exit 1; }
"$bin" describe 2>/dev/null; [ $? -eq 2 ] || { echo "describe without a name not a usage error"; exit 1; }
cfg="$TEST_TMPDIR/kubeconfig"
cat > "$cfg" <<CFG
apiVersion: v1
kind: Config
current-context: dead
contexts: [{name: dead, context: {cluster: dead, user: u}}]
clusters: [{name: dead, cluster: {server: "http://127.0.0.1:9"}}]
users: [{name: u, user: {token: t}}]
CFG
out=$(KUBECONFIG="$cfg" "$bin" devices 2>&1); rc=$?
set -e
[ $rc -eq 1 ] || { echo "unreachable API: exit $rc"; exit 1; }
echo "$out" | grep -q "cannot reach the API server at http://127.0.0.1:9" || { echo "message: $out"; exit 1; }
