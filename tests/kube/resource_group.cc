#include "tests/kube/resource_group.h"

#include <regex>
#include <set>

#include "absl/strings/str_cat.h"

namespace rpci::kubetest::resource_group {
namespace {

using nlohmann::json;

constexpr ResourceInfo kResources[] = {
    {"deviceclasses", "DeviceClass", false, false},
    {"resourceclaims", "ResourceClaim", true, true},
    {"resourceclaimtemplates", "ResourceClaimTemplate", true, false},
    {"resourceslices", "ResourceSlice", false, false},
};

// A v1beta1 request's fields that v1 keeps under `exactly`.
const std::set<std::string>& ExactlyFields() {
  static const std::set<std::string> k = {"deviceClassName", "selectors", "allocationMode", "count",
                                          "adminAccess",     "tolerations", "capacity"};
  return k;
}

// Applies `fn` to each element of object[path...] that is an array.
template <typename Fn>
void EachIn(json& parent, const char* key, Fn fn) {
  if (!parent.is_object() || !parent.contains(key) || !parent[key].is_array()) return;
  for (size_t i = 0; i < parent[key].size(); ++i) fn(parent[key][i], i);
}

json* DeviceRequests(json& object, const std::string& resource) {
  json* spec = object.contains("spec") ? &object["spec"] : nullptr;
  if (spec != nullptr && resource == "resourceclaimtemplates") spec = spec->contains("spec") ? &(*spec)["spec"] : nullptr;
  if (spec == nullptr || !spec->is_object() || !spec->contains("devices") || !(*spec)["devices"].is_object()) {
    return nullptr;
  }
  return &(*spec)["devices"];
}

std::string RequestsPath(const std::string& resource) {
  return resource == "resourceclaimtemplates" ? "spec.spec.devices.requests" : "spec.devices.requests";
}

bool IsDnsLabel(const std::string& s) {
  static const std::regex kLabel("[a-z0-9]([-a-z0-9]*[a-z0-9])?");
  return s.size() <= 63 && std::regex_match(s, kLabel);
}

bool IsQuantity(const json& q) {
  static const std::regex kQuantity(R"([+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+|[KMGTPE]i|[numkMGTPE])?)");
  return q.is_string() && std::regex_match(q.get<std::string>(), kQuantity);
}

void ValidateDevice(const json& d, const std::string& at, std::set<std::string>& names,
                    std::vector<std::string>& out) {
  const std::string name = d.is_object() ? d.value("name", "") : "";
  if (!IsDnsLabel(name)) out.push_back(at + ".name: Invalid value: \"" + name + "\": must be a DNS label");
  if (!names.insert(name).second) out.push_back(at + ".name: Duplicate value: \"" + name + "\"");
  size_t count = 0;
  const json attributes = d.is_object() ? d.value("attributes", json::object()) : json::object();
  const json capacity = d.is_object() ? d.value("capacity", json::object()) : json::object();
  for (const auto& [key, a] : attributes.items()) {
    ++count;
    int kinds = 0;
    for (const char* k : {"int", "bool", "string", "version"}) kinds += a.is_object() && a.contains(k);
    if (kinds != 1) {
      out.push_back(absl::StrCat(at, ".attributes[", key, "]: Invalid value: exactly one value must be specified"));
    }
  }
  for (const auto& [key, c] : capacity.items()) {
    ++count;
    if (!c.is_object() || !IsQuantity(c.value("value", json()))) {
      out.push_back(absl::StrCat(at, ".capacity[", key, "].value: Invalid value: not a quantity"));
    }
  }
  if (count > 32) {
    out.push_back(absl::StrCat(at, ": Too many: ", count, ": must have at most 32 attributes and capacities"));
  }
}

std::vector<std::string> ValidateSlice(const json& o) {
  std::vector<std::string> out;
  const json spec = o.value("spec", json::object());
  if (spec.value("driver", "").empty()) out.push_back("spec.driver: Required value");
  const json pool = spec.value("pool", json::object());
  if (pool.value("name", "").empty()) out.push_back("spec.pool.name: Required value");
  if (!pool.value("resourceSliceCount", json()).is_number_integer() || pool["resourceSliceCount"].get<int64_t>() < 1) {
    out.push_back("spec.pool.resourceSliceCount: Invalid value: must be greater than zero");
  }
  if (pool.contains("generation") && (!pool["generation"].is_number_integer() || pool["generation"].get<int64_t>() < 0)) {
    out.push_back("spec.pool.generation: Invalid value: must be greater than or equal to 0");
  }
  int selections = !spec.value("nodeName", "").empty() + spec.contains("nodeSelector") +
                   (spec.value("allNodes", false) ? 1 : 0) + (spec.value("perDeviceNodeSelection", false) ? 1 : 0);
  if (selections != 1) {
    out.push_back("spec: Invalid value: exactly one of `nodeName`, `nodeSelector`, `allNodes`, "
                  "`perDeviceNodeSelection` is required");
  }
  if (spec.contains("nodeSelector")) {
    const json terms = spec["nodeSelector"].value("nodeSelectorTerms", json::array());
    if (!terms.is_array() || terms.size() != 1) {
      out.push_back("spec.nodeSelector.nodeSelectorTerms: Invalid value: must have exactly one node selector term");
    }
  }
  const json devices = spec.value("devices", json::array());
  if (devices.size() > 128) {
    out.push_back(absl::StrCat("spec.devices: Too many: ", devices.size(), ": must have at most 128 items"));
  }
  std::set<std::string> names;
  for (size_t i = 0; i < devices.size(); ++i) ValidateDevice(devices[i], absl::StrCat("spec.devices[", i, "]"), names, out);
  return out;
}

}  // namespace

const ResourceInfo* Find(const std::string& resource) {
  for (const ResourceInfo& r : kResources) {
    if (resource == r.resource) return &r;
  }
  return nullptr;
}

json ToStorage(const std::string& resource, const std::string& version, json object,
               std::vector<std::string>* warnings) {
  if (resource == "resourceslices" && object.contains("spec")) {
    EachIn(object["spec"], "devices", [&](json& d, size_t i) {
      if (!d.is_object()) return;
      const std::string at = absl::StrCat("spec.devices[", i, "]");
      if (version == "v1beta1") {
        json basic = d.value("basic", json::object());
        json next = {{"name", d.value("name", "")}};
        for (auto& [k, v] : d.items()) {
          if (k != "name" && k != "basic") warnings->push_back(absl::StrCat("unknown field \"", at, ".", k, "\""));
        }
        if (basic.is_object()) {
          for (auto& [k, v] : basic.items()) next[k] = v;
        }
        d = std::move(next);
      } else if (d.contains("basic")) {
        warnings->push_back(absl::StrCat("unknown field \"", at, ".basic\""));
        d.erase("basic");
      }
    });
  }
  if (json* devices = DeviceRequests(object, resource)) {
    EachIn(*devices, "requests", [&](json& r, size_t i) {
      if (!r.is_object()) return;
      const std::string at = absl::StrCat(RequestsPath(resource), "[", i, "]");
      if (version == "v1beta1") {
        json exactly = json::object();
        if (r.contains("exactly")) warnings->push_back(absl::StrCat("unknown field \"", at, ".exactly\""));
        r.erase("exactly");
        for (const std::string& f : ExactlyFields()) {
          if (r.contains(f)) {
            exactly[f] = r[f];
            r.erase(f);
          }
        }
        if (!exactly.empty()) r["exactly"] = std::move(exactly);
      } else {
        for (const std::string& f : ExactlyFields()) {
          if (r.contains(f)) {
            warnings->push_back(absl::StrCat("unknown field \"", at, ".", f, "\""));
            r.erase(f);
          }
        }
      }
    });
  }
  object["apiVersion"] = absl::StrCat(kGroup, "/v1");
  return object;
}

json FromStorage(const std::string& resource, const std::string& version, json object) {
  object["apiVersion"] = absl::StrCat(kGroup, "/", version);
  if (version != "v1beta1") return object;
  if (resource == "resourceslices" && object.contains("spec")) {
    EachIn(object["spec"], "devices", [](json& d, size_t) {
      if (!d.is_object()) return;
      json basic = json::object();
      for (auto& [k, v] : d.items()) {
        if (k != "name") basic[k] = v;
      }
      d = {{"name", d.value("name", "")}, {"basic", std::move(basic)}};
    });
  }
  if (json* devices = DeviceRequests(object, resource)) {
    EachIn(*devices, "requests", [](json& r, size_t) {
      if (!r.is_object() || !r.contains("exactly")) return;
      json exactly = r["exactly"];
      r.erase("exactly");
      if (exactly.is_object()) {
        for (auto& [k, v] : exactly.items()) r[k] = v;
      }
    });
  }
  return object;
}

std::vector<std::string> Validate(const std::string& resource, const json& object) {
  if (resource == "resourceslices") return ValidateSlice(object);
  return {};
}

json Group(const std::vector<std::string>& versions) {
  json list = json::array();
  for (const std::string& v : versions) list.push_back({{"groupVersion", absl::StrCat(kGroup, "/", v)}, {"version", v}});
  json group = {{"kind", "APIGroup"}, {"apiVersion", "v1"}, {"name", kGroup}, {"versions", list}};
  if (!list.empty()) group["preferredVersion"] = list[0];
  return group;
}

json ResourceList(const std::string& version) {
  json resources = json::array();
  for (const ResourceInfo& r : kResources) {
    std::string singular = r.kind;
    for (char& c : singular) c = static_cast<char>(tolower(c));
    resources.push_back({{"name", r.resource},
                         {"singularName", singular},
                         {"namespaced", r.namespaced},
                         {"kind", r.kind},
                         {"verbs", {"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}}});
    if (r.status) {
      resources.push_back({{"name", absl::StrCat(r.resource, "/status")},
                           {"singularName", ""},
                           {"namespaced", r.namespaced},
                           {"kind", r.kind},
                           {"verbs", {"get", "patch", "update"}}});
    }
  }
  return {{"kind", "APIResourceList"},
          {"apiVersion", "v1"},
          {"groupVersion", absl::StrCat(kGroup, "/", version)},
          {"resources", resources}};
}

}  // namespace rpci::kubetest::resource_group
