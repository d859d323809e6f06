#ifndef RPCI_AGENT_INVENTORY_PCI_NAMES_H_
#define RPCI_AGENT_INVENTORY_PCI_NAMES_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

struct pci_access;

namespace rpci::agent {

// Vendor, device and class names from the pci.ids database through libpci,
// formatted exactly as lspci prints them (unknown ids come back as libpci's
// fallback text, e.g. "Device 0d57"). Not thread-safe: libpci caches lazily.
class PciNames {
 public:
  // `ids_path` empty uses libpci's default (and, like lspci, udev's hwdb for
  // ids the file lacks). A given path that cannot be read is NOT_FOUND.
  static absl::StatusOr<std::unique_ptr<PciNames>> Open(const std::string& ids_path = "");

  ~PciNames();
  PciNames(const PciNames&) = delete;
  PciNames& operator=(const PciNames&) = delete;

  std::string Vendor(uint32_t vendor_id);
  std::string Device(uint32_t vendor_id, uint32_t device_id);
  // `class_code` is the 24-bit class; names come from class and subclass.
  std::string Class(uint32_t class_code);
  std::string SubsystemVendor(uint32_t subsystem_vendor_id);
  std::string Subsystem(uint32_t vendor_id, uint32_t device_id, uint32_t subsystem_vendor_id,
                        uint32_t subsystem_device_id);

 private:
  explicit PciNames(pci_access* access) : access_(access) {}
  pci_access* access_;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_INVENTORY_PCI_NAMES_H_
