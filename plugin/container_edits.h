#ifndef RPCI_PLUGIN_CONTAINER_EDITS_H_
#define RPCI_PLUGIN_CONTAINER_EDITS_H_

// What a container gets for its attached devices: environment for librpci,
// the per-session directory mount, CDI device names and CDI spec files.
// docs/plugin.md lists the names; this file is where they are made.

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/files.h"  // WriteFileAtomically, for the session files and specs
#include "plugin/session_opener.h"
#include "proto/rpci/v1/device.pb.h"
#include "third_party/kubelet/deviceplugin/v1beta1/api.pb.h"

namespace rpci::plugin {

// Where one device's session files live on the host and in the container.
struct SessionPaths {
  std::string host_dir;       // <state_dir>/<device-id>
  std::string container_dir;  // <container_root>/<device-id>
};

SessionPaths PathsFor(const std::string& state_dir, const std::string& container_root,
                      const std::string& device_id);

// Writes <host_dir>/key (hex), <host_dir>/ca.crt when the session has a CA
// (the agent speaks TLS; removed otherwise) and <host_dir>/session.json
// (everything but the key). Replaces what was there. The key is 0600 root's
// (only a root workload reads it); with `session_group` >= 0 it is 0640 and
// the directory 0750, both of that group, so a non-root workload whose pod
// has the group in securityContext.supplementalGroups reads it
// (docs/operators/security.md).
absl::Status WriteSessionDir(const AttachedSession& session, const SessionPaths& paths, int session_group = -1);
// Removes the directory and its files; OK when absent.
absl::Status RemoveSessionDir(const SessionPaths& paths);

// Environment entries of the device at `index` within one container:
// RPCI_<index>_DEVICE_ID, _SESSION_ENDPOINT, _SESSION_ID, _SESSION_KEY_FILE,
// _SESSION_DIR, _FABRIC_PROVIDER, _BARS ("<bar>:<size>,..."), _DMA_SIZE and,
// when the session has a CA, _CA_FILE.
std::map<std::string, std::string> DeviceEnv(int index, const AttachedSession& session, const SessionPaths& paths);

// /dev/infiniband/rdma_cm: RDMA connection setup, which verbs;ofi_rxm uses.
inline constexpr char kRdmaCmDevice[] = "/dev/infiniband/rdma_cm";

// The device nodes a workload needs to reach its agent over
// `fabric_provider`: with verbs;ofi_rxm, the uverbs device of the NIC whose
// port runs on `netdev` (the device holding the local address that reaches
// the agent: the NIC the workload's fabric binds to) and rdma_cm; nothing
// for other providers. FAILED_PRECONDITION, naming the netdev and the NICs
// seen, when no NIC runs on it (the workload could not open the fabric).
absl::StatusOr<std::vector<std::string>> FabricDeviceNodes(const std::string& fabric_provider,
                                                            const std::string& netdev,
                                                            const std::vector<rpci::v1::RdmaNic>& nics);

// FabricDeviceNodes for a session with the agent at `endpoint` (host:port)
// from this host: the netdev is the one holding the route's source address
// to the agent's host, the NICs those under <sysfs_root>/class/infiniband.
absl::StatusOr<std::vector<std::string>> SessionDeviceNodes(const std::string& fabric_provider,
                                                             const std::string& endpoint,
                                                             const std::string& sysfs_root);

// The devices-wide part of a container's environment: RPCI_DEVICE_IDS,
// RPCI_DEVICE_COUNT, RPCI_POOL and, for device 0, the unindexed
// RPCI_SESSION_ENDPOINT / RPCI_SESSION_ID / RPCI_SESSION_KEY_FILE (and
// RPCI_CA_FILE).
std::map<std::string, std::string> SummaryEnv(const std::string& pool, const std::vector<AttachedSession>& sessions,
                                              const std::vector<SessionPaths>& paths);

// How each device's edits (its indexed env, session-dir mount and device
// nodes) reach the container: in the Allocate response itself, or in a CDI
// spec per device (WriteCdiSpec) that the response names in cdi_devices and
// the runtime applies. Never both (docs/plugin.md, "Env and mounts: once").
enum class DeviceEditsVia { kAllocateResponse, kCdi };

// The whole response for one container: SummaryEnv and annotations
// rpci.io/devices and rpci.io/sessions always; then, via the Allocate
// response, each device's indexed env, one read-only mount per session dir
// and each session's device_nodes once (same path in the container, "rw");
// via CDI, only the CDI names rpci.io/<pool>=<device-id>.
v1beta1::ContainerAllocateResponse BuildContainerResponse(const std::string& pool,
                                                          const std::vector<AttachedSession>& sessions,
                                                          const std::vector<SessionPaths>& paths,
                                                          DeviceEditsVia via);

// "rpci.io/<pool>=<device-id>".
std::string CdiName(const std::string& pool, const std::string& device_id);
// <cdi_dir>/rpci.io-<pool>-<device-id>.json
std::string CdiSpecPath(const std::string& cdi_dir, const std::string& pool, const std::string& device_id);
// One device of a CDI spec: its name within the spec's kind, its index in
// the container's devices (RPCI_<index>_...) and its session.
struct CdiDevice {
  std::string name;
  int index = 0;
  AttachedSession session;
  SessionPaths paths;
};
// A CDI spec (cdiVersion 0.6.0) of `kind` declaring `devices`, each with its
// env, session-dir mount and device nodes (each node once in the spec) as
// container edits, and `common_env` (when not empty) as the spec-wide edits a
// runtime applies with any of them.
std::string CdiSpecJson(const std::string& kind, const std::vector<CdiDevice>& devices,
                        const std::map<std::string, std::string>& common_env);
// Writes a spec to `path` (inside `cdi_dir`) atomically, creating cdi_dir.
absl::Status WriteCdiSpecFile(const std::string& cdi_dir, const std::string& path, const std::string& json);
// The CDI spec (kind rpci.io/<pool>) declaring the one device.
std::string CdiSpecJson(const std::string& pool, int index, const AttachedSession& session,
                        const SessionPaths& paths);
// Writes the spec atomically (temp file + rename), creating cdi_dir.
absl::Status WriteCdiSpec(const std::string& cdi_dir, const std::string& pool, int index,
                          const AttachedSession& session, const SessionPaths& paths);
absl::Status RemoveCdiSpec(const std::string& cdi_dir, const std::string& pool, const std::string& device_id);

}  // namespace rpci::plugin

#endif  // RPCI_PLUGIN_CONTAINER_EDITS_H_
