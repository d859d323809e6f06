#include "agent/inventory/pci_names.h"

#include <unistd.h>

#include <cstdarg>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

extern "C" {
#include <pci/pci.h>
}

namespace rpci::agent {
namespace {

// libpci's default handlers print to stderr and, for errors, exit(). Name
// lookups only warn (e.g. a malformed pci.ids line); that leaves names
// unknown, which is what callers see, so warnings are dropped.
void IgnoreMessage(char*, ...) {}

std::string OrEmpty(const char* name) { return name == nullptr ? std::string() : std::string(name); }

}  // namespace

absl::StatusOr<std::unique_ptr<PciNames>> PciNames::Open(const std::string& ids_path) {
  if (!ids_path.empty() && access(ids_path.c_str(), R_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("pci.ids file ", ids_path, ": ", std::strerror(errno)));
  }
  pci_access* a = pci_alloc();
  if (a == nullptr) return absl::ResourceExhaustedError("libpci: pci_alloc failed");
  a->warning = IgnoreMessage;
  a->debug = IgnoreMessage;
  if (!ids_path.empty()) {
    // libpci frees the name when to_be_freed is set, so hand it a copy.
    pci_set_name_list_path(a, strdup(ids_path.c_str()), 1);
  }
  return std::unique_ptr<PciNames>(new PciNames(a));
}

PciNames::~PciNames() { pci_cleanup(access_); }

std::string PciNames::Vendor(uint32_t vendor_id) {
  char buf[256];
  return OrEmpty(pci_lookup_name(access_, buf, sizeof(buf), PCI_LOOKUP_VENDOR, vendor_id));
}

std::string PciNames::Device(uint32_t vendor_id, uint32_t device_id) {
  char buf[256];
  return OrEmpty(pci_lookup_name(access_, buf, sizeof(buf), PCI_LOOKUP_DEVICE, vendor_id, device_id));
}

std::string PciNames::Class(uint32_t class_code) {
  char buf[256];
  return OrEmpty(pci_lookup_name(access_, buf, sizeof(buf), PCI_LOOKUP_CLASS, class_code >> 8));
}

std::string PciNames::SubsystemVendor(uint32_t subsystem_vendor_id) {
  char buf[256];
  return OrEmpty(pci_lookup_name(access_, buf, sizeof(buf), PCI_LOOKUP_SUBSYSTEM | PCI_LOOKUP_VENDOR,
                         subsystem_vendor_id));
}

std::string PciNames::Subsystem(uint32_t vendor_id, uint32_t device_id,
                                uint32_t subsystem_vendor_id, uint32_t subsystem_device_id) {
  char buf[256];
  return OrEmpty(pci_lookup_name(access_, buf, sizeof(buf), PCI_LOOKUP_SUBSYSTEM | PCI_LOOKUP_DEVICE,
                         vendor_id, device_id, subsystem_vendor_id, subsystem_device_id));
}

}  // namespace rpci::agent
