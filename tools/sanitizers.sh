#!/usr/bin/env bash
# Runs the whole test suite under ASan+UBSan and under TSan, each in its own
# Bazel output base so the default build stays cached:
#   tools/sanitizers.sh [asan|tsan ...]      (default: both)
# Prints one line per sanitizer: "<name>: N passed, M failed, K skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
tools/install_deps.sh || exit 1

configs=("$@")
[ ${#configs[@]} -eq 0 ] && configs=(asan tsan)
status=0
summary=()
for c in "${configs[@]}"; do
  base="$HOME/.cache/rpci-$c-output"
  # Sanitized tests run slower: give them longer timeouts. TSan needs
  # second_deadlock_stack for useful reports; halt_on_error makes a race fail
  # the test. Debian's libraries are not instrumented: tools/sanitizers/*.supp
  # say what that forces us to ignore and why.
  bazel --output_base="$base" test --config="$c" --symlink_prefix=/ //... \
    --test_env=ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:suppressions="$PWD/tools/sanitizers/asan.supp" \
    --test_env=LSAN_OPTIONS=suppressions="$PWD/tools/sanitizers/lsan.supp" \
    --test_env=UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    --test_env=TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions="$PWD/tools/sanitizers/tsan.supp" \
    --test_timeout=300,900,1800,3600
  rc=$?
  line=$(python3 tools/count_tests.py "$rc" bazel --output_base="$base" | tail -1)
  summary+=("$c: ${line#tests: }")
  [ $rc -eq 0 ] || status=1
done
printf '%s\n' "${summary[@]}"
exit $status
