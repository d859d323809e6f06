#include "controller/resource_slices.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "controller/crd_codec.h"
#include "controller/model.h"

namespace rpci::controller {
namespace {

using nlohmann::json;

constexpr size_t kMaxDevicesPerSlice = 128;  // resource.k8s.io's ResourceSliceMaxDevices
constexpr size_t kMaxString = 64;            // a string attribute's longest value
constexpr char kManagedBy[] = "app.kubernetes.io/managed-by";
constexpr char kManager[] = "rpci-controller";
constexpr char kPoolLabel[] = "rpci.io/pool";
constexpr char kZoneLabel[] = "topology.kubernetes.io/zone";

json IntAttribute(int64_t v) { return {{"int", v}}; }
json StringAttribute(const std::string& v) { return {{"string", v.substr(0, kMaxString)}}; }

// The spec without pool.generation: what decides whether a pool changed.
json Content(json slice) {
  json spec = slice.value("spec", json::object());
  if (spec.contains("pool") && spec["pool"].is_object()) spec["pool"].erase("generation");
  return {{"name", Str(slice["metadata"], "name")}, {"spec", spec}};
}

int64_t GenerationOf(const json& slice) {
  const json pool = slice.value("spec", json::object()).value("pool", json::object());
  return pool.value("generation", json()).is_number_integer() ? pool["generation"].get<int64_t>() : 0;
}

}  // namespace

std::map<std::string, PoolOffer> DraOffers(const PoolManager& manager,
                                           const std::map<std::string, std::string>& owner_uids) {
  std::map<std::string, PoolOffer> offers;
  std::map<std::string, std::vector<std::string>> nodes = manager.NodesByPool();
  for (auto& [pool, devices] : manager.DraOffer()) {
    auto owner = owner_uids.find(pool);
    offers[pool] = PoolOffer{std::move(devices), nodes[pool], owner == owner_uids.end() ? "" : owner->second};
  }
  return offers;
}

json SliceDevice(const rpci::v1::ExportedDevice& device) {
  const rpci::v1::PcieFunction& f = device.function();
  json attributes = {{"pool", StringAttribute(device.pool())},
                     {"deviceServer", StringAttribute(device.node())},
                     {"backend", StringAttribute(device.backend())},
                     {"bdf", StringAttribute(f.bdf())},
                     {"vendorId", IntAttribute(f.vendor_id())},
                     {"deviceId", IntAttribute(f.device_id())},
                     {"subsystemVendorId", IntAttribute(f.subsystem_vendor_id())},
                     {"subsystemDeviceId", IntAttribute(f.subsystem_device_id())},
                     {"classCode", IntAttribute(f.class_code())},
                     {"revision", IntAttribute(f.revision())},
                     {"numaNode", IntAttribute(f.numa_node())},
                     {"rdmaLocal", {{"bool", device.local_nics_size() > 0}}},
                     {"localNics", StringAttribute(absl::StrJoin(device.local_nics(), ","))}};
  if (!f.vendor_name().empty()) attributes["vendorName"] = StringAttribute(f.vendor_name());
  if (!f.device_name().empty()) attributes["deviceName"] = StringAttribute(f.device_name());
  if (!f.class_name().empty()) attributes["className"] = StringAttribute(f.class_name());
  if (auto zone = device.labels().find(kZoneLabel); zone != device.labels().end()) {
    attributes["zone"] = StringAttribute(zone->second);
  }
  json capacity = json::object();
  for (const rpci::v1::Bar& bar : f.bars()) {
    if (!bar.is_io() && bar.size() > 0) capacity[absl::StrCat("bar", bar.index())] = {{"value", std::to_string(bar.size())}};
  }
  if (device.dma_size() > 0) capacity["dma"] = {{"value", std::to_string(device.dma_size())}};
  json d = {{"name", DraDeviceName(device.id())}, {"attributes", std::move(attributes)}};
  if (!capacity.empty()) d["capacity"] = std::move(capacity);
  return d;
}

std::vector<json> PoolSlices(const std::string& pool, const PoolOffer& offer, const std::string& version,
                             int64_t generation, bool binding_conditions) {
  if (offer.nodes.empty()) return {};
  std::vector<json> devices;
  for (const rpci::v1::ExportedDevice& d : offer.devices) {
    json device = SliceDevice(d);
    if (binding_conditions && version == "v1") {
      device["bindingConditions"] = {kAttachedCondition};
      device["bindingFailureConditions"] = {kAttachFailedCondition};
      device["bindsToNode"] = true;
    }
    if (version == "v1beta1") {  // v1beta1 nests all but the name under `basic`
      json basic = device;
      basic.erase("name");
      device = {{"name", device["name"]}, {"basic", std::move(basic)}};
    }
    devices.push_back(std::move(device));
  }
  std::sort(devices.begin(), devices.end(), [](const json& a, const json& b) { return a["name"] < b["name"]; });
  std::vector<std::string> nodes = offer.nodes;
  std::sort(nodes.begin(), nodes.end());
  const size_t count = std::max<size_t>(1, (devices.size() + kMaxDevicesPerSlice - 1) / kMaxDevicesPerSlice);
  std::vector<json> slices;
  for (size_t i = 0; i < count; ++i) {
    json metadata = {{"name", absl::StrCat("rpci-", pool, "-", i)},
                     {"labels", {{kManagedBy, kManager}, {kPoolLabel, pool}}}};
    if (!offer.owner_uid.empty()) {
      metadata["ownerReferences"] = json::array({{{"apiVersion", kApiVersion},
                                                  {"kind", "DevicePool"},
                                                  {"name", pool},
                                                  {"uid", offer.owner_uid},
                                                  {"controller", true}}});
    }
    const size_t first = i * kMaxDevicesPerSlice;
    const size_t last = std::min(devices.size(), first + kMaxDevicesPerSlice);
    json spec = {
        {"driver", kDraDriverName},
        {"pool", {{"name", pool}, {"generation", generation}, {"resourceSliceCount", static_cast<int64_t>(count)}}},
        {"nodeSelector",
         {{"nodeSelectorTerms",
           json::array({{{"matchFields", json::array({{{"key", "metadata.name"}, {"operator", "In"}, {"values", nodes}}})}}})}}},
        {"devices", json(std::vector<json>(devices.begin() + first, devices.begin() + last))}};
    slices.push_back({{"apiVersion", absl::StrCat("resource.k8s.io/", version)},
                      {"kind", "ResourceSlice"},
                      {"metadata", std::move(metadata)},
                      {"spec", std::move(spec)}});
  }
  return slices;
}

absl::Status SlicePublisher::Sync(const std::map<std::string, PoolOffer>& offers) {
  absl::StatusOr<std::string> version = api_->Version();
  if (!version.ok()) return version.status();
  const std::string prefix = absl::StrCat("/apis/resource.k8s.io/", *version, "/resourceslices");
  absl::StatusOr<json> list = kube_->Get(prefix);
  if (!list.ok()) return list.status();
  std::map<std::string, std::vector<json>> existing;  // by pool
  for (const json& s : list->value("items", json::array())) {
    const json labels = s.value("metadata", json::object()).value("labels", json::object());
    if (Str(s.value("spec", json::object()), "driver") != kDraDriverName || Str(labels, kManagedBy) != kManager) continue;
    existing[Str(s["spec"].value("pool", json::object()), "name")].push_back(s);
  }
  absl::Status first_error;
  for (const auto& [pool, offer] : offers) {
    absl::Status s = SyncPool(prefix, *version, pool, &offer, existing[pool]);
    if (first_error.ok()) first_error = s;
  }
  for (const auto& [pool, slices] : existing) {
    if (offers.count(pool)) continue;
    absl::Status s = SyncPool(prefix, *version, pool, nullptr, slices);
    if (first_error.ok()) first_error = s;
  }
  return first_error;
}

absl::Status SlicePublisher::SyncPool(const std::string& prefix, const std::string& version, const std::string& pool,
                                      const PoolOffer* offer, const std::vector<json>& existing) {
  int64_t generation = 0;
  std::map<std::string, json> current;  // by name
  for (const json& s : existing) {
    generation = std::max(generation, GenerationOf(s));
    current[Str(s["metadata"], "name")] = s;
  }
  std::vector<json> want =
      offer == nullptr ? std::vector<json>{} : PoolSlices(pool, *offer, version, generation, binding_conditions_);
  bool same = want.size() == current.size();
  for (const json& s : want) {
    auto it = current.find(Str(s["metadata"], "name"));
    same = same && it != current.end() && Content(it->second) == Content(s) && GenerationOf(it->second) == generation &&
           it->second["metadata"].value("labels", json()) == s["metadata"]["labels"] &&
           it->second["metadata"].value("ownerReferences", json()) == s["metadata"].value("ownerReferences", json());
  }
  if (same) return absl::OkStatus();
  for (json& s : want) {
    s["spec"]["pool"]["generation"] = generation + 1;
    const std::string name = Str(s["metadata"], "name");
    auto it = current.find(name);
    absl::StatusOr<json> written;
    if (it == current.end()) {
      written = kube_->Create(prefix, s);
    } else {
      s["metadata"]["resourceVersion"] = it->second["metadata"].value("resourceVersion", "");
      written = kube_->Update(absl::StrCat(prefix, "/", name), s);
      current.erase(it);
    }
    if (!written.ok()) {
      return absl::Status(written.status().code(), absl::StrCat("ResourceSlice ", name, ": ", written.status().message()));
    }
  }
  for (const auto& [name, s] : current) {
    absl::Status d = kube_->Delete(absl::StrCat(prefix, "/", name));
    if (!d.ok() && d.code() != absl::StatusCode::kNotFound) {
      return absl::Status(d.code(), absl::StrCat("ResourceSlice ", name, ": ", d.message()));
    }
  }
  return absl::OkStatus();
}

}  // namespace rpci::controller
