#include "plugin/container_edits.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <tuple>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agent/inventory/rdma_inventory.h"
#include "common/fabric/fabric.h"
#include "nlohmann/json.hpp"

namespace rpci::plugin {
namespace {

absl::Status Errno(const std::string& what) {
  return absl::Status(errno == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kInternal,
                      absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::Status MakeDirs(const std::string& path, int mode) {
  std::string partial;
  for (size_t pos = 0; pos != std::string::npos;) {
    pos = path.find('/', pos + 1);
    partial = path.substr(0, pos);
    if (partial.empty()) continue;
    if (mkdir(partial.c_str(), mode) != 0 && errno != EEXIST) return Errno("create directory " + partial);
  }
  return absl::OkStatus();
}

// The CA bundle as the container sees it.
std::string CaFile(const SessionPaths& paths) { return paths.container_dir + "/ca.crt"; }

}  // namespace

SessionPaths PathsFor(const std::string& state_dir, const std::string& container_root,
                      const std::string& device_id) {
  return {state_dir + "/" + device_id, container_root + "/" + device_id};
}

absl::Status WriteSessionDir(const AttachedSession& session, const SessionPaths& paths, int session_group) {
  if (absl::Status s = MakeDirs(paths.host_dir, 0755); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("device ", session.device_id, ": ", s.message()));
  }
  if (session_group >= 0 &&
      (chown(paths.host_dir.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(session_group)) != 0 ||
       chmod(paths.host_dir.c_str(), 0750) != 0)) {
    return Errno(absl::StrCat("give ", paths.host_dir, " to group ", session_group));
  }
  nlohmann::json bars = nlohmann::json::array();
  for (const client::BarMirror& b : session.ticket.bars) bars.push_back({{"index", b.index}, {"size", b.size}});
  nlohmann::json doc = {{"device_id", session.device_id},
                        {"session_id", session.ticket.session_id.ToString()},
                        {"endpoint", session.ticket.endpoint},
                        {"fabric_provider", session.ticket.fabric_provider},
                        {"key_file", paths.container_dir + "/key"},
                        {"bars", bars},
                        {"dma_size", session.ticket.dma_size}};
  std::vector<std::tuple<std::string, std::string, int>> files = {
      {"key", session.ticket.key.Hex() + "\n", session_group >= 0 ? 0640 : 0600}};
  if (!session.ca_pem.empty()) {
    doc["ca_file"] = CaFile(paths);
    files.emplace_back("ca.crt", session.ca_pem, 0644);
  } else if (unlink((paths.host_dir + "/ca.crt").c_str()) != 0 && errno != ENOENT) {
    return Errno("remove " + paths.host_dir + "/ca.crt");  // plaintext now; an old CA must not linger
  }
  files.emplace_back("session.json", doc.dump(2) + "\n", 0644);
  for (const auto& [name, contents, mode] : files) {
    if (absl::Status s = WriteFileAtomically(paths.host_dir + "/" + name, contents, mode, session_group); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("device ", session.device_id, ": ", s.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status RemoveSessionDir(const SessionPaths& paths) {
  for (const char* name : {"key", "session.json", "ca.crt", "key.tmp", "session.json.tmp", "ca.crt.tmp"}) {
    const std::string path = paths.host_dir + "/" + name;
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("remove " + path);
  }
  if (rmdir(paths.host_dir.c_str()) != 0 && errno != ENOENT) return Errno("remove " + paths.host_dir);
  return absl::OkStatus();
}

std::map<std::string, std::string> DeviceEnv(int index, const AttachedSession& session, const SessionPaths& paths) {
  const std::string p = absl::StrCat("RPCI_", index, "_");
  std::map<std::string, std::string> env = {
      {p + "DEVICE_ID", session.device_id},
      {p + "SESSION_ENDPOINT", session.ticket.endpoint},
      {p + "SESSION_ID", session.ticket.session_id.ToString()},
      {p + "SESSION_KEY_FILE", paths.container_dir + "/key"},
      {p + "SESSION_DIR", paths.container_dir},
      {p + "FABRIC_PROVIDER", session.ticket.fabric_provider},
      {p + "BARS", client::FormatBarList(session.ticket.bars)},
      {p + "DMA_SIZE", absl::StrCat(session.ticket.dma_size)},
  };
  if (!session.ca_pem.empty()) env[p + "CA_FILE"] = CaFile(paths);
  return env;
}

absl::StatusOr<std::vector<std::string>> FabricDeviceNodes(const std::string& fabric_provider,
                                                            const std::string& netdev,
                                                            const std::vector<rpci::v1::RdmaNic>& nics) {
  if (fabric_provider != fabric::kVerbs) return std::vector<std::string>();
  std::vector<std::string> seen;
  for (const rpci::v1::RdmaNic& nic : nics) {
    for (const rpci::v1::RdmaPort& port : nic.ports()) {
      if (port.netdev().empty()) continue;
      seen.push_back(absl::StrCat(nic.name(), "@", port.netdev()));
      if (port.netdev() == netdev && !nic.uverbs_device().empty()) {
        return std::vector<std::string>{nic.uverbs_device(), kRdmaCmDevice};
      }
    }
  }
  return absl::FailedPreconditionError(
      absl::StrCat("fabric ", fabric_provider, ": no RDMA NIC with a uverbs device runs on ", netdev,
                   ", the network device that reaches the agent (NICs here: ",
                   seen.empty() ? "none" : absl::StrJoin(seen, ", "), ")"));
}

absl::StatusOr<std::vector<std::string>> SessionDeviceNodes(const std::string& fabric_provider,
                                                             const std::string& endpoint,
                                                             const std::string& sysfs_root) {
  if (fabric_provider != fabric::kVerbs) return std::vector<std::string>();
  absl::StatusOr<std::string> local = fabric::LocalAddressFor(endpoint);
  if (!local.ok()) return local.status();
  absl::StatusOr<std::string> netdev = fabric::NetdevWithAddress(*local);
  if (!netdev.ok()) return netdev.status();
  agent::RdmaInventory inventory(sysfs_root, agent::RdmaSource::kSysfs);
  absl::StatusOr<std::vector<rpci::v1::RdmaNic>> nics = inventory.Scan();
  if (!nics.ok()) return nics.status();
  return FabricDeviceNodes(fabric_provider, *netdev, *nics);
}

std::map<std::string, std::string> SummaryEnv(const std::string& pool, const std::vector<AttachedSession>& sessions,
                                              const std::vector<SessionPaths>& paths) {
  std::vector<std::string> ids;
  for (const AttachedSession& s : sessions) ids.push_back(s.device_id);
  std::map<std::string, std::string> envs = {{"RPCI_DEVICE_IDS", absl::StrJoin(ids, ",")},
                                             {"RPCI_DEVICE_COUNT", absl::StrCat(sessions.size())},
                                             {"RPCI_POOL", pool}};
  if (!sessions.empty()) {
    envs["RPCI_SESSION_ENDPOINT"] = sessions[0].ticket.endpoint;
    envs["RPCI_SESSION_ID"] = sessions[0].ticket.session_id.ToString();
    envs["RPCI_SESSION_KEY_FILE"] = paths[0].container_dir + "/key";
    if (!sessions[0].ca_pem.empty()) envs["RPCI_CA_FILE"] = CaFile(paths[0]);
  }
  return envs;
}

namespace {

// One device's edits as Allocate response fields; a device node already in
// the response is not added again.
void AddDeviceEdits(int index, const AttachedSession& session, const SessionPaths& paths,
                    v1beta1::ContainerAllocateResponse& resp) {
  for (const auto& [k, v] : DeviceEnv(index, session, paths)) (*resp.mutable_envs())[k] = v;
  v1beta1::Mount* m = resp.add_mounts();
  m->set_host_path(paths.host_dir);
  m->set_container_path(paths.container_dir);
  m->set_read_only(true);
  for (const std::string& node : session.device_nodes) {
    bool have = false;
    for (const v1beta1::DeviceSpec& d : resp.devices()) have = have || d.host_path() == node;
    if (have) continue;
    v1beta1::DeviceSpec* d = resp.add_devices();
    d->set_host_path(node);
    d->set_container_path(node);
    d->set_permissions("rw");
  }
}

}  // namespace

v1beta1::ContainerAllocateResponse BuildContainerResponse(const std::string& pool,
                                                          const std::vector<AttachedSession>& sessions,
                                                          const std::vector<SessionPaths>& paths,
                                                          DeviceEditsVia via) {
  v1beta1::ContainerAllocateResponse resp;
  std::vector<std::string> ids, session_ids;
  for (size_t i = 0; i < sessions.size(); ++i) {
    ids.push_back(sessions[i].device_id);
    session_ids.push_back(sessions[i].ticket.session_id.ToString());
    if (via == DeviceEditsVia::kCdi) {
      resp.add_cdi_devices()->set_name(CdiName(pool, sessions[i].device_id));
    } else {
      AddDeviceEdits(static_cast<int>(i), sessions[i], paths[i], resp);
    }
  }
  for (const auto& [k, v] : SummaryEnv(pool, sessions, paths)) (*resp.mutable_envs())[k] = v;
  (*resp.mutable_annotations())["rpci.io/devices"] = absl::StrJoin(ids, ",");
  (*resp.mutable_annotations())["rpci.io/sessions"] = absl::StrJoin(session_ids, ",");
  return resp;
}

std::string CdiName(const std::string& pool, const std::string& device_id) {
  return absl::StrCat("rpci.io/", pool, "=", device_id);
}

std::string CdiSpecPath(const std::string& cdi_dir, const std::string& pool, const std::string& device_id) {
  return absl::StrCat(cdi_dir, "/rpci.io-", pool, "-", device_id, ".json");
}

namespace {

nlohmann::json EnvJson(const std::map<std::string, std::string>& env) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& [k, v] : env) out.push_back(k + "=" + v);
  return out;
}

// One CDI device entry: the device's env, its session-dir mount and the
// device nodes not already in `seen` (each node once per spec).
nlohmann::json CdiDeviceJson(const CdiDevice& d, std::set<std::string>& seen) {
  nlohmann::json nodes = nlohmann::json::array();
  for (const std::string& node : d.session.device_nodes) {
    if (seen.insert(node).second) nodes.push_back({{"path", node}, {"permissions", "rw"}});
  }
  return {{"name", d.name},
          {"annotations", {{"rpci.io/session", d.session.ticket.session_id.ToString()}}},
          {"containerEdits",
           {{"env", EnvJson(DeviceEnv(d.index, d.session, d.paths))},
            {"mounts",
             {{{"hostPath", d.paths.host_dir}, {"containerPath", d.paths.container_dir}, {"options", {"ro", "bind"}}}}},
            {"deviceNodes", nodes}}}};
}

}  // namespace

std::string CdiSpecJson(const std::string& kind, const std::vector<CdiDevice>& devices,
                        const std::map<std::string, std::string>& common_env) {
  std::set<std::string> seen;
  nlohmann::json entries = nlohmann::json::array();
  for (const CdiDevice& d : devices) entries.push_back(CdiDeviceJson(d, seen));
  nlohmann::json spec = {{"cdiVersion", "0.6.0"}, {"kind", kind}, {"devices", entries}};
  if (!common_env.empty()) spec["containerEdits"] = {{"env", EnvJson(common_env)}};
  return spec.dump(2) + "\n";
}

std::string CdiSpecJson(const std::string& pool, int index, const AttachedSession& session,
                        const SessionPaths& paths) {
  return CdiSpecJson("rpci.io/" + pool, {CdiDevice{session.device_id, index, session, paths}}, {});
}

absl::Status WriteCdiSpecFile(const std::string& cdi_dir, const std::string& path, const std::string& json) {
  absl::Status s = MakeDirs(cdi_dir, 0755);
  if (s.ok()) s = WriteFileAtomically(path, json, 0644);
  return s;
}

absl::Status WriteCdiSpec(const std::string& cdi_dir, const std::string& pool, int index,
                          const AttachedSession& session, const SessionPaths& paths) {
  absl::Status s = WriteCdiSpecFile(cdi_dir, CdiSpecPath(cdi_dir, pool, session.device_id),
                                    CdiSpecJson(pool, index, session, paths));
  if (!s.ok()) return absl::Status(s.code(), absl::StrCat("device ", session.device_id, ": CDI spec: ", s.message()));
  return absl::OkStatus();
}

absl::Status RemoveCdiSpec(const std::string& cdi_dir, const std::string& pool, const std::string& device_id) {
  const std::string path = CdiSpecPath(cdi_dir, pool, device_id);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return Errno("remove " + path);
  return absl::OkStatus();
}

}  // namespace rpci::plugin
