// The agent's export policy (a YAML/JSON "rules" list): any bytes give a
// policy or a Status, and a policy that loads selects from an inventory
// without crashing.
#include <cstdint>
#include <string>
#include <vector>

#include "agent/inventory/export_policy.h"
#include "common/config.h"

namespace {

std::vector<rpci::v1::PcieFunction> Inventory() {
  std::vector<rpci::v1::PcieFunction> fns(3);
  fns[0].set_bdf("0000:3b:00.0");
  fns[0].set_vendor_id(0x10de);
  fns[0].set_device_id(0x20b5);
  fns[0].set_class_code(0x030200);
  fns[0].set_driver("vfio-pci");
  fns[1].set_bdf("0000:5e:00.1");
  fns[1].set_vendor_id(0x15b3);
  fns[1].set_device_id(0x101b);
  fns[1].set_class_code(0x020000);
  fns[1].set_driver("mlx5_core");
  fns[2].set_bdf("0001:00:02.0");
  fns[2].set_vendor_id(0x8086);
  fns[2].set_class_code(0x010802);
  return fns;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::vector<rpci::v1::PcieFunction> functions = Inventory();
  absl::StatusOr<nlohmann::json> parsed =
      rpci::ParseConfigText(std::string(reinterpret_cast<const char*>(data), size), "policy.yaml");
  if (!parsed.ok()) return 0;
  absl::StatusOr<rpci::agent::ExportPolicy> policy = rpci::agent::ExportPolicy::FromJson(*parsed, "policy.yaml");
  if (!policy.ok()) return 0;
  for (const auto& fn : functions) (void)policy->Match(fn);
  (void)policy->Select("node-a", functions, {});
  return 0;
}
