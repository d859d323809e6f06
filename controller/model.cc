#include "controller/model.h"

#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace rpci::controller {

std::string_view PhaseName(DevicePhase phase) {
  switch (phase) {
    case DevicePhase::kAvailable: return "Available";
    case DevicePhase::kAssigned: return "Assigned";
    case DevicePhase::kAttached: return "Attached";
    case DevicePhase::kReleasing: return "Releasing";
    case DevicePhase::kUnhealthy: return "Unhealthy";
    case DevicePhase::kDraining: return "Draining";
  }
  return "Unknown";
}

namespace {

// An enum's values with the names the CRDs spell them by; the first is the
// name of a value missing from the table.
template <typename Enum>
struct Spelling {
  Enum value;
  std::string_view name;
};

constexpr Spelling<Locality> kLocalities[] = {
    {Locality::kNone, "none"}, {Locality::kZone, "zone"}, {Locality::kRdma, "rdma"}};
constexpr Spelling<AllocationMode> kAllocationModes[] = {
    {AllocationMode::kDevicePlugin, "devicePlugin"}, {AllocationMode::kDra, "dra"}, {AllocationMode::kBoth, "both"}};

template <typename Enum, size_t N>
std::string_view NameIn(const Spelling<Enum> (&table)[N], Enum value) {
  for (const Spelling<Enum>& s : table) {
    if (s.value == value) return s.name;
  }
  return table[0].name;
}

template <typename Enum, size_t N>
bool ParseIn(const Spelling<Enum> (&table)[N], std::string_view name, Enum* value) {
  for (const Spelling<Enum>& s : table) {
    if (s.name == name) {
      *value = s.value;
      return true;
    }
  }
  return false;
}

}  // namespace

std::string_view LocalityName(Locality locality) { return NameIn(kLocalities, locality); }

bool ParseLocality(std::string_view name, Locality* locality) { return ParseIn(kLocalities, name, locality); }

std::string_view AllocationModeName(AllocationMode mode) { return NameIn(kAllocationModes, mode); }

bool ParseAllocationMode(std::string_view name, AllocationMode* mode) { return ParseIn(kAllocationModes, name, mode); }

namespace {

bool IsDnsLabel(const std::string& s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

}  // namespace

std::string DraDeviceName(const std::string& device_id) {
  if (IsDnsLabel(device_id)) return device_id;
  uint64_t hash = 14695981039346656037ull;
  std::string name;
  for (char c : device_id) {
    hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    const bool ok = (lower >= 'a' && lower <= 'z') || (lower >= '0' && lower <= '9');
    if (name.size() < 54) name.push_back(ok ? lower : '-');
  }
  while (!name.empty() && name.front() == '-') name.erase(name.begin());
  while (!name.empty() && name.back() == '-') name.pop_back();
  char suffix[10];
  snprintf(suffix, sizeof(suffix), "%08x", static_cast<uint32_t>(hash ^ (hash >> 32)));
  return name.empty() ? absl::StrCat("d-", suffix) : absl::StrCat(name, "-", suffix);
}

bool PoolSpec::Selects(const rpci::v1::ExportedDevice& device) const {
  if (device.pool() != name) return false;
  for (const auto& [key, value] : selector) {
    auto it = device.labels().find(key);
    if (it == device.labels().end() || it->second != value) return false;
  }
  return true;
}

DevicePhase Device::PhaseAt(absl::Time now) const {
  if (!healthy) return DevicePhase::kUnhealthy;
  if (draining || drain_requested) return DevicePhase::kDraining;
  if (!attachment.empty()) return DevicePhase::kAttached;
  if (!assigned_node.empty()) return DevicePhase::kAssigned;
  if (releasing_until > now || scrubbing) return DevicePhase::kReleasing;
  return DevicePhase::kAvailable;
}

std::string FormatKubeTime(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string FormatKubeMicroTime(absl::Time t) {
  if (t == absl::InfinitePast()) return "";
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

absl::StatusOr<absl::Time> ParseKubeTime(const std::string& text) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    return absl::InvalidArgumentError(absl::StrCat("time \"", text, "\": not RFC 3339: ", err));
  }
  return t;
}

}  // namespace rpci::controller
