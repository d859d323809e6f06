#!/usr/bin/env bash
# Verbs figures: rpci's session and fabric benchmarks over verbs;ofi_rxm on
# Soft-RoCE (rdma_rxe) in the test machine (tools/vm.sh), next to the same
# rxe device's own ping-pong and bandwidth measured in the same run:
#   fi_pingpong -p "verbs;ofi_rxm" -e rdm   (libfabric's message ping-pong)
#   ib_write_lat / ib_write_bw               (perftest, raw RDMA write)
# rxe under TCG is slow: the ratios are the result, not the absolute numbers.
#
#   bench/verbs.sh [--json]     (host: builds -c opt, boots the guest)
# Prints one JSON object (raw figures and ratios), then (without --json) a
# table. The guest half is this script with --guest.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--guest" ]; then
  json_only="${1:-}"
  tools/install_deps.sh
  bazel build -c opt //bench:session //bench:fabric
  bin="$(bazel info -c opt bazel-bin 2>/dev/null)"
  share="$(mktemp -d /tmp/rpci-bench-verbs.XXXXXX)"
  tools/vm.sh run --timeout 1500 --share "$share" -- "$PWD/bench/verbs.sh" --guest "$bin" "$share" >&2
  if [ "$json_only" = "--json" ]; then
    cat "$share/verbs.json"
  else
    cat "$share/verbs.json"
    python3 - "$share/verbs.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print("\n%-44s %12s" % ("figure (Soft-RoCE under TCG)", "value"))
for k in sorted(d):
    if isinstance(d[k], (int, float)):
        print("%-44s %12.3f" % (k, d[k]))
PY
  fi
  echo "bench/verbs.sh: guest log and JSON in $share" >&2
  exit 0
fi

# ---- in the guest ----
bin="$2"; out="$3"
export FI_UNIVERSE_SIZE=64   # what common/fabric sets for verbs (docs/agent.md)
modprobe rdma_rxe
ip link add rpcib0 type veth peer name rpcib1
ip addr add 10.99.0.1/24 dev rpcib0
ip link set rpcib0 up; ip link set rpcib1 up
rdma link add rxeb0 type rxe netdev rpcib0
for _ in $(seq 100); do
  grep -q ACTIVE /sys/class/infiniband/rxeb0/ports/1/state && \
    grep -q ffff:0a63:0001 /sys/class/infiniband/rxeb0/ports/1/gids/* 2>/dev/null && break
  sleep 0.1
done
addr=10.99.0.1   # both ends on one rxe device: rxe loops the packets back itself
log="$out/guest-bench.log"; : > "$log"

# Runs the client/server tool "$@": a server in the background, the client
# against $addr; prints the client's output (both logged).
client_server() {
  "$@" >>"$log" 2>&1 &
  local srv=$! result
  sleep 1
  result="$("$@" "$addr" 2>>"$log")" || true
  wait "$srv" || true
  echo "$result" >>"$log"
  echo "$result"
}

# libfabric's own ping-pong, 64-byte messages (usec/xfer: half a round trip).
pp="$(client_server fi_pingpong -p "verbs;ofi_rxm" -e rdm -d rxeb0 -I 2000 -S 64)"
pp_usec="$(echo "$pp" | awk '$1 ~ /^64$/ {print $7; exit}')"
# perftest on the same device: 8-byte write latency (t_typical, one way) and
# 1 MiB write bandwidth.
lat="$(client_server ib_write_lat -d rxeb0 -x 1 -s 8 -n 2000)"
lat_usec="$(echo "$lat" | awk '$1 == "8" {print $5; exit}')"
bw="$(client_server ib_write_bw -d rxeb0 -x 1 -s 1048576 -n 200)"
bw_mbps="$(echo "$bw" | awk '$1 == "1048576" {print $4; exit}')"

"$bin/bench/session" --json --provider="verbs;ofi_rxm" --node="$addr" --scale=20 > "$out/session.json" 2>>"$log"
"$bin/bench/fabric" --json --provider="verbs;ofi_rxm" --node="$addr" --total_mb=256 --tcp_mb=256 \
  > "$out/fabric.json" 2>>"$log"

python3 - "$out" "${pp_usec:-0}" "${lat_usec:-0}" "${bw_mbps:-0}" <<'PY'
import json, sys
out, pp_usec, lat_usec, bw_mbps = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = json.load(open(out + "/session.json"))
f = json.load(open(out + "/fabric.json"))
bw_gbps = bw_mbps * 8 * 1.048576 / 1000  # perftest MB/sec is MiB/s
d = {
    "device": "rxe (Soft-RoCE) on a veth, QEMU TCG guest",
    "fi_pingpong_rtt_us": 2 * pp_usec,
    "ib_write_lat_rtt_us": 2 * lat_usec,
    "ib_write_bw_gbps": bw_gbps,
    "session_doorbell_rtt_us_p50": s["doorbell_rtt_us_p50"],
    "session_mmio_write_us_p50": s["mmio_write_us_p50"],
    "session_mirror_gbps_1mib": s["mirror_gbps_1mib"],
    "session_open_ms_p50": s["open_ms_p50"],
    "fabric_rma_write_gbps": f.get("rma_gbps", f.get("rma_write_gbps", 0)),
}
def ratio(a, b): return a / b if b else 0
d["doorbell_rtt_vs_fi_pingpong_rtt"] = ratio(d["session_doorbell_rtt_us_p50"], d["fi_pingpong_rtt_us"])
d["doorbell_rtt_vs_ib_write_lat_rtt"] = ratio(d["session_doorbell_rtt_us_p50"], d["ib_write_lat_rtt_us"])
d["mmio_write_vs_fi_pingpong_rtt"] = ratio(d["session_mmio_write_us_p50"], d["fi_pingpong_rtt_us"])
d["mirror_gbps_vs_ib_write_bw"] = ratio(d["session_mirror_gbps_1mib"], d["ib_write_bw_gbps"])
d["rma_write_gbps_vs_ib_write_bw"] = ratio(d["fabric_rma_write_gbps"], d["ib_write_bw_gbps"])
# The device round trip (rpci-emu, bench/device_roundtrip.h) on the same rxe
# device: against a TCP request/response over the same veth and against the
# fabric's own floor (RMA write + message each way) in the same run.
for k in ("device_roundtrip_ratio_1mib", "device_roundtrip_floor_ratio_1mib",
          "device_roundtrip_floor_vs_device_1mib", "device_roundtrip_error"):
    if k in s:
        d[k] = s[k]
d["session"] = s
d["fabric"] = f
json.dump(d, open(out + "/verbs.json", "w"))
PY
