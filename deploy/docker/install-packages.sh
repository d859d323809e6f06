#!/bin/sh
# Installs into a runtime image the Debian packages named as arguments and
# those /tmp/packages lists, one a line (runtime-packages.sh's answer for the
# image's binary, copied there from the build stage), then removes the list
# and apt's indexes so the layer keeps only the packages.
# (RPCI_PACKAGE_LIST and RPCI_APT_LISTS move those two paths for its test.)
set -eu
list="${RPCI_PACKAGE_LIST:-/tmp/packages}"
apt_lists="${RPCI_APT_LISTS:-/var/lib/apt/lists}"
apt-get update
if [ -f "$list" ]; then
  # shellcheck disable=SC2046  # one package name a line, no spaces
  set -- "$@" $(cat "$list")
  rm -f "$list"
fi
if [ $# -gt 0 ]; then apt-get install -y --no-install-recommends "$@"; fi
rm -rf "$apt_lists"/*
