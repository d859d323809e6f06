#include "kubectl_rpci/kubectl_rpci.h"

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "controller/crd_codec.h"
#include "controller/kube_store.h"
#include "controller/model.h"

namespace rpci::kubectl {
namespace {

using controller::KubeStore;
using nlohmann::json;

constexpr char kNone[] = "<none>";

// The value at a '.'-separated path of `object` as text ("" when missing):
// strings as they are, numbers and booleans printed.
std::string At(const json& object, const std::string& path) {
  const json* cur = &object;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    if (!cur->is_object()) return "";
    auto it = cur->find(std::string(part));
    if (it == cur->end()) return "";
    cur = &*it;
  }
  if (cur->is_string()) return cur->get<std::string>();
  if (cur->is_number() || cur->is_boolean()) return cur->dump();
  return "";
}

std::string OrNone(const std::string& s) { return s.empty() ? kNone : s; }

const json& Items(const json& list) {
  static const json kEmpty = json::array();
  if (!list.is_object()) return kEmpty;
  auto it = list.find("items");
  return it != list.end() && it->is_array() ? *it : kEmpty;
}

// "namespace/pod" of an attachment; "<attaching>" until the kubelet's
// pod-resources has named the pod.
std::string PodOf(const json& attachment) {
  if (At(attachment, "spec.pod").empty()) return "<attaching>";
  return absl::StrCat(At(attachment, "spec.podNamespace"), "/", At(attachment, "spec.pod"));
}

// grant id -> "namespace/pod".
std::map<std::string, std::string> PodsByGrant(const json& attachments) {
  std::map<std::string, std::string> out;
  for (const json& a : Items(attachments)) out[At(a, "metadata.name")] = PodOf(a);
  return out;
}

std::string Hex4(const std::string& number) {
  uint64_t v = 0;  // proto3 JSON leaves zero out
  if (!number.empty() && !absl::SimpleAtoi(number, &v)) return "????";
  char buf[16];
  snprintf(buf, sizeof(buf), "%04llx", static_cast<unsigned long long>(v));
  return buf;
}

// "Vendor Device" when the agent named it, else "vvvv:dddd".
std::string DeviceName(const json& device) {
  std::string vendor = At(device, "spec.function.vendorName"), name = At(device, "spec.function.deviceName");
  if (!name.empty()) return vendor.empty() ? name : absl::StrCat(vendor, " ", name);
  return absl::StrCat(Hex4(At(device, "spec.function.vendorId")), ":", Hex4(At(device, "spec.function.deviceId")));
}

std::string Explain(const absl::Status& s, const std::string& server) {
  switch (s.code()) {
    case absl::StatusCode::kPermissionDenied:
      return absl::StrCat("forbidden: ", s.message(),
                          " (kubectl rpci needs get/list on rpci.io pciedevices and devicepools; deviceattachments and "
                          "core events are shown when readable; drain needs update on pciedevices; it never reads "
                          "Secrets)");
    case absl::StatusCode::kUnauthenticated:
      return absl::StrCat("unauthorized: ", s.message(), " (check the kubeconfig's credentials)");
    case absl::StatusCode::kUnavailable:
      return absl::StrCat("cannot reach the API server at ", server, ": ", s.message());
    default:
      return std::string(s.message());
  }
}

}  // namespace

absl::StatusOr<std::string> ResolveKubeconfigPath(const std::string& flag_value, const CliEnv& env) {
  if (!flag_value.empty()) return flag_value;
  struct stat st;
  std::vector<std::string> tried;
  for (absl::string_view p : absl::StrSplit(env.kubeconfig_env, ':', absl::SkipEmpty())) {
    tried.emplace_back(p);
    if (stat(tried.back().c_str(), &st) == 0) return tried.back();
  }
  if (!env.home.empty()) {
    tried.push_back(env.home + "/.kube/config");
    if (stat(tried.back().c_str(), &st) == 0) return tried.back();
  }
  return absl::NotFoundError(absl::StrCat("no kubeconfig: pass --kubeconfig or set KUBECONFIG (tried: ",
                                          tried.empty() ? "nothing, HOME is unset" : absl::StrJoin(tried, ", "),
                                          ")"));
}

std::string FormatTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 3, ' ');
    }
    out += line + "\n";
  }
  return out;
}

std::string Age(const std::string& rfc3339, absl::Time now) {
  if (rfc3339.empty()) return "<unknown>";
  absl::StatusOr<absl::Time> t = controller::ParseKubeTime(rfc3339);
  if (!t.ok()) return "<unknown>";
  const int64_t s = std::max<int64_t>(0, absl::ToInt64Seconds(now - *t));
  if (s < 120) return absl::StrCat(s, "s");
  if (s < 120 * 60) return absl::StrCat(s / 60, "m");
  if (s < 48 * 3600) return absl::StrCat(s / 3600, "h");
  if (s < 2 * 365 * 86400) return absl::StrCat(s / 86400, "d");
  return absl::StrCat(s / (365 * 86400), "y");
}

std::string DevicesTable(const json& devices, const json& attachments, absl::Time now) {
  // Null attachments: the viewer may not list them; the POD column is left out.
  const bool pods_known = !attachments.is_null();
  const auto pods = PodsByGrant(attachments);
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "NODE", "BDF", "DEVICE", "POOL", "PHASE", "HEALTH", "ASSIGNED", "POD", "AGE"}};
  if (!pods_known) rows[0].erase(rows[0].begin() + 8);
  for (const json& d : Items(devices)) {
    const std::string grant = At(d, "status.attachment");
    auto pod = pods.find(grant);
    rows.push_back({At(d, "metadata.name"), OrNone(At(d, "spec.node")), OrNone(At(d, "spec.function.bdf")),
                    DeviceName(d), OrNone(At(d, "spec.pool")), OrNone(At(d, "status.phase")),
                    OrNone(At(d, "status.health")), OrNone(At(d, "status.assignedNode")),
                    grant.empty() ? kNone : (pod != pods.end() ? pod->second : grant),
                    Age(At(d, "metadata.creationTimestamp"), now)});
    if (!pods_known) rows.back().erase(rows.back().begin() + 8);
  }
  return FormatTable(rows);
}

std::string PoolsTable(const json& pools, const json& devices, absl::Time now) {
  struct Counts {
    int total = 0, available = 0, assigned = 0, attached = 0, other = 0;
  };
  std::map<std::string, Counts> counts;
  for (const json& d : Items(devices)) {
    Counts& c = counts[At(d, "spec.pool")];
    ++c.total;
    const std::string phase = At(d, "status.phase");
    if (phase == "Available") ++c.available;
    else if (phase == "Assigned") ++c.assigned;
    else if (phase == "Attached") ++c.attached;
    else ++c.other;
  }
  std::vector<std::vector<std::string>> rows = {{"NAME", "RESOURCE", "SPARES/NODE", "MAX/NODE", "IDLE-RELEASE",
                                                 "LOCALITY", "DEVICES", "AVAILABLE", "ASSIGNED", "ATTACHED",
                                                 "OTHER", "AGE"}};
  auto add = [&](const std::string& name, const json* pool) {
    const Counts c = counts.count(name) ? counts[name] : Counts{};
    auto spec = [&](const std::string& field, const std::string& fallback) {
      if (pool == nullptr) return std::string("(default)");
      std::string v = At(*pool, "spec." + field);
      return v.empty() ? fallback : v;
    };
    std::string idle = spec("idleReleaseSeconds", "0");
    if (pool != nullptr) idle = idle == "0" ? "never" : idle + "s";
    rows.push_back({name, pool ? spec("resourceName", "rpci.io/" + name) : "rpci.io/" + name,
                    spec("sparesPerNode", "0"), pool ? (spec("maxPerNode", "0") == "0" ? "unlimited"
                                                                                       : spec("maxPerNode", "0"))
                                                     : "(default)",
                    idle, spec("locality", "none"), absl::StrCat(c.total), absl::StrCat(c.available),
                    absl::StrCat(c.assigned), absl::StrCat(c.attached), absl::StrCat(c.other),
                    pool ? Age(At(*pool, "metadata.creationTimestamp"), now) : kNone});
  };
  std::set<std::string> defined;
  for (const json& p : Items(pools)) {
    defined.insert(At(p, "metadata.name"));
    add(At(p, "metadata.name"), &p);
  }
  // Pools devices name without a DevicePool run on the controller's defaults.
  for (const auto& [name, c] : counts) {
    if (!defined.count(name) && !name.empty()) add(name, nullptr);
  }
  return FormatTable(rows);
}

std::string AttachmentsTable(const json& attachments, absl::Time now, const std::string& pod_namespace) {
  std::vector<std::vector<std::string>> rows = {{"NAME", "DEVICE", "NODE", "POD", "CONTAINER", "STATE", "SESSION",
                                                 "WRITES", "BYTES-IN", "BYTES-OUT", "AGE"}};
  for (const json& a : Items(attachments)) {
    if (!pod_namespace.empty() && At(a, "spec.podNamespace") != pod_namespace) continue;
    auto num = [&](const std::string& field) {
      std::string v = At(a, "status." + field);
      return v.empty() ? std::string("0") : v;
    };
    rows.push_back({At(a, "metadata.name"), OrNone(At(a, "spec.device")), OrNone(At(a, "spec.node")), PodOf(a),
                    OrNone(At(a, "spec.container")), OrNone(At(a, "status.state")),
                    OrNone(At(a, "status.sessionId")), num("writesApplied"), num("bytesIn"), num("bytesOut"),
                    Age(At(a, "metadata.creationTimestamp"), now)});
  }
  return FormatTable(rows);
}

std::string DescribeDevice(const json& device, const json& attachments, const json& events, absl::Time now) {
  std::vector<std::vector<std::string>> head;
  auto field = [&](const std::string& label, const std::string& value) {
    head.push_back({label + ":", OrNone(value)});
  };
  field("Name", At(device, "metadata.name"));
  field("Node", At(device, "spec.node"));
  field("Pool", At(device, "spec.pool"));
  field("Backend", At(device, "spec.backend"));
  field("BDF", At(device, "spec.function.bdf"));
  field("Device", absl::StrCat(DeviceName(device), " [", Hex4(At(device, "spec.function.vendorId")), ":",
                               Hex4(At(device, "spec.function.deviceId")), "]"));
  field("Class", At(device, "spec.function.className"));
  field("Driver", At(device, "spec.function.driver"));
  field("NUMA node", At(device, "spec.function.numaNode"));
  std::vector<std::string> nics;
  if (device.contains("spec") && device["spec"].is_object()) {
    for (const json& n : device["spec"].value("localNics", json::array())) {
      if (n.is_string()) nics.push_back(n.get<std::string>());
    }
  }
  field("Local NICs", absl::StrJoin(nics, ", "));
  auto pairs = [&](const char* key) {
    std::vector<std::string> out;
    const json* m = &device;
    for (const char* part : {"metadata", key}) {
      if (!m->is_object() || !m->contains(part)) return std::string();
      m = &(*m)[part];
    }
    if (!m->is_object()) return std::string();
    for (auto it = m->begin(); it != m->end(); ++it) {
      if (it->is_string()) out.push_back(absl::StrCat(it.key(), "=", it->get<std::string>()));
    }
    return absl::StrJoin(out, ", ");
  };
  std::vector<std::string> labels;
  if (device.contains("spec") && device["spec"].is_object() && device["spec"].contains("labels") &&
      device["spec"]["labels"].is_object()) {
    for (auto it = device["spec"]["labels"].begin(); it != device["spec"]["labels"].end(); ++it) {
      if (it->is_string()) labels.push_back(absl::StrCat(it.key(), "=", it->get<std::string>()));
    }
  }
  field("Labels", absl::StrJoin(labels, ", "));
  field("Annotations", pairs("annotations"));
  field("Age", Age(At(device, "metadata.creationTimestamp"), now));
  std::string out = FormatTable(head);

  std::vector<std::vector<std::string>> status;
  auto sfield = [&](const std::string& label, const std::string& value) {
    status.push_back({"  " + label + ":", OrNone(value)});
  };
  sfield("Phase", At(device, "status.phase"));
  std::string health = At(device, "status.health");
  if (!At(device, "status.healthReason").empty()) absl::StrAppend(&health, " (", At(device, "status.healthReason"), ")");
  sfield("Health", health);
  sfield("Drain requested", controller::DrainRequested(device) ? "yes" : "no");
  sfield("Assigned node", At(device, "status.assignedNode"));
  sfield("Assigned since", At(device, "status.assignedTime"));
  sfield("Last used", At(device, "status.lastUsedTime"));
  std::string attachment = At(device, "status.attachment");
  for (const json& a : Items(attachments)) {
    if (!attachment.empty() && At(a, "metadata.name") == attachment) {
      absl::StrAppend(&attachment, " (pod ", PodOf(a), ", container ",
                      At(a, "spec.container"), ", session ", OrNone(At(a, "status.sessionId")), ")");
    }
  }
  sfield("Attachment", attachment);
  if (!At(device, "status.releasingFrom").empty()) {
    sfield("Releasing from", absl::StrCat(At(device, "status.releasingFrom"), " until ",
                                          At(device, "status.releasingUntil")));
  }
  sfield("Last decision", At(device, "status.reason"));
  out += "Status:\n" + FormatTable(status);

  std::vector<std::vector<std::string>> conditions = {{"  TYPE", "STATUS", "REASON", "MESSAGE", "LAST TRANSITION"}};
  const json* conds = nullptr;
  if (device.contains("status") && device["status"].is_object() && device["status"].contains("conditions")) {
    conds = &device["status"]["conditions"];
  }
  if (conds != nullptr && conds->is_array()) {
    for (const json& c : *conds) {
      conditions.push_back({"  " + At(c, "type"), At(c, "status"), OrNone(At(c, "reason")),
                            OrNone(At(c, "message")), OrNone(At(c, "lastTransitionTime"))});
    }
  }
  out += "Conditions:\n" + (conditions.size() > 1 ? FormatTable(conditions) : "  <none>\n");

  std::vector<const json*> mine;
  const std::string name = At(device, "metadata.name");
  for (const json& e : Items(events)) {
    if (At(e, "involvedObject.kind") == "PcieDevice" && At(e, "involvedObject.name") == name) mine.push_back(&e);
  }
  auto when = [](const json* e) {
    std::string t = At(*e, "lastTimestamp");
    return t.empty() ? At(*e, "eventTime") : t;
  };
  std::stable_sort(mine.begin(), mine.end(), [&](const json* a, const json* b) { return when(a) < when(b); });
  constexpr size_t kRecent = 15;
  if (mine.size() > kRecent) mine.erase(mine.begin(), mine.end() - kRecent);
  std::vector<std::vector<std::string>> ev = {{"  TYPE", "REASON", "AGE", "FROM", "MESSAGE"}};
  for (const json* e : mine) {
    ev.push_back({"  " + At(*e, "type"), At(*e, "reason"), Age(when(e), now), OrNone(At(*e, "source.component")),
                  At(*e, "message")});
  }
  out += "Events:\n" + (ev.size() > 1 ? FormatTable(ev) : "  <none>\n");
  return out;
}

absl::Status SetDrain(kube::KubeClient& client, const std::string& name, bool drain) {
  const std::string path = absl::StrCat(KubeStore::kDevicesPath, "/", name);
  absl::StatusOr<json> r = client.ReadModifyWrite(path, /*status=*/false, [&](json& o) {
    json& meta = o["metadata"];
    const bool has = controller::DrainRequested(o);
    if (has == drain) return false;
    if (drain) {
      meta["annotations"][controller::kDrainAnnotation] = "true";
    } else {
      meta["annotations"].erase(controller::kDrainAnnotation);
    }
    return true;
  });
  if (!r.ok() && r.status().code() == absl::StatusCode::kNotFound) {
    return absl::NotFoundError(absl::StrCat("device \"", name, "\" not found"));
  }
  return r.status();
}

bool IsDrained(const json& device) {
  const std::string phase = At(device, "status.phase");
  return (phase == "Draining" || phase == "Unhealthy") && At(device, "status.attachment").empty() &&
         At(device, "status.assignedNode").empty();
}

namespace {

// What a drain still waits for, in words.
std::string Waiting(const json& device) {
  const std::string phase = At(device, "status.phase");
  if (phase != "Draining" && phase != "Unhealthy") {
    return absl::StrCat("waiting for the controller to see the drain request (phase ", OrNone(phase), ")");
  }
  if (!At(device, "status.attachment").empty()) {
    return absl::StrCat("waiting for the pod to let go: attachment ", At(device, "status.attachment"), " on node ",
                        At(device, "status.assignedNode"));
  }
  return absl::StrCat("detached; waiting for it to leave node ", At(device, "status.assignedNode"));
}

}  // namespace

absl::Status WaitDrained(kube::KubeClient& client, const std::string& name, absl::Duration timeout,
                         absl::Duration poll, std::ostream& out) {
  const std::string path = absl::StrCat(KubeStore::kDevicesPath, "/", name);
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + timeout;
  std::string last;
  while (true) {
    absl::StatusOr<json> device = client.Get(path);
    if (!device.ok()) {
      if (device.status().code() == absl::StatusCode::kNotFound) {
        // The agent stopped exporting it and the controller removed it.
        out << "device " << name << " is gone: drained\n" << std::flush;
        return absl::OkStatus();
      }
      return device.status();
    }
    if (IsDrained(*device)) return absl::OkStatus();
    std::string now = Waiting(*device);
    if (now != last) {
      out << "[" << absl::ToInt64Seconds(absl::Now() - start) << "s] " << now << "\n" << std::flush;
      last = now;
    }
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("device ", name, " not drained after ", absl::FormatDuration(timeout), ": ", last));
    }
    std::this_thread::sleep_for(absl::ToChronoMilliseconds(std::min(poll, deadline - absl::Now() + absl::Milliseconds(1))));
  }
}

int Run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err, const CliEnv& env) {
  std::string kubeconfig, context, ns, timeout_text = "5m";
  FlagSet flags(
      "kubectl rpci <command> [flags]",
      "Inspect and operate rpci remote PCIe devices.\n\nCommands:\n"
      "  devices              PcieDevices: node, BDF, device, pool, phase, assigned node, pod, age\n"
      "  pools                DevicePools with their policy and device counts by phase\n"
      "  attachments          DeviceAttachments (sessions): device, node, pod, counters\n"
      "  describe <device>    one device's spec, status, conditions and recent events\n"
      "  drain <device>       stop new use of a device and wait until it is detached and unassigned\n"
      "  undrain <device>     return a drained device to its pool");
  flags.String("kubeconfig", &kubeconfig, "kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)");
  flags.String("context", &context, "kubeconfig context (default: its current-context)");
  flags.String("namespace", &ns, "attachments: only pods in this namespace (default: all)");
  flags.String("timeout", &timeout_text, "drain: how long to wait (e.g. 90s, 5m; 0: do not wait)");
  absl::StatusOr<std::vector<std::string>> positional = flags.Parse(args);
  if (!positional.ok()) {
    err << "error: " << positional.status().message() << "\n" << flags.Help();
    return 2;
  }
  if (flags.help_requested()) {
    out << flags.Help();
    return 0;
  }
  flags.Apply();
  if (positional->empty()) {
    err << "error: no command\n" << flags.Help();
    return 2;
  }
  const std::string command = (*positional)[0];
  const bool needs_name = command == "describe" || command == "drain" || command == "undrain";
  const bool known = needs_name || command == "devices" || command == "pools" || command == "attachments";
  if (!known) {
    err << "error: unknown command \"" << command << "\"\n" << flags.Help();
    return 2;
  }
  if (positional->size() != (needs_name ? 2u : 1u)) {
    err << "error: " << command << (needs_name ? " takes one device name\n" : " takes no arguments\n");
    return 2;
  }
  absl::Duration timeout;
  if (!absl::ParseDuration(timeout_text, &timeout) || timeout < absl::ZeroDuration()) {
    err << "error: --timeout: \"" << timeout_text << "\" is not a duration like 90s or 5m\n";
    return 2;
  }

  absl::StatusOr<std::string> path = ResolveKubeconfigPath(kubeconfig, env);
  if (!path.ok()) {
    err << "error: " << path.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<kube::KubeConfig> config = kube::LoadKubeconfig(*path, context);
  if (!config.ok()) {
    err << "error: " << config.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<std::unique_ptr<kube::KubeClient>> client = kube::KubeClient::Create(*config);
  if (!client.ok()) {
    err << "error: " << client.status().message() << "\n";
    return 1;
  }
  kube::KubeClient& kc = **client;
  auto fail = [&](const absl::Status& s) {
    err << "error: " << Explain(s, config->server) << "\n";
    return 1;
  };
  auto list = [&](const std::string& p) { return kc.Get(p); };
  const absl::Time now = absl::Now();
  if (command == "devices" || command == "pools" || command == "attachments") {
    absl::StatusOr<json> attachments = list(KubeStore::kAttachmentsPath);
    if (command == "attachments") {
      if (!attachments.ok()) return fail(attachments.status());
      out << AttachmentsTable(*attachments, now, ns);
      return 0;
    }
    absl::StatusOr<json> devices = list(KubeStore::kDevicesPath);
    if (!devices.ok()) return fail(devices.status());
    if (command == "devices") {
      if (!attachments.ok() && attachments.status().code() != absl::StatusCode::kPermissionDenied) {
        return fail(attachments.status());
      }
      if (!attachments.ok()) {
        // A viewer without read access to attachments still gets the devices.
        err << "note: POD column left out: this user may not list rpci.io deviceattachments ("
            << attachments.status().message() << ")\n";
      }
      out << DevicesTable(*devices, attachments.ok() ? *attachments : json(), now);
      return 0;
    }
    absl::StatusOr<json> pools = list(KubeStore::kPoolsPath);
    if (!pools.ok()) return fail(pools.status());
    out << PoolsTable(*pools, *devices, now);
    return 0;
  }

  const std::string name = (*positional)[1];
  const std::string device_path = absl::StrCat(KubeStore::kDevicesPath, "/", name);
  if (command == "describe") {
    absl::StatusOr<json> device = kc.Get(device_path);
    if (!device.ok()) {
      if (device.status().code() == absl::StatusCode::kNotFound) {
        err << "error: device \"" << name << "\" not found\n";
        return 1;
      }
      return fail(device.status());
    }
    absl::StatusOr<json> attachments = list(KubeStore::kAttachmentsPath);
    if (!attachments.ok() && attachments.status().code() != absl::StatusCode::kPermissionDenied) {
      return fail(attachments.status());
    }
    if (!attachments.ok()) {
      err << "note: attachment's pod left out: this user may not list rpci.io deviceattachments\n";
      attachments = json::object();
    }
    // Events about cluster-scoped objects live in "default".
    absl::StatusOr<json> events =
        list(absl::StrCat("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3D", name));
    if (!events.ok()) {
      err << "warning: events not shown: " << Explain(events.status(), config->server) << "\n";
      events = json::object();
    }
    out << DescribeDevice(*device, *attachments, *events, now);
    return 0;
  }

  const bool drain = command == "drain";
  if (absl::Status s = SetDrain(kc, name, drain); !s.ok()) {
    if (s.code() == absl::StatusCode::kNotFound) {
      err << "error: " << s.message() << "\n";
      return 1;
    }
    return fail(s);
  }
  if (!drain) {
    out << "device " << name << " undrained: back in its pool\n";
    return 0;
  }
  out << "device " << name << " marked for draining\n" << std::flush;
  if (timeout == absl::ZeroDuration()) return 0;
  if (absl::Status s = WaitDrained(kc, name, timeout, env.poll_interval, out); !s.ok()) {
    if (s.code() == absl::StatusCode::kDeadlineExceeded) {
      err << "error: " << s.message() << "\n(the drain stays requested; `kubectl rpci undrain " << name
          << "` cancels it)\n";
      return 1;
    }
    return fail(s);
  }
  out << "device " << name << " drained: detached and unassigned; `kubectl rpci undrain " << name
      << "` returns it to its pool\n";
  return 0;
}

}  // namespace rpci::kubectl
