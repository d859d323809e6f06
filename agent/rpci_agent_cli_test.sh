#!/bin/bash
# rpci-agent as a process: --help, subcommand dispatch, exit codes.
set -u
bin="agent/rpci-agent"
source tools/testing/cli_check.sh
check 0 "inventory" --help
check 2 "usage: rpci-agent" 
check 2 "unknown subcommand \"frobnicate\"" frobnicate
check 0 "--sysfs-root" inventory --help
check 2 "unknown flag --nope" inventory --nope
check 0 "\"bdf\":\"0000:" inventory --json
check 1 "/nonexistent/bus/pci/devices" inventory --sysfs-root /nonexistent
exit $fail
