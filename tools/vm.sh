#!/usr/bin/env bash
# The test machine: a QEMU guest (TCG) running this host's Debian kernel with an
# emulated Intel IOMMU, QEMU's `edu` device and an NVMe controller (each behind its
# own PCIe root port, so each has its own IOMMU group and a reset: bus for edu,
# FLR for nvme), and the
# host's / shared read-only over 9p under a tmpfs overlay. Runs one command in
# it and powers it off.
#
#   tools/vm.sh run [options] [--] COMMAND [ARG...]
#     --timeout SECONDS   kill the guest after this long (default 300)
#     --share DIR         host directory the guest sees writable at the same path
#                         (results, logs); default: a temp dir, named in $RPCI_VM_SHARE
#     --hostfwd RULE      QEMU user-net host forward, e.g. tcp:127.0.0.1:7000-:7000
#     --mem SIZE          guest memory (default 2G)
#   tools/vm.sh initramfs OUT   writes the guest's initramfs to OUT
#
# COMMAND runs as root in the guest (in a chroot of the overlay) with this
# shell's environment and working directory; its stdout and stderr are the
# guest console's, its exit status is this script's. 124 when the guest timed
# out, 125 when the guest ended without reporting a status. qemu never outlives
# this script (trap). Needs: qemu-system-x86, linux-image-amd64, busybox-static
# (tools/install_deps.sh).
set -euo pipefail

work=""
qemu_pid=""
KVER="${RPCI_VM_KERNEL:-$(ls /boot/vmlinuz-* 2>/dev/null | sed 's|/boot/vmlinuz-||' | sort -V | tail -1)}"
KERNEL="/boot/vmlinuz-$KVER"
MODDIR="/lib/modules/$KVER"
# Modules the initramfs loads itself (to reach the root over 9p); the rest load
# in the guest through the host's modprobe.
INITRD_MODULES=(virtio_pci virtio_net 9pnet_virtio 9p overlay)

die() { echo "vm.sh: $*" >&2; exit 2; }

# Prints the .ko paths for `module` and its dependencies, dependencies first.
module_closure() {
  local name="$1" line path deps d
  line="$(grep -E "(^|/)${name//_/[-_]}\.ko:" "$MODDIR/modules.dep" | head -1)" || die "no module $name in $MODDIR"
  path="${line%%:*}"
  deps="${line#*:}"
  # modules.dep lists the full closure of each module, nearest first.
  for d in $deps; do echo "$d"; done | tac
  echo "$path"
}

write_init() {
  cat <<'EOF'
#!/bin/busybox sh
# rpci test machine init: mount the host root, run the command, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules.order); do insmod "/$m" 2>/dev/null; done
fail() { echo "vm init: $*"; poweroff -f; }
mkdir -p /host /rw /newroot /results
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,cache=loose,ro hostroot /host || fail "mount host root"
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 results /results || fail "mount results share"
mount -t tmpfs -o size=75% tmpfs /rw
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work /newroot || fail "mount overlay"
for d in proc sys dev tmp run; do mkdir -p /newroot/$d; done
mount -t proc proc /newroot/proc
mount -t sysfs sys /newroot/sys
mount -t devtmpfs dev /newroot/dev
mkdir -p /newroot/dev/pts /newroot/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /newroot/dev/pts
mount -t tmpfs tmpfs /newroot/dev/shm
ln -sf /proc/self/fd /newroot/dev/fd 2>/dev/null
mount -t tmpfs tmpfs /newroot/tmp
mount -t tmpfs tmpfs /newroot/run
. /results/.vm/config
mkdir -p "/newroot$SHARE"
mount --bind /results "/newroot$SHARE"
stty -F /dev/console -onlcr 2>/dev/null
ip link set lo up
# Networking for hostfwd (QEMU user net: 10.0.2.15/24, gateway 10.0.2.2).
if [ -e /sys/class/net/eth0 ]; then
  ip link set eth0 up && ip addr add 10.0.2.15/24 dev eth0 && ip route add default via 10.0.2.2
fi
echo "vm: booted in $(cut -d' ' -f1 /proc/uptime) s"
chroot /newroot /bin/bash "$SHARE/.vm/cmd.sh" </dev/console >/dev/console 2>&1
echo $? > /results/.vm/rc
sync
poweroff -f
EOF
}

write_modprobe() {
  cat <<'EOF'
#!/bin/sh
# The kernel's module autoload calls this (the initramfs' /sbin/modprobe);
# the modules and the real modprobe are the host's, in the new root.
exec /bin/chroot /newroot /sbin/modprobe "$@"
EOF
}

build_initramfs() {
  local out="$1" dir
  [ -r "$KERNEL" ] || die "no kernel $KERNEL (install linux-image-amd64)"
  [ -x /bin/busybox ] || die "no /bin/busybox (install busybox-static)"
  dir="$(mktemp -d)"
  mkdir -p "$dir/bin" "$dir/sbin" "$dir/proc" "$dir/sys" "$dir/dev"
  cp /bin/busybox "$dir/bin/busybox"
  local m p
  : > "$dir/modules.order"
  for m in "${INITRD_MODULES[@]}"; do
    for p in $(module_closure "$m"); do
      grep -qxF "$p" "$dir/modules.order" && continue
      mkdir -p "$dir/$(dirname "$p")"
      cp "$MODDIR/$p" "$dir/$p"
      echo "$p" >> "$dir/modules.order"
    done
  done
  write_init > "$dir/init"
  write_modprobe > "$dir/sbin/modprobe"
  chmod +x "$dir/init" "$dir/sbin/modprobe"
  (cd "$dir" && find . | cpio -o -H newc --quiet) | gzip -1 > "$out"
  rm -rf "$dir"
}

# Writes the script the guest runs: this environment, cwd, then the command.
write_cmd() {
  local file="$1"; shift
  {
    echo "# generated by tools/vm.sh"
    export -p | grep -vE '^declare -x (PWD|OLDPWD|SHLVL|_|TERM)='
    echo 'export PATH="$PATH:/usr/sbin:/sbin"'
    printf 'cd %q || exit 126\n' "$PWD"
    printf 'exec'
    printf ' %q' "$@"
    printf '\n'
  } > "$file"
}

run() {
  local timeout=300 share="" mem=2G hostfwd=()
  while [ $# -gt 0 ]; do
    case "$1" in
      --timeout) timeout="$2"; shift 2 ;;
      --share) share="$2"; shift 2 ;;
      --hostfwd) hostfwd+=("$2"); shift 2 ;;
      --mem) mem="$2"; shift 2 ;;
      --) shift; break ;;
      -*) die "unknown option $1" ;;
      *) break ;;
    esac
  done
  [ $# -gt 0 ] || die "run: no command"
  command -v qemu-system-x86_64 >/dev/null || die "no qemu-system-x86_64 (install qemu-system-x86)"

  work="$(mktemp -d "${TMPDIR:-/tmp}/rpci-vm.XXXXXX")"
  if [ -z "$share" ]; then share="$work/share"; fi
  mkdir -p "$share/.vm"
  share="$(cd "$share" && pwd)"
  rm -f "$share/.vm/rc"
  export RPCI_VM_SHARE="$share"
  printf 'SHARE=%q\n' "$share" > "$share/.vm/config"
  write_cmd "$share/.vm/cmd.sh" "$@"
  build_initramfs "$work/initramfs.gz"
  truncate -s 64M "$work/nvme.img"

  local net="user,id=n0"
  local r
  for r in "${hostfwd[@]}"; do net+=",hostfwd=$r"; done

  cleanup() {
    if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then kill -KILL "$qemu_pid" 2>/dev/null || true; fi
    rm -rf "$work"
  }
  trap cleanup EXIT
  trap 'exit 143' INT TERM

  local start end
  start=$(date +%s.%N)
  qemu-system-x86_64 \
    -machine q35,kernel-irqchip=split -accel tcg,thread=multi -cpu max -m "$mem" -smp 2 \
    -nographic -no-reboot -monitor none -serial stdio \
    -device intel-iommu,intremap=on,caching-mode=on \
    -device pcie-root-port,id=rp1,chassis=1,slot=1 -device edu,bus=rp1 -device pcie-root-port,id=rp2,chassis=2,slot=2 \
    -drive "file=$work/nvme.img,if=none,id=nvm,format=raw" -device nvme,serial=rpci0001,drive=nvm,bus=rp2 \
    -netdev "$net" -device virtio-net-pci,netdev=n0,romfile= \
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
    -virtfs "local,path=$share,mount_tag=results,security_model=none,multidevs=remap" \
    -kernel "$KERNEL" -initrd "$work/initramfs.gz" \
    -append "console=ttyS0 intel_iommu=on iommu=pt quiet loglevel=3 no_timer_check panic=-1 rdinit=/init" \
    </dev/null &
  qemu_pid=$!
  local waited=0
  while kill -0 "$qemu_pid" 2>/dev/null; do
    if [ "$waited" -ge "$((timeout * 10))" ]; then
      echo "vm.sh: guest timed out after ${timeout}s; killing it" >&2
      kill -KILL "$qemu_pid" 2>/dev/null || true
      wait "$qemu_pid" 2>/dev/null || true
      return 124
    fi
    sleep 0.1
    waited=$((waited + 1))
  done
  wait "$qemu_pid" || true
  qemu_pid=""
  end=$(date +%s.%N)
  awk -v a="$start" -v b="$end" 'BEGIN { printf "vm.sh: guest ran %.1f s\n", b - a }' >&2
  if [ ! -s "$share/.vm/rc" ]; then
    echo "vm.sh: the guest ended without reporting a status" >&2
    return 125
  fi
  return "$(cat "$share/.vm/rc")"
}

case "${1:-}" in
  run) shift; run "$@" ;;
  initramfs) [ $# -eq 2 ] || die "usage: vm.sh initramfs OUT"; build_initramfs "$2" ;;
  -h|--help|"") sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) die "unknown verb $1 (run, initramfs, --help)" ;;
esac
