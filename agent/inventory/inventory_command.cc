#include "agent/inventory/inventory_command.h"

#include <unistd.h>

#include <cstdlib>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "agent/inventory/export_policy.h"
#include "agent/inventory/locality.h"
#include "agent/inventory/pci_inventory.h"
#include "agent/inventory/pci_names.h"
#include "agent/inventory/rdma_inventory.h"
#include "common/daemon.h"
#include "common/flags.h"
#include "google/protobuf/util/json_util.h"

namespace rpci::agent {
namespace {

using rpci::v1::ExportedDevice;
using rpci::v1::PcieFunction;
using rpci::v1::RdmaNic;

std::string HostName() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) == 0) return host;
  return "";
}

// One message as a single JSON line, proto field names, defaults included.
std::string JsonLine(const google::protobuf::Message& msg) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string line;
  if (!google::protobuf::util::MessageToJsonString(msg, &line, options).ok()) {
    return "{}";  // only on a proto/JSON library bug; every field here is representable
  }
  return line;
}

void PrintFunctionTable(const std::vector<PcieFunction>& fns, std::ostream& out) {
  out << absl::StrFormat("%-13s %-7s %-9s %-12s %-4s %-5s %-20s %-8s %s\n", "BDF", "CLASS", "ID",
                         "DRIVER", "NUMA", "IOMMU", "LINK", "PROBLEMS", "NAME");
  for (const PcieFunction& fn : fns) {
    std::string link = fn.has_link() ? absl::StrCat(fn.link().current_speed(), " x",
                                                    fn.link().current_width())
                                     : "-";
    std::string name = absl::StrCat(fn.vendor_name(), " ", fn.device_name());
    out << absl::StrFormat("%-13s %06x  %04x:%04x %-12s %-4d %-5d %-20s %-8d %s\n", fn.bdf(),
                           fn.class_code(), fn.vendor_id(), fn.device_id(),
                           fn.driver().empty() ? "-" : fn.driver(), fn.numa_node(),
                           fn.iommu_group(), link, fn.problems_size(), name);
  }
}

void PrintNicTable(const std::vector<RdmaNic>& nics, std::ostream& out) {
  if (nics.empty()) {
    out << "no RDMA devices\n";
    return;
  }
  out << absl::StrFormat("%-12s %-13s %-4s %-24s %s\n", "NIC", "BDF", "NUMA", "UVERBS", "PORTS");
  for (const RdmaNic& nic : nics) {
    std::vector<std::string> ports;
    for (const auto& p : nic.ports()) {
      ports.push_back(absl::StrCat(p.port(), ":", p.state(), "/", p.link_layer(),
                                   p.netdev().empty() ? "" : absl::StrCat("@", p.netdev()), " gids=", p.gids_size()));
    }
    out << absl::StrFormat("%-12s %-13s %-4d %-24s %s\n", nic.name(), nic.bdf().empty() ? "-" : nic.bdf(),
                           nic.numa_node(), nic.uverbs_device().empty() ? "-" : nic.uverbs_device(),
                           absl::StrJoin(ports, " "));
  }
}

void PrintExportedTable(const std::vector<ExportedDevice>& devices, std::ostream& out) {
  out << absl::StrFormat("%-40s %-12s %-13s %s\n", "ID", "POOL", "BDF", "LOCAL NICS");
  for (const ExportedDevice& d : devices) {
    out << absl::StrFormat("%-40s %-12s %-13s %s\n", d.id(), d.pool(), d.function().bdf(),
                           d.local_nics().empty() ? "-" : absl::StrJoin(d.local_nics(), ","));
  }
}

// `items` as a table, or with --json one object per line.
template <typename T>
void PrintItems(bool json, const std::vector<T>& items, void (*table)(const std::vector<T>&, std::ostream&),
                std::ostream& out) {
  if (!json) {
    table(items, out);
    return;
  }
  for (const T& item : items) out << JsonLine(item) << "\n";
}

// Prints what --show names (--json: one object per line); the exit code.
int PrintInventory(const std::string& show, bool json, const std::vector<PcieFunction>& fns,
                   const std::vector<RdmaNic>& nics, const std::string& policy_file, const std::string& node,
                   std::ostream& out, std::ostream& err) {
  if (show == "functions") {
    PrintItems(json, fns, PrintFunctionTable, out);
    return 0;
  }
  if (show == "nics") {
    PrintItems(json, nics, PrintNicTable, out);
    return 0;
  }
  absl::StatusOr<ExportPolicy> policy = ExportPolicy::LoadFile(policy_file);
  if (!policy.ok()) {
    err << "rpci-agent inventory: " << policy.status().message() << "\n";
    return 1;
  }
  absl::StatusOr<std::vector<ExportedDevice>> devices = policy->Select(node, fns, nics);
  if (!devices.ok()) {
    err << "rpci-agent inventory: " << devices.status().message() << "\n";
    return 1;
  }
  PrintItems(json, *devices, PrintExportedTable, out);
  return 0;
}

// --rdma-source: auto, verbs or sysfs; false when it names none.
bool ParseRdmaSource(const std::string& text, const std::string& sysfs_root, RdmaSource* source) {
  if (text == "auto") {
    *source = DefaultRdmaSource(sysfs_root);
  } else if (text == "verbs") {
    *source = RdmaSource::kVerbs;
  } else if (text == "sysfs") {
    *source = RdmaSource::kSysfs;
  } else {
    return false;
  }
  return true;
}

// The PCIe functions of `sysfs_root` and, with `nics`, its RDMA NICs.
struct Scanned {
  std::vector<PcieFunction> functions;
  std::vector<RdmaNic> nics;
};
absl::StatusOr<Scanned> Scan(const std::string& sysfs_root, const std::string& pci_ids, RdmaSource source,
                             bool nics) {
  absl::StatusOr<std::unique_ptr<PciNames>> names = PciNames::Open(pci_ids);
  if (!names.ok()) return names.status();
  Scanned scanned;
  absl::StatusOr<std::vector<PcieFunction>> fns = ScanPciFunctions(sysfs_root, names->get());
  if (!fns.ok()) return fns.status();
  scanned.functions = *std::move(fns);
  if (nics) {
    absl::StatusOr<std::vector<RdmaNic>> found = RdmaInventory(sysfs_root, source).Scan();
    if (!found.ok()) return found.status();
    scanned.nics = *std::move(found);
  }
  return scanned;
}

}  // namespace

int RunInventoryCommand(const std::vector<std::string>& args, std::ostream& out,
                        std::ostream& err) {
  std::string sysfs_root = "/sys";
  std::string pci_ids;
  std::string show = "functions";
  std::string policy_file;
  std::string node = HostName();  // unless $NODE_NAME: AddNodeFlag
  std::string rdma_source = "auto";
  bool json = false;
  FlagSet flags("rpci-agent inventory [flags]",
                "Scans the PCIe functions and RDMA NICs of this host from sysfs and prints them "
                "(--json: one JSON object per line), then exits.");
  flags.String("sysfs-root", &sysfs_root, "sysfs mount to read (a copy or test tree works too)");
  flags.String("pci-ids", &pci_ids, "pci.ids file for names (empty: libpci's default)");
  flags.Bool("json", &json, "print one JSON object per line instead of a table");
  flags.String("show", &show,
               "what to print: functions (PCIe functions), nics (RDMA NICs) or exported "
               "(devices --policy selects)");
  flags.String("policy", &policy_file, "export policy file (YAML/JSON with `rules:`)");
  AddNodeFlag(flags, &node, "node name for exported device ids (default $NODE_NAME, else hostname)");
  flags.String("rdma-source", &rdma_source,
               "where RDMA NICs come from: auto (rdma-core for /sys, else sysfs), verbs, sysfs");
  std::vector<std::string> positional;
  if (std::optional<int> exit_code = flags.ParseOrExit(args, out, err, &positional)) return *exit_code;
  if (!positional.empty()) {
    err << "rpci-agent inventory: unexpected argument \"" << positional[0] << "\"\n";
    return 2;
  }
  if (!policy_file.empty() && !flags.IsSet("show")) show = "exported";
  if (show != "functions" && show != "nics" && show != "exported") {
    err << "rpci-agent inventory: --show: \"" << show
        << "\" is not one of: functions, nics, exported\n";
    return 2;
  }
  if (show == "exported" && policy_file.empty()) {
    err << "rpci-agent inventory: --show=exported needs --policy\n";
    return 2;
  }
  RdmaSource source;
  if (!ParseRdmaSource(rdma_source, sysfs_root, &source)) {
    err << "rpci-agent inventory: --rdma-source: \"" << rdma_source
        << "\" is not one of: auto, verbs, sysfs\n";
    return 2;
  }

  absl::StatusOr<Scanned> scanned = Scan(sysfs_root, pci_ids, source, /*nics=*/show != "functions");
  if (!scanned.ok()) {
    err << "rpci-agent inventory: " << scanned.status().message() << "\n";
    return 1;
  }
  return PrintInventory(show, json, scanned->functions, scanned->nics, policy_file, node, out, err);
}

}  // namespace rpci::agent
