#!/usr/bin/env bash
# One command for the session benchmarks: prints JSON then a table.
set -euo pipefail
cd "$(dirname "$0")/.."
bazel run //bench:session -- "$@"
