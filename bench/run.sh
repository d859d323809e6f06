#!/usr/bin/env bash
# One command for the benchmarks, built optimized (-c opt: figures from a
# -O0 build measure the compiler, not rpci):
#   bench/run.sh [--json] [session|allocate|controller|fabric|metrics ...]
# With no names it runs all five, one after another. Each prints its JSON
# object, then (without --json) a table.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh

flags=()
names=()
for a in "$@"; do
  case "$a" in
    --*) flags+=("$a") ;;
    session|allocate|controller|fabric|metrics) names+=("$a") ;;
    *) echo "bench/run.sh: unknown benchmark \"$a\" (session, allocate, controller, fabric, metrics)" >&2; exit 2 ;;
  esac
done
[ ${#names[@]} -eq 0 ] && names=(session allocate controller fabric metrics)

bazel build -c opt "${names[@]/#/\/\/bench:}"
for n in "${names[@]}"; do
  [ ${#flags[@]} -eq 0 ] && echo "== bench:$n"
  bazel run -c opt --ui_event_filters=-info --noshow_progress "//bench:$n" -- "${flags[@]}"
done
