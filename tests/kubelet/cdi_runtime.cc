#include "tests/kubelet/cdi_runtime.h"

#include <dirent.h>

#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace rpci::testing {
namespace {

struct SpecDevice {
  std::string spec_path;
  const nlohmann::json* spec;    // the whole spec (spec-wide edits)
  const nlohmann::json* device;  // its entry
};

bool HasEdits(const nlohmann::json& edits) {
  for (const char* key : {"env", "mounts", "deviceNodes", "hooks"}) {
    if (edits.contains(key) && !edits[key].empty()) return true;
  }
  return false;
}

void Apply(const nlohmann::json& edits, v1beta1::ContainerAllocateResponse& out) {
  if (edits.contains("env")) {
    for (const nlohmann::json& e : edits["env"]) {
      const std::string kv = e.get<std::string>();
      const size_t eq = kv.find('=');
      (*out.mutable_envs())[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
    }
  }
  if (edits.contains("mounts")) {
    for (const nlohmann::json& m : edits["mounts"]) {
      v1beta1::Mount* mount = out.add_mounts();
      mount->set_host_path(m.at("hostPath").get<std::string>());
      mount->set_container_path(m.at("containerPath").get<std::string>());
      for (const nlohmann::json& o : m.value("options", nlohmann::json::array())) {
        if (o.get<std::string>() == "ro") mount->set_read_only(true);
      }
    }
  }
  if (edits.contains("deviceNodes")) {
    for (const nlohmann::json& n : edits["deviceNodes"]) {
      const std::string path = n.at("path").get<std::string>();
      v1beta1::DeviceSpec* d = out.add_devices();
      d->set_host_path(n.value("hostPath", path));
      d->set_container_path(path);
      d->set_permissions(n.value("permissions", "rwm"));
    }
  }
}

absl::StatusOr<nlohmann::json> ReadSpec(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  try {
    nlohmann::json spec = nlohmann::json::parse(text.str());
    if (!spec.contains("cdiVersion") || !spec.contains("kind") || !spec.contains("devices")) {
      return absl::InvalidArgumentError(path + ": CDI spec needs cdiVersion, kind and devices");
    }
    return spec;
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
  }
}

}  // namespace

absl::StatusOr<v1beta1::ContainerAllocateResponse> InjectCdiDevices(const std::string& cdi_dir,
                                                                    const std::vector<std::string>& cdi_ids) {
  std::vector<std::pair<std::string, nlohmann::json>> specs;
  if (DIR* d = opendir(cdi_dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (!absl::EndsWith(name, ".json")) continue;
      absl::StatusOr<nlohmann::json> spec = ReadSpec(cdi_dir + "/" + name);
      if (!spec.ok()) {
        closedir(d);
        return spec.status();
      }
      specs.emplace_back(cdi_dir + "/" + name, *std::move(spec));
    }
    closedir(d);
  }
  std::map<std::string, SpecDevice> registry;  // "kind=name"
  for (const auto& [path, spec] : specs) {
    for (const nlohmann::json& dev : spec["devices"]) {
      const std::string id = absl::StrCat(spec["kind"].get<std::string>(), "=", dev.at("name").get<std::string>());
      if (!dev.contains("containerEdits") || !HasEdits(dev["containerEdits"])) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": device ", id, " has no container edits"));
      }
      if (auto [it, fresh] = registry.emplace(id, SpecDevice{path, &spec, &dev}); !fresh) {
        return absl::InvalidArgumentError(
            absl::StrCat("CDI device ", id, " conflicts: declared in ", it->second.spec_path, " and ", path));
      }
    }
  }
  v1beta1::ContainerAllocateResponse out;
  std::vector<std::string> unresolved;
  std::set<std::string> applied_specs;
  for (const std::string& id : cdi_ids) {
    if (id.find('/') == std::string::npos || id.find('=') == std::string::npos) {
      return absl::InvalidArgumentError("CDI device id \"" + id + "\" is not <vendor>/<class>=<name>");
    }
    auto it = registry.find(id);
    if (it == registry.end()) {
      unresolved.push_back(id);
      continue;
    }
    if (applied_specs.insert(it->second.spec_path).second && it->second.spec->contains("containerEdits")) {
      Apply((*it->second.spec)["containerEdits"], out);
    }
    Apply((*it->second.device)["containerEdits"], out);
  }
  if (!unresolved.empty()) {
    return absl::NotFoundError("unresolvable CDI devices " + absl::StrJoin(unresolved, ", "));
  }
  return out;
}

absl::StatusOr<v1beta1::ContainerAllocateResponse> ApplyCdiDevices(const v1beta1::ContainerAllocateResponse& response,
                                                                   const std::string& cdi_dir) {
  v1beta1::ContainerAllocateResponse out = response;
  if (cdi_dir.empty() || response.cdi_devices().empty()) return out;
  std::vector<std::string> ids;
  for (const v1beta1::CDIDevice& d : response.cdi_devices()) ids.push_back(d.name());
  absl::StatusOr<v1beta1::ContainerAllocateResponse> edits = InjectCdiDevices(cdi_dir, ids);
  if (!edits.ok()) return edits.status();
  for (const auto& [k, v] : edits->envs()) (*out.mutable_envs())[k] = v;
  for (const v1beta1::Mount& m : edits->mounts()) *out.add_mounts() = m;
  for (const v1beta1::DeviceSpec& d : edits->devices()) *out.add_devices() = d;
  return out;
}

}  // namespace rpci::testing
