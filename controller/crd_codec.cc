#include "controller/crd_codec.h"

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "google/protobuf/util/json_util.h"

namespace rpci::controller {

using nlohmann::json;

std::string Str(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

const json& Member(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

namespace {

uint64_t U64(const json& object, const char* key) {
  if (!object.is_object()) return 0;
  auto it = object.find(key);
  if (it == object.end() || !it->is_number_unsigned()) return 0;
  return it->get<uint64_t>();
}

absl::Time TimeOr(const json& object, const char* key, absl::Time fallback) {
  std::string text = Str(object, key);
  if (text.empty()) return fallback;
  absl::StatusOr<absl::Time> t = ParseKubeTime(text);
  return t.ok() ? *t : fallback;
}

json Condition(const std::string& type, bool status, const std::string& reason,
               const std::string& message, absl::Time since, int64_t generation) {
  // Members set one by one: a braced list builds a 2-element array per
  // member first, which made this a hot spot of every store commit.
  json c = json::object();
  c["type"] = type;
  c["status"] = status ? "True" : "False";
  c["reason"] = reason.empty() ? (status ? "AsExpected" : "Unknown") : reason;
  c["message"] = message;
  c["observedGeneration"] = generation;
  // lastTransitionTime is required by the standard shape; a condition that
  // never changed gets the epoch.
  c["lastTransitionTime"] = FormatKubeTime(since == absl::InfinitePast() ? absl::UnixEpoch() : since);
  return c;
}

absl::Status CheckKind(const json& object, const char* kind) {
  if (!object.is_object()) return absl::InvalidArgumentError(absl::StrCat(kind, ": not a JSON object"));
  if (Str(object, "kind") != kind) {
    return absl::InvalidArgumentError(
        absl::StrCat(kind, ": object has kind \"", Str(object, "kind"), "\""));
  }
  if (Str(Member(object, "metadata"), "name").empty()) {
    return absl::InvalidArgumentError(absl::StrCat(kind, ": metadata.name is missing"));
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// spec: the exported device without its health (health is status, not
// spec), as protobuf's compact JSON text.
std::string DeviceSpecText(const Device& device) {
  std::string spec_text;
  rpci::v1::ExportedDevice spec_proto = device.exported;
  spec_proto.clear_health();
  google::protobuf::util::JsonPrintOptions options;
  if (!google::protobuf::util::MessageToJsonString(spec_proto, &spec_text, options).ok() || spec_text.empty()) {
    return "{}";
  }
  return spec_text;
}

json DeviceStatus(const Device& device, absl::Time now, int64_t generation) {
  json status = json::object();
  status["phase"] = std::string(PhaseName(device.PhaseAt(now)));
  status["health"] = device.healthy ? "Healthy" : "Unhealthy";
  status["healthReason"] = device.health_reason;
  status["assignedNode"] = device.assigned_node;
  status["assignedTime"] = FormatKubeTime(device.assigned_changed);
  status["lastUsedTime"] = FormatKubeTime(device.last_used);
  status["releasingFrom"] = device.releasing_from;
  status["releasingUntil"] = FormatKubeTime(device.releasing_until);
  status["draining"] = device.draining;
  status["attachment"] = device.attachment;
  status["reason"] = device.reason;
  json& conditions = status["conditions"] = json::array();
  conditions.push_back(Condition("Healthy", device.healthy, device.healthy ? "Healthy" : "Unhealthy",
                                 device.health_reason, device.health_changed, generation));
  conditions.push_back(Condition("Assigned", !device.assigned_node.empty(),
                                 device.assigned_node.empty() ? "Unassigned" : "AssignedToNode", device.reason,
                                 device.assigned_changed, generation));
  return status;
}

json DeviceMetadata(const Device& device) {
  json metadata = json::object();
  metadata["name"] = device.id();
  if (device.drain_requested) metadata["annotations"][kDrainAnnotation] = "true";
  return metadata;
}

}  // namespace

json DeviceToObject(const Device& device, absl::Time now, int64_t generation) {
  json spec = json::parse(DeviceSpecText(device), nullptr, false);
  if (spec.is_discarded()) spec = json::object();
  json object = json::object();
  object["apiVersion"] = kApiVersion;
  object["kind"] = "PcieDevice";
  object["metadata"] = DeviceMetadata(device);
  object["spec"] = std::move(spec);
  object["status"] = DeviceStatus(device, now, generation);
  return object;
}

std::string DeviceToText(const Device& device, absl::Time now, int64_t generation) {
  // Parses to DeviceToObject's value; the spec is protobuf's text as is
  // (its field order), never parsed back. Built in a reused buffer and
  // returned as an exact-size copy: appending grows capacity by doubling, and
  // the store keeps every text (~1.4 KB allocated for ~0.7 KB of text at
  // 100k devices before).
  thread_local std::string text;
  text = "{\"apiVersion\":";
  text += json(kApiVersion).dump();
  text += ",\"kind\":\"PcieDevice\",\"metadata\":";
  text += DeviceMetadata(device).dump();
  text += ",\"spec\":";
  text += DeviceSpecText(device);
  text += ",\"status\":";
  text += DeviceStatus(device, now, generation).dump();
  text += "}";
  return std::string(text);
}

bool DrainRequested(const json& object) {
  return Str(Member(Member(object, "metadata"), "annotations"), kDrainAnnotation) == "true";
}

absl::StatusOr<Device> DeviceFromObject(const json& object) {
  if (absl::Status s = CheckKind(object, "PcieDevice"); !s.ok()) return s;
  const std::string name = Str(object["metadata"], "name");
  Device device;
  const json& spec = Member(object, "spec");
  if (!spec.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("PcieDevice ", name, ": spec is not an object"));
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto parsed = google::protobuf::util::JsonStringToMessage(spec.dump(), &device.exported, options);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("PcieDevice ", name, ": spec: ", std::string(parsed.message())));
  }
  if (device.exported.id().empty()) device.exported.set_id(name);
  if (device.exported.id() != name) {
    return absl::InvalidArgumentError(absl::StrCat("PcieDevice ", name, ": spec.id \"",
                                                   device.exported.id(), "\" differs from the name"));
  }
  const json& status = Member(object, "status");
  device.healthy = Str(status, "health") != "Unhealthy";
  device.exported.set_health(device.healthy ? rpci::v1::DEVICE_HEALTH_HEALTHY
                                            : rpci::v1::DEVICE_HEALTH_UNHEALTHY);
  device.health_reason = Str(status, "healthReason");
  device.assigned_node = Str(status, "assignedNode");
  device.assigned_changed = TimeOr(status, "assignedTime", absl::InfinitePast());
  device.last_used = TimeOr(status, "lastUsedTime", absl::InfinitePast());
  device.releasing_from = Str(status, "releasingFrom");
  device.releasing_until = TimeOr(status, "releasingUntil", absl::InfinitePast());
  device.draining = Member(status, "draining").is_boolean() && status["draining"].get<bool>();
  device.attachment = Str(status, "attachment");
  device.reason = Str(status, "reason");
  device.drain_requested = DrainRequested(object);
  for (const json& c : Member(status, "conditions").is_array() ? status["conditions"] : json::array()) {
    if (Str(c, "type") == "Healthy") {
      device.health_changed = TimeOr(c, "lastTransitionTime", absl::InfinitePast());
    }
  }
  return device;
}

json AttachmentToObject(const Attachment& a, const std::string& ns) {
  json spec = json::object();
  spec["device"] = a.device_id;
  spec["node"] = a.node;
  spec["allocation"] = a.allocation;
  spec["podNamespace"] = a.pod_namespace;
  spec["pod"] = a.pod_name;
  spec["container"] = a.container_name;
  if (a.ForClaim()) {
    spec["claim"] = {{"uid", a.claim_uid}, {"namespace", a.claim_namespace}, {"name", a.claim_name},
                     {"request", a.claim_request}};
  }
  spec["grantId"] = a.grant_id;
  spec["createdTime"] = FormatKubeTime(a.created);
  spec["expiresTime"] = FormatKubeTime(a.expires);
  return {{"apiVersion", kApiVersion},
          {"kind", "DeviceAttachment"},
          {"metadata", {{"name", a.grant_id}, {"namespace", ns}}},
          {"spec", std::move(spec)},
          {"status",
           {{"state", a.pod_name.empty() && !a.ForClaim() ? "Attaching" : "Attached"},
            {"sessionId", a.session_id.ToString()},
            {"writesApplied", a.writes_applied},
            {"bytesIn", a.bytes_in},
            {"bytesOut", a.bytes_out},
            {"completions", a.completions}}}};
}

absl::StatusOr<Attachment> AttachmentFromObject(const json& object) {
  if (absl::Status s = CheckKind(object, "DeviceAttachment"); !s.ok()) return s;
  const json& meta = object["metadata"];
  const json& spec = Member(object, "spec");
  const json& status = Member(object, "status");
  Attachment a;
  a.grant_id = Str(meta, "name");
  const std::string where = absl::StrCat("DeviceAttachment ", Str(meta, "namespace"), "/", a.grant_id);
  a.device_id = Str(spec, "device");
  a.node = Str(spec, "node");
  a.allocation = Str(spec, "allocation");
  a.pod_namespace = Str(spec, "podNamespace");
  a.pod_name = Str(spec, "pod");
  a.container_name = Str(spec, "container");
  const json& claim = Member(spec, "claim");
  a.claim_uid = Str(claim, "uid");
  a.claim_namespace = Str(claim, "namespace");
  a.claim_name = Str(claim, "name");
  a.claim_request = Str(claim, "request");
  if (a.device_id.empty() || a.node.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": spec.device and spec.node are required"));
  }
  if (!absl::Base64Unescape(Str(spec, "token"), &a.token)) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": spec.token is not base64"));
  }
  a.created = TimeOr(spec, "createdTime", absl::InfinitePast());
  a.expires = TimeOr(spec, "expiresTime", absl::InfinitePast());
  absl::StatusOr<session::SessionId> session_id = session::SessionId::ParseOptional(Str(status, "sessionId"));
  if (!session_id.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("DeviceAttachment ", a.pod_namespace, "/", a.grant_id,
                                                   ": status.sessionId: ", session_id.status().message()));
  }
  a.session_id = *session_id;
  a.writes_applied = U64(status, "writesApplied");
  a.bytes_in = U64(status, "bytesIn");
  a.bytes_out = U64(status, "bytesOut");
  a.completions = U64(status, "completions");
  return a;
}

json GrantSecretToObject(const Attachment& a, const std::string& ns, const std::string& owner_uid) {
  json metadata = {{"name", a.grant_id},
                   {"namespace", ns},
                   {"labels", {{"app.kubernetes.io/part-of", "rpci"}, {"rpci.io/device", a.device_id}}}};
  if (!owner_uid.empty()) {
    metadata["ownerReferences"] = json::array({{{"apiVersion", kApiVersion},
                                                {"kind", "DeviceAttachment"},
                                                {"name", a.grant_id},
                                                {"uid", owner_uid},
                                                {"controller", true}}});
  }
  return {{"apiVersion", "v1"},
          {"kind", "Secret"},
          {"metadata", std::move(metadata)},
          {"type", kGrantSecretType},
          {"data", {{"token", absl::Base64Escape(a.token)}}}};
}

absl::StatusOr<std::string> TokenFromGrantSecret(const json& secret) {
  const std::string name = Str(Member(secret, "metadata"), "name");
  if (Str(secret, "type") != kGrantSecretType) {
    return absl::InvalidArgumentError(absl::StrCat("Secret ", name, ": type is not ", kGrantSecretType));
  }
  std::string token;
  if (!absl::Base64Unescape(Str(Member(secret, "data"), "token"), &token) || token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("Secret ", name, ": data.token is missing or not base64"));
  }
  return token;
}

json PoolToObject(const PoolSpec& pool) {
  return {{"apiVersion", kApiVersion},
          {"kind", "DevicePool"},
          {"metadata", {{"name", pool.name}}},
          {"spec",
           {{"resourceName", pool.ResourceName()},
            {"selector", {{"matchLabels", pool.selector}}},
            {"sparesPerNode", pool.spares_per_node},
            {"maxPerNode", pool.max_per_node},
            {"idleReleaseSeconds", pool.idle_release_seconds},
            {"locality", LocalityName(pool.locality)},
            {"allocationMode", AllocationModeName(pool.allocation_mode)}}}};
}

json PoolStatus(const json& pool, const std::map<std::string, int64_t>& phase_counts, absl::Time now) {
  const json& current = Member(pool, "status");
  const int64_t generation = Member(Member(pool, "metadata"), "generation").is_number_integer()
                                 ? pool["metadata"]["generation"].get<int64_t>()
                                 : 0;
  json status = json::object();
  int64_t total = 0;
  for (DevicePhase phase : {DevicePhase::kAvailable, DevicePhase::kAssigned, DevicePhase::kAttached,
                            DevicePhase::kReleasing, DevicePhase::kDraining, DevicePhase::kUnhealthy}) {
    std::string name(PhaseName(phase));
    auto it = phase_counts.find(name);
    const int64_t n = it == phase_counts.end() ? 0 : it->second;
    name[0] = static_cast<char>(tolower(name[0]));
    status[name] = n;
    total += n;
  }
  status["total"] = total;
  status["observedGeneration"] = generation;
  absl::StatusOr<PoolSpec> spec = PoolFromObject(pool);
  const bool free = status["available"].get<int64_t>() + status["assigned"].get<int64_t>() > 0;
  json& conditions = status["conditions"] = json::array();
  auto add = [&](const std::string& type, bool ok, const std::string& reason, const std::string& message) {
    absl::Time since = now;
    for (const json& c : Member(current, "conditions").is_array() ? current["conditions"] : json::array()) {
      if (Str(c, "type") == type && Str(c, "status") == (ok ? "True" : "False")) {
        since = TimeOr(c, "lastTransitionTime", now);
      }
    }
    conditions.push_back(Condition(type, ok, reason, message, since, generation));
  };
  add("Valid", spec.ok(), spec.ok() ? "SpecAccepted" : "InvalidSpec", spec.ok() ? "" : std::string(spec.status().message()));
  add("Ready", free, free ? "DevicesFree" : "NoDeviceFree",
      absl::StrCat(status["available"].get<int64_t>(), " available, ", status["assigned"].get<int64_t>(),
                   " assigned and unused"));
  return status;
}

namespace {

void ReadPoolSpec(ConfigReader& r, PoolSpec* pool) {
  std::string resource;
  r.String("resourceName", &resource);
  if (r.Has("resourceName") && resource != pool->ResourceName()) {
    r.AddError("resourceName", absl::StrCat("must be \"", pool->ResourceName(), "\", got \"", resource, "\""));
  }
  ConfigReader selector = r.Object("selector");
  json labels = json::object();
  selector.Raw("matchLabels", &labels);
  if (!labels.is_object()) {
    selector.AddError("matchLabels", "expected object of strings");
  } else {
    for (auto it = labels.begin(); it != labels.end(); ++it) {
      if (!it->is_string()) {
        selector.AddError("matchLabels", absl::StrCat("label ", it.key(), ": expected string"));
      } else {
        pool->selector[it.key()] = it->get<std::string>();
      }
    }
  }
  r.Int("sparesPerNode", &pool->spares_per_node, 0, 1 << 20);
  r.Int("maxPerNode", &pool->max_per_node, 0, 1 << 20);
  r.Int("idleReleaseSeconds", &pool->idle_release_seconds, 0, int64_t{1} << 40);
  std::string locality(LocalityName(pool->locality));
  r.Enum("locality", {"none", "zone", "rdma"}, &locality);
  (void)ParseLocality(locality, &pool->locality);  // Enum admits only the three names
  std::string mode(AllocationModeName(pool->allocation_mode));
  r.Enum("allocationMode", {"devicePlugin", "dra", "both"}, &mode);
  (void)ParseAllocationMode(mode, &pool->allocation_mode);
}

}  // namespace

absl::StatusOr<PoolSpec> PoolFromObject(const json& object) {
  if (absl::Status s = CheckKind(object, "DevicePool"); !s.ok()) return s;
  PoolSpec pool;
  pool.name = Str(object["metadata"], "name");
  json spec = Member(object, "spec");
  if (spec.is_null()) spec = json::object();
  if (!spec.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("DevicePool ", pool.name, ": spec is not an object"));
  }
  ConfigReader r(spec, absl::StrCat("DevicePool ", pool.name, ": spec"));
  ReadPoolSpec(r, &pool);
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return pool;
}

absl::StatusOr<PoolSpec> PoolFromConfig(const json& entry, const std::string& origin) {
  if (!entry.is_object()) return absl::InvalidArgumentError(absl::StrCat(origin, ": pool entry is not an object"));
  PoolSpec pool;
  ConfigReader r(entry, origin);
  r.String("name", &pool.name);
  if (pool.name.empty()) r.AddError("name", "required");
  ReadPoolSpec(r, &pool);
  if (absl::Status s = r.Finish(); !s.ok()) return s;
  return pool;
}

}  // namespace rpci::controller
