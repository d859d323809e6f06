#ifndef RPCI_AGENT_INVENTORY_EXPORT_POLICY_H_
#define RPCI_AGENT_INVENTORY_EXPORT_POLICY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "agent/inventory/pci_address.h"
#include "common/config.h"
#include "nlohmann/json.hpp"
#include "proto/rpci/v1/device.pb.h"

namespace rpci::agent {

// A class-code match: (class_code & mask) == value, over the 24-bit code.
struct ClassMatch {
  uint32_t value = 0;
  uint32_t mask = 0;
};

// One rule of the export policy: the selectors a function must all satisfy
// (each list matches when any entry does; an absent selector matches all)
// and the pool (resource rpci.io/<pool>) it then feeds.
struct ExportRule {
  std::string pool;
  std::vector<ClassMatch> classes;
  std::vector<uint32_t> vendors;
  std::vector<uint32_t> devices;
  std::vector<PciAddress> bdfs;
  std::vector<std::string> drivers;

  bool Matches(const rpci::v1::PcieFunction& fn) const;
};

// Which local functions the agent exports, and into which pools. Rules are
// tried in order; the first that matches decides the pool.
//
//   rules:
//     - pool: gpu
//       class: "0x0302"            # prefix of the 24-bit class code, or "0x030000/0xff0000"
//       vendor: 0x10de             # one id or a list
//     - pool: nvme
//       class: ["0x010802"]
//       bdf: ["0000:5e:00.0"]
//       driver: [vfio-pci]
class ExportPolicy {
 public:
  // Reads the policy from `reader`'s "rules" key. Errors (bad types, bad ids,
  // bad pool names, rules without selectors, unknown keys) are recorded in
  // the reader, named by key path ("rules[1].vendor"), for its Finish().
  static ExportPolicy Read(ConfigReader& reader);

  // A whole config object holding just the policy. INVALID_ARGUMENT naming
  // `origin` and every bad key.
  static absl::StatusOr<ExportPolicy> FromJson(const nlohmann::json& config,
                                               const std::string& origin);
  // A YAML or JSON file holding just the policy.
  static absl::StatusOr<ExportPolicy> LoadFile(const std::string& path);

  // The first rule matching `fn`, or nullptr.
  const ExportRule* Match(const rpci::v1::PcieFunction& fn) const;

  // The exported devices of node `node`: every function a rule selects, with
  // its id, pool, backend "vfio" and local NICs (see locality.h), in
  // inventory order. INVALID_ARGUMENT when `node` makes no valid device id.
  absl::StatusOr<std::vector<rpci::v1::ExportedDevice>> Select(
      const std::string& node, const std::vector<rpci::v1::PcieFunction>& functions,
      const std::vector<rpci::v1::RdmaNic>& nics) const;

  const std::vector<ExportRule>& rules() const { return rules_; }

 private:
  std::vector<ExportRule> rules_;
};

// The cluster-unique id of a device: "<node>-<bdf with ':' and '.' as '-'>",
// e.g. "gpu-node-1-0000-3b-00-0". The node name is lower-cased and its dots
// become '-' too. INVALID_ARGUMENT unless the result is a DNS label
// (lower-case alphanumerics and '-', starting and ending alphanumeric, at
// most 63 characters).
absl::StatusOr<std::string> DeviceId(const std::string& node, const PciAddress& address);

// True for a DNS label as above; pools must be one.
bool IsDnsLabel(const std::string& text);

}  // namespace rpci::agent

#endif  // RPCI_AGENT_INVENTORY_EXPORT_POLICY_H_
