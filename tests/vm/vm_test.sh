#!/usr/bin/env bash
# Bazel test wrapper (tests/vm/vm.bzl): boots the test machine and runs
#   vm_test.sh [--vm-timeout S] BINARY [ARG...]
# inside it from this runfiles tree; the binary's gtest XML becomes this test's
# XML and the guest console log an undeclared output.
set -uo pipefail
vm_timeout=600
if [ "${1:-}" = "--vm-timeout" ]; then vm_timeout="$2"; shift 2; fi
[ $# -ge 1 ] || { echo "vm_test.sh: no binary" >&2; exit 2; }
binary="$PWD/$1"; shift
vm="$PWD/tools/vm.sh"
share="${TEST_TMPDIR:-$(mktemp -d)}/vm-share"
mkdir -p "$share"
export GTEST_OUTPUT="xml:$share/test.xml"
log="${TEST_UNDECLARED_OUTPUTS_DIR:-$share}/guest.log"
"$vm" run --timeout "$vm_timeout" --share "$share" -- "$binary" "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [ -n "${XML_OUTPUT_FILE:-}" ] && [ -s "$share/test.xml" ]; then cp "$share/test.xml" "$XML_OUTPUT_FILE"; fi
exit "$rc"
