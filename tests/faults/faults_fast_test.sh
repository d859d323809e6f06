#!/bin/bash
# The fault scenarios fast enough for the default test run (< 20 s each, no
# network namespaces): plugin SIGKILL (b), controller restart during
# allocation (c), kubelet restart (d). tools/faults.sh runs them all.
exec tests/faults/faults --bin_dir="$PWD" --only=b,c,d
