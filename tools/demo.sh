#!/usr/bin/env bash
# rpci's main job on its embedded default, on one machine:
#   controller (local store)  <-mTLS gRPC->  agent exporting 2 rpci-emu devices
#   plugin + test kubelet     ->  a pod asking for rpci.io/emu: 1
#   the pod's workload (librpci) runs CRC32C and COPY jobs on the remote device,
#   attaching over TLS with the CA and session key the plugin handed it.
# RPCI_DEMO_TLS=0 runs everything in plaintext instead (each daemon is told
# --insecure and warns; without TLS and without it they refuse to start).
# Installs what it needs, builds, prints each step, cleans up. Safe to run
# again, also after a killed run (it stops the leftovers of that run first).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
RUN="${RPCI_DEMO_DIR:-/tmp/rpci-demo}"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf 'demo failed: %s\n' "$*" >&2; exit 1; }

step "1/7 installing what the build needs (only what is missing)"
tools/install_deps.sh || die "package install failed"

step "2/7 building rpci"
TARGETS=(//controller:rpci-controller //agent:rpci-agent //plugin:rpci-plugin
         //tests/kubelet:fake_kubelet_main //tools/certs:rpci-certs //examples:emu_jobs)
bazel build "${TARGETS[@]}" 2>&1 | tail -2
BIN="$(bazel info bazel-bin 2>/dev/null)"
for t in controller/rpci-controller agent/rpci-agent plugin/rpci-plugin tests/kubelet/fake_kubelet_main \
         tools/certs/rpci-certs examples/emu_jobs; do
  [ -x "$BIN/$t" ] || die "build did not produce $t"
done

# Stop what a previous (possibly killed) run left behind.
if [ -d "$RUN" ]; then
  for pidfile in "$RUN"/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
  done
  sleep 0.5
  for pidfile in "$RUN"/*.pid; do
    [ -f "$pidfile" ] && kill -KILL "$(cat "$pidfile")" 2>/dev/null
  done
  rm -rf "$RUN"
fi
mkdir -p "$RUN"/{logs,controller,agent,kubelet,plugin-state,cdi}

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start() {  # name, command...
  local name=$1; shift
  "$@" >"$RUN/logs/$name.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  echo "$pid" >"$RUN/$name.pid"
}
wait_ready() {  # name, url
  for _ in $(seq 1 100); do
    curl -fsS "$2" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  tail -20 "$RUN/logs/$1.log" >&2
  die "$1 did not become ready at $2"
}
CONTROLLER_PORT=$(free_port); CONTROLLER_HTTP=$(free_port)
AGENT_PORT=$(free_port); AGENT_HTTP=$(free_port); PLUGIN_HTTP=$(free_port)

step "3/7 certificates for mutual TLS, and what this machine has"
# Components authenticate each other with mTLS; the workload verifies the agent
# with the CA the plugin copies into its session dir (docs/operators/security.md).
if [ "${RPCI_DEMO_TLS:-1}" != 0 ]; then
  "$BIN/tools/certs/rpci-certs" --dir "$RUN/certs" \
    --names controller,agent:demo-device-server,plugin:demo-compute-node >/dev/null || die "rpci-certs"
  echo "CA and certificates in $RUN/certs (controller, agent:demo-device-server, plugin:demo-compute-node)"
  CONTROLLER_TLS="--tls-cert=$RUN/certs/controller.crt --tls-key=$RUN/certs/controller.key --tls-ca=$RUN/certs/ca.crt"
  AGENT_INSECURE=false
  AGENT_TLS="tls: {cert: $RUN/certs/agent-demo-device-server.crt, key: $RUN/certs/agent-demo-device-server.key, ca: $RUN/certs/ca.crt}"
  PLUGIN_TLS="--tls-cert=$RUN/certs/plugin-demo-compute-node.crt --tls-key=$RUN/certs/plugin-demo-compute-node.key --tls-ca=$RUN/certs/ca.crt"
else
  echo "RPCI_DEMO_TLS=0: control plane and sessions in plaintext on loopback"
  CONTROLLER_TLS="--insecure"; AGENT_INSECURE=true; AGENT_TLS=""; PLUGIN_TLS="--insecure"
fi
echo "PCIe functions on this machine (rpci-agent inventory):"
"$BIN/agent/rpci-agent" inventory | sed 's/^/  /'

step "4/7 starting the controller (local store) and an agent exporting rpci-emu devices"
start controller "$BIN/controller/rpci-controller" --store=local --state-dir="$RUN/controller" \
  --listen="127.0.0.1:$CONTROLLER_PORT" --http-listen="127.0.0.1:$CONTROLLER_HTTP" \
  $CONTROLLER_TLS --reconcile-interval-ms=200
wait_ready controller "http://127.0.0.1:$CONTROLLER_HTTP/readyz"
echo "controller ready: $(curl -fsS "http://127.0.0.1:$CONTROLLER_HTTP/readyz")"
cat >"$RUN/agent.yaml" <<YAML
node: demo-device-server
controller: {address: "127.0.0.1:$CONTROLLER_PORT", insecure: $AGENT_INSECURE}
$AGENT_TLS
session: {listen: "127.0.0.1:$AGENT_PORT", state_dir: $RUN/agent}
fabric: {provider: "tcp;ofi_rxm", address: 127.0.0.1}
emu:
  - {pool: emu, count: 2, dma_size: 8388608}
http: {listen: "127.0.0.1:$AGENT_HTTP"}
YAML
start agent "$BIN/agent/rpci-agent" serve --config="$RUN/agent.yaml"
wait_ready agent "http://127.0.0.1:$AGENT_HTTP/readyz"
echo "agent ready: $(curl -fsS "http://127.0.0.1:$AGENT_HTTP/readyz")"

step "5/7 the compute node: a test kubelet with a pod asking for rpci.io/emu: 1, and the device plugin"
# The kubelet speaks the real device-plugin protocol; once the plugin advertises
# a healthy device it admits the pod (GetPreferredAllocation, Allocate,
# PreStartContainer) and runs the pod's workload with the environment Allocate
# returned, as a container runtime would.
"$BIN/tests/kubelet/fake_kubelet_main" --plugin-dir="$RUN/kubelet" \
  --pod-resources-socket="$RUN/kubelet/pod-resources.sock" --pod=demo/emu-workload --resource=rpci.io/emu \
  --count=1 --wait-seconds=60 -- "$BIN/examples/emu_jobs" >"$RUN/logs/workload.out" 2>"$RUN/logs/kubelet.log" &
KUBELET=$!
PIDS+=("$KUBELET"); echo "$KUBELET" >"$RUN/kubelet.pid"
for _ in $(seq 1 50); do [ -S "$RUN/kubelet/kubelet.sock" ] && break; sleep 0.1; done
start plugin "$BIN/plugin/rpci-plugin" --node=demo-compute-node --controller="127.0.0.1:$CONTROLLER_PORT" \
  --pools=emu --plugin-dir="$RUN/kubelet" --pod-resources-socket="$RUN/kubelet/pod-resources.sock" \
  --cdi-dir="$RUN/cdi" --state-dir="$RUN/plugin-state" --container-dir="$RUN/plugin-state" \
  $PLUGIN_TLS --health-addr="127.0.0.1:$PLUGIN_HTTP"
wait_ready plugin "http://127.0.0.1:$PLUGIN_HTTP/healthz"
echo "plugin serving rpci.io/emu; waiting for the controller to assign a device to this node"

step "6/7 the pod is admitted and its workload uses the remote device through librpci"
wait "$KUBELET"
rc=$?
python3 - "$RUN/logs/kubelet.log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    if e.get("msg") == "pod admitted":
        print("kubelet admitted pod %s with device(s) %s" % (e["pod"], ", ".join(e["devices"])))
        print("  CDI devices: %s" % ", ".join(e.get("cdi_devices", [])))
        for k in sorted(e.get("envs", {})):
            if "KEY" not in k:
                print("  env %s=%s" % (k, e["envs"][k]))
    elif e.get("level") in ("error", "warn"):
        print("kubelet %s: %s %s" % (e["level"], e["msg"], e.get("error", "")))
PY
echo "workload output:"
sed 's/^/  /' "$RUN/logs/workload.out"

step "7/7 what the controller saw"
curl -fsS "http://127.0.0.1:$CONTROLLER_HTTP/metrics" | grep -E '^rpci_controller_(devices|decisions_total)' | sed 's/^/  /'
echo
echo "logs: $RUN/logs/ (one JSON object per line)"
[ $rc -eq 0 ] || die "the pod's workload failed with exit code $rc (see $RUN/logs/)"
echo "demo finished: the workload used a remote rpci-emu device through a mirroring session"
