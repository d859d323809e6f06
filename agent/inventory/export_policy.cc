#include "agent/inventory/export_policy.h"

#include <algorithm>
#include <functional>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/inventory/locality.h"
#include "agent/inventory/sysfs_util.h"

namespace rpci::agent {
namespace {

using rpci::v1::ExportedDevice;
using rpci::v1::PcieFunction;
using rpci::v1::RdmaNic;

// Hands each item of selector `key` (one item or a list of them) to `read`
// with the item's place in the config ("class[1]"); nothing when the key is
// absent, an error for an empty list (it would select nothing).
void ForEachItem(ConfigReader& r, const std::string& key,
                 const std::function<void(const std::string& where, const nlohmann::json& item)>& read) {
  nlohmann::json raw;
  r.Raw(key, &raw);
  if (raw.is_null()) return;
  if (raw.is_array() && raw.empty()) r.AddError(key, "empty list selects nothing; omit the key to select all");
  if (!raw.is_array()) return read(key, raw);
  for (size_t i = 0; i < raw.size(); ++i) read(absl::StrCat(key, "[", i, "]"), raw[i]);
}

// A 16-bit id: an integer (YAML reads unquoted 0x10de as one) or a hex string.
void ReadIds(ConfigReader& r, const std::string& key, std::vector<uint32_t>* out) {
  ForEachItem(r, key, [&](const std::string& where, const nlohmann::json& item) {
    if (item.is_number_unsigned() || (item.is_number_integer() && item.get<int64_t>() >= 0)) {
      uint64_t v = item.get<uint64_t>();
      if (v > 0xffff) {
        r.AddError(where, absl::StrCat("id ", v, " is larger than 0xffff"));
      } else {
        out->push_back(static_cast<uint32_t>(v));
      }
    } else if (item.is_string()) {
      absl::StatusOr<uint64_t> v = sysfs::ParseHex(item.get<std::string>(), 0xffff);
      if (!v.ok()) {
        r.AddError(where, absl::StrCat("expected a 16-bit hex id like \"0x10de\": ", v.status().message()));
      } else {
        out->push_back(static_cast<uint32_t>(*v));
      }
    } else {
      r.AddError(where, "expected a hex id string or integer, got " + JsonTypeName(item));
    }
  });
}

// "0x03" / "0x0302" / "0x030200" (a prefix of the 24-bit class code), or
// "value/mask" in hex.
absl::StatusOr<ClassMatch> ParseClass(const std::string& text) {
  std::vector<std::string> parts = absl::StrSplit(text, '/');
  if (parts.size() == 2) {
    absl::StatusOr<uint64_t> value = sysfs::ParseHex(parts[0], 0xffffff);
    absl::StatusOr<uint64_t> mask = sysfs::ParseHex(parts[1], 0xffffff);
    if (!value.ok()) return value.status();
    if (!mask.ok()) return mask.status();
    if ((*value & ~*mask) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", text, "\": value has bits outside the mask, so nothing can match"));
    }
    return ClassMatch{static_cast<uint32_t>(*value), static_cast<uint32_t>(*mask)};
  }
  std::string digits = text;
  if (absl::StartsWith(digits, "0x") || absl::StartsWith(digits, "0X")) digits = digits.substr(2);
  if (parts.size() != 1 || (digits.size() != 2 && digits.size() != 4 && digits.size() != 6)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", text, "\": want a class prefix of 2, 4 or 6 hex digits (\"0x03\", \"0x0302\", ",
        "\"0x030200\") or \"value/mask\""));
  }
  absl::StatusOr<uint64_t> value = sysfs::ParseHex(digits, 0xffffff);
  if (!value.ok()) return value.status();
  int shift = static_cast<int>(24 - 4 * digits.size());
  return ClassMatch{static_cast<uint32_t>(*value << shift),
                    static_cast<uint32_t>((0xffffffu << shift) & 0xffffff)};
}

// A string selector parsed by `parse`; `expected` names what a non-string
// should have been.
template <typename T>
void ReadParsed(ConfigReader& r, const std::string& key, const std::string& expected,
                absl::StatusOr<T> (*parse)(const std::string&), std::vector<T>* out) {
  ForEachItem(r, key, [&](const std::string& where, const nlohmann::json& item) {
    if (!item.is_string()) {
      r.AddError(where, "expected " + expected + ", got " + JsonTypeName(item));
      return;
    }
    absl::StatusOr<T> v = parse(item.get<std::string>());
    if (!v.ok()) {
      r.AddError(where, std::string(v.status().message()));
    } else {
      out->push_back(*v);
    }
  });
}

absl::StatusOr<PciAddress> ParseBdf(const std::string& text) { return PciAddress::Parse(text); }

absl::StatusOr<std::string> ParseDriver(const std::string& name) { return name; }  // "" selects unbound functions

template <typename T, typename Pred>
bool AnyOrAbsent(const std::vector<T>& list, Pred pred) {
  return list.empty() || std::any_of(list.begin(), list.end(), pred);
}

}  // namespace

bool ExportRule::Matches(const PcieFunction& fn) const {
  absl::StatusOr<PciAddress> addr = PciAddress::Parse(fn.bdf());
  return AnyOrAbsent(classes,
                     [&](const ClassMatch& c) { return (fn.class_code() & c.mask) == c.value; }) &&
         AnyOrAbsent(vendors, [&](uint32_t v) { return fn.vendor_id() == v; }) &&
         AnyOrAbsent(devices, [&](uint32_t d) { return fn.device_id() == d; }) &&
         AnyOrAbsent(bdfs, [&](const PciAddress& a) { return addr.ok() && *addr == a; }) &&
         AnyOrAbsent(drivers, [&](const std::string& d) { return fn.driver() == d; });
}

ExportPolicy ExportPolicy::Read(ConfigReader& reader) {
  ExportPolicy policy;
  std::vector<ConfigReader> rules = reader.ObjectList("rules");
  for (ConfigReader& r : rules) {
    ExportRule rule;
    nlohmann::json pool;
    r.Raw("pool", &pool);
    if (pool.is_null()) {
      r.AddError("pool", "required: the pool this rule feeds (resource rpci.io/<pool>)");
    } else if (!pool.is_string()) {
      r.AddError("pool", "expected string, got " + JsonTypeName(pool));
    } else if (!IsDnsLabel(pool.get<std::string>())) {
      r.AddError("pool", absl::StrCat("\"", pool.get<std::string>(),
                                      "\" is not a DNS label (lower-case a-z, 0-9 and '-', "
                                      "alphanumeric at both ends, at most 63 characters)"));
    } else {
      rule.pool = pool.get<std::string>();
    }
    // An unquoted YAML 0x0302 arrives as 770, and its digit count (which
    // says how much of the code it covers) is lost: classes must be quoted.
    ReadParsed(r, "class", "a quoted hex string like \"0x0302\"", ParseClass, &rule.classes);
    ReadIds(r, "vendor", &rule.vendors);
    ReadIds(r, "device", &rule.devices);
    ReadParsed(r, "bdf", "a PCI address string", ParseBdf, &rule.bdfs);
    ReadParsed(r, "driver", "a driver name", ParseDriver, &rule.drivers);
    if (!r.Has("class") && !r.Has("vendor") && !r.Has("device") && !r.Has("bdf") &&
        !r.Has("driver")) {
      r.AddError("class", "rule has no selector (class, vendor, device, bdf or driver); "
                          "it would export every function");
    }
    policy.rules_.push_back(std::move(rule));
  }
  return policy;
}

absl::StatusOr<ExportPolicy> ExportPolicy::FromJson(const nlohmann::json& config,
                                                    const std::string& origin) {
  if (!config.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": expected an object with \"rules\", got ", JsonTypeName(config)));
  }
  ConfigReader reader(config, origin);
  ExportPolicy policy = Read(reader);
  if (absl::Status s = reader.Finish(); !s.ok()) return s;
  return policy;
}

absl::StatusOr<ExportPolicy> ExportPolicy::LoadFile(const std::string& path) {
  absl::StatusOr<nlohmann::json> config = LoadConfigFile(path);
  if (!config.ok()) return config.status();
  return FromJson(*config, path);
}

const ExportRule* ExportPolicy::Match(const PcieFunction& fn) const {
  for (const ExportRule& rule : rules_) {
    if (rule.Matches(fn)) return &rule;
  }
  return nullptr;
}

absl::StatusOr<std::vector<ExportedDevice>> ExportPolicy::Select(
    const std::string& node, const std::vector<PcieFunction>& functions,
    const std::vector<RdmaNic>& nics) const {
  std::vector<ExportedDevice> out;
  for (const PcieFunction& fn : functions) {
    const ExportRule* rule = Match(fn);
    if (rule == nullptr) continue;
    absl::StatusOr<PciAddress> addr = PciAddress::Parse(fn.bdf());
    if (!addr.ok()) return addr.status();
    absl::StatusOr<std::string> id = DeviceId(node, *addr);
    if (!id.ok()) return id.status();
    ExportedDevice dev;
    dev.set_id(*id);
    dev.set_node(node);
    dev.set_pool(rule->pool);
    dev.set_backend("vfio");
    *dev.mutable_function() = fn;
    for (const std::string& nic : FindLocalNics(fn, nics, functions).nics) dev.add_local_nics(nic);
    dev.set_health(rpci::v1::DEVICE_HEALTH_HEALTHY);
    out.push_back(std::move(dev));
  }
  return out;
}

bool IsDnsLabel(const std::string& text) {
  if (text.empty() || text.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(text.front()) || !alnum(text.back())) return false;
  return std::all_of(text.begin(), text.end(), [&](char c) { return alnum(c) || c == '-'; });
}

absl::StatusOr<std::string> DeviceId(const std::string& node, const PciAddress& address) {
  std::string prefix = absl::AsciiStrToLower(node);
  std::replace(prefix.begin(), prefix.end(), '.', '-');
  std::string id = absl::StrCat(prefix, "-", address.ToDashed());
  if (node.empty()) return absl::InvalidArgumentError("device id: node name is empty");
  if (id.size() > 63) {
    return absl::InvalidArgumentError(
        absl::StrCat("device id \"", id, "\" for node \"", node, "\" is ", id.size(),
                     " characters; a DNS label allows 63 (node names up to ",
                     63 - 1 - address.ToDashed().size(), " characters fit)"));
  }
  if (!IsDnsLabel(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("device id \"", id, "\" for node \"", node,
                     "\" is not a DNS label (a-z, 0-9 and '-', alphanumeric at both ends)"));
  }
  return id;
}

}  // namespace rpci::agent
