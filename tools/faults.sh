#!/usr/bin/env bash
# rpci's fault-injection suite (issue 8 part 1): builds the binaries, then runs
# every scenario (tests/faults/faults_main.cc) against the real controller,
# agent, plugin and the test kubelet, and prints the table scenario ->
# outcome. Needs root (network namespaces). Takes a few minutes.
#   tools/faults.sh            # all scenarios
#   tools/faults.sh --only=a,e # some of them
set -uo pipefail
cd "$(dirname "$0")/.."
TARGETS=(//tests/faults:faults //tests/faults:stream_workload //tests/session:agent_helper
         //tests/session:client_helper //agent:rpci-agent //controller:rpci-controller //plugin:rpci-plugin)
bazel build "${TARGETS[@]}" 2>&1 | tail -2
BIN="$(bazel info bazel-bin 2>/dev/null)"
[ -x "$BIN/tests/faults/faults" ] || { echo "faults: build failed" >&2; exit 1; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
exec $SUDO "$BIN/tests/faults/faults" --bin_dir="$BIN" "$@"
