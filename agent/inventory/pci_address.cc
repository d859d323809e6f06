#include "agent/inventory/pci_address.h"

#include <algorithm>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace rpci::agent {
namespace {

// Parses 1..max_digits hex digits into *out, bounded by `max_value`.
bool ParseHexField(absl::string_view text, size_t max_digits, uint32_t max_value, uint32_t* out) {
  if (text.empty() || text.size() > max_digits) return false;
  if (!std::all_of(text.begin(), text.end(), [](char c) { return absl::ascii_isxdigit(c); })) return false;
  uint32_t value = 0;
  if (!absl::SimpleHexAtoi(text, &value) || value > max_value) return false;
  *out = value;
  return true;
}

}  // namespace

absl::StatusOr<PciAddress> PciAddress::Parse(absl::string_view text) {
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("PCI address \"", text, "\": ", what,
                     " (want domain:bus:device.function, e.g. 0000:3b:00.0)"));
  };
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  if (parts.size() < 2 || parts.size() > 3) return bad("wrong number of ':' separators");
  PciAddress addr;
  if (parts.size() == 3 && !ParseHexField(parts[0], 8, 0xffffffffu, &addr.domain)) {
    return bad("bad domain");
  }
  if (!ParseHexField(parts[parts.size() - 2], 2, 0xff, &addr.bus)) return bad("bad bus");
  std::vector<absl::string_view> devfn = absl::StrSplit(parts.back(), '.');
  if (devfn.size() != 2) return bad("missing '.' before the function");
  if (!ParseHexField(devfn[0], 2, 0x1f, &addr.device)) return bad("bad device (00-1f)");
  if (!ParseHexField(devfn[1], 1, 7, &addr.function)) return bad("bad function (0-7)");
  return addr;
}

std::string PciAddress::ToString() const {
  return absl::StrFormat("%04x:%02x:%02x.%x", domain, bus, device, function);
}

std::string PciAddress::ToDashed() const {
  return absl::StrFormat("%04x-%02x-%02x-%x", domain, bus, device, function);
}

}  // namespace rpci::agent
