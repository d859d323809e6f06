# Sourced by CLI process tests. check <want-status> <want-substring> <args...>
# runs "$bin" with args and records a failure in $fail when the exit status or
# the combined output is not what is wanted.
fail=0
check() {
  local want="$1" needle="$2"
  shift 2
  local out status
  out="$("$bin" "$@" 2>&1)"
  status=$?
  if [[ "$status" != "$want" ]]; then
    echo "FAIL: $(basename "$bin") $*: exit $status, want $want"; echo "$out"; fail=1
  elif [[ "$out" != *"$needle"* ]]; then
    echo "FAIL: $(basename "$bin") $*: output lacks \"$needle\""; echo "$out"; fail=1
  else
    echo "ok: $(basename "$bin") $*"
  fi
}
