#!/usr/bin/env bash
# Installs the Debian 12 packages rpci builds, tests and runs with. Idempotent:
# does nothing (and touches no network) when everything is already present.
set -euo pipefail

PACKAGES=(
  bazel-bootstrap bazel-bootstrap-source build-essential pkg-config
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc libabsl-dev
  rdma-core libibverbs-dev librdmacm-dev ibverbs-providers libfabric-dev libfabric-bin
  ibverbs-utils rdmacm-utils perftest
  nlohmann-json3-dev libcpp-httplib-dev libgtest-dev libgmock-dev
  libpci-dev pciutils libyaml-cpp-dev libssl-dev openssl prometheus-cpp-dev
  iproute2 iputils-ping iptables curl python3 clang libclang-rt-14-dev clang-format universal-ctags
  qemu-system-x86 linux-image-amd64 busybox-static kmod cpio
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "installing: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
