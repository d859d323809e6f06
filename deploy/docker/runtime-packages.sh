#!/bin/sh
# Prints the Debian packages that provide the shared libraries the given
# binaries load (ldd), one per line, sorted. The Dockerfile's build stage runs
# it so each runtime image installs exactly what its binary links against.
# Fails naming the library when no installed package owns one.
set -eu
[ $# -gt 0 ] || { echo "usage: runtime-packages.sh BINARY..." >&2; exit 2; }
for binary in "$@"; do
  [ -x "$binary" ] || { echo "runtime-packages: $binary is not an executable" >&2; exit 1; }
done
libs=$(for binary in "$@"; do
  ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u)
packages=""
for lib in $libs; do
  real=$(readlink -f "$lib")
  owner=""
  # Debian 12 is usr-merged: a library may be registered under /lib or /usr/lib.
  for path in "$lib" "$real" "/usr$lib" "${lib#/usr}" "/usr$real" "${real#/usr}"; do
    if out=$(dpkg-query -S "$path" 2>/dev/null); then
      owner=$(echo "$out" | head -n1 | cut -d: -f1)
      break
    fi
  done
  [ -n "$owner" ] || { echo "runtime-packages: no package owns $lib" >&2; exit 1; }
  packages="$packages $owner"
done
for p in $packages; do echo "$p"; done | sort -u
