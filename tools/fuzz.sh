#!/usr/bin/env bash
# Runs every libFuzzer target for a bounded time each (default 60 s):
#   tools/fuzz.sh [seconds] [target-name ...]
# Builds with clang in a separate Bazel output base so the default build
# (gcc) stays cached. New crashers are left in fuzz/findings/<target>/; copy
# them into fuzz/corpus/<target>/ to make them regression tests.
set -uo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh
command -v clang >/dev/null || { echo "clang missing: apt-get install clang libclang-rt-14-dev" >&2; exit 1; }

seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^ *name = "\(.*\)",$/\1/p' fuzz/BUILD.bazel | grep -v regression_main)
fi

BAZEL=(bazel --output_base="$HOME/.cache/rpci-fuzz-output")
bin="$("${BAZEL[@]}" info --config=fuzz bazel-bin 2>/dev/null)/fuzz"
# No stale binary may stand in for one that no longer builds.
for t in "${targets[@]}"; do rm -f "$bin/${t}_fuzzer"; done
# --keep_going: a target whose dependencies do not build is reported as
# "not built" instead of stopping every other target.
"${BAZEL[@]}" build --config=fuzz --symlink_prefix=/ --keep_going $(printf '//fuzz:%s_fuzzer ' "${targets[@]}")

printf '%-18s %10s %10s %8s %s\n' target runs exec/s corpus result
failed=0
for t in "${targets[@]}"; do
  if [ ! -x "$bin/${t}_fuzzer" ]; then
    printf '%-18s %10s %10s %8s %s\n' "$t" - - - "NOT BUILT (see the build errors above)"
    failed=1
    continue
  fi
  work="$(mktemp -d)"
  cp fuzz/corpus/"$t"/* "$work"/ 2>/dev/null
  mkdir -p "fuzz/findings/$t"
  log="$work.log"
  "$bin/${t}_fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 \
    -artifact_prefix="fuzz/findings/$t/" "$work" >"$log" 2>&1
  rc=$?
  runs=$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | awk '{print $2}')
  [ -n "$runs" ] || runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  execs=$(grep -o 'exec/s: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  corpus=$(ls "$work" | wc -l)
  result=clean
  if [ $rc -ne 0 ]; then result="CRASH (see $log, fuzz/findings/$t/)"; failed=1; fi
  printf '%-18s %10s %10s %8s %s\n' "$t" "${runs:-?}" "${execs:-?}" "$corpus" "$result"
done
exit $failed
