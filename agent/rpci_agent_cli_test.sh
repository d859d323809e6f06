#!/bin/bash
# rpci-agent as a process: --help, subcommand dispatch, exit codes.
set -u
bin="agent/rpci-agent"
fail=0
check() {  # check <want-status> <want-substring> <args...>
  local want="$1" needle="$2"
  shift 2
  local out status
  out="$("$bin" "$@" 2>&1)"
  status=$?
  if [[ "$status" != "$want" ]]; then
    echo "FAIL: rpci-agent $*: exit $status, want $want"; echo "$out"; fail=1
  elif [[ "$out" != *"$needle"* ]]; then
    echo "FAIL: rpci-agent $*: output lacks \"$needle\""; echo "$out"; fail=1
  else
    echo "ok: rpci-agent $*"
  fi
}
check 0 "inventory" --help
check 2 "usage: rpci-agent" 
check 2 "unknown subcommand \"frobnicate\"" frobnicate
check 0 "--sysfs-root" inventory --help
check 2 "unknown flag --nope" inventory --nope
check 0 "\"bdf\":\"0000:" inventory --json
check 1 "/nonexistent/bus/pci/devices" inventory --sysfs-root /nonexistent
exit $fail
