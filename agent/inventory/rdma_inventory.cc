#include "agent/inventory/rdma_inventory.h"

#include <arpa/inet.h>
#include <endian.h>
#include <infiniband/verbs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "agent/inventory/pci_address.h"
#include "agent/inventory/sysfs_util.h"

namespace rpci::agent {
namespace {

using rpci::v1::RdmaNic;
using rpci::v1::RdmaPort;

// Formats 16 bytes as sysfs prints a GID: eight groups of four hex digits.
std::string FormatGid(const uint8_t* raw) {
  std::string out;
  for (int i = 0; i < 16; i += 2) {
    if (i > 0) out += ':';
    absl::StrAppendFormat(&out, "%02x%02x", raw[i], raw[i + 1]);
  }
  return out;
}

bool IsZeroGid(const std::string& gid) {
  return std::all_of(gid.begin(), gid.end(), [](char c) { return c == '0' || c == ':'; });
}

// "4: ACTIVE" (sysfs), "PORT_ACTIVE" or "active" (ibv_port_state_str of
// rdma-core 44, seen on Soft-RoCE in //tests/vm:verbs_inventory_test) ->
// "ACTIVE".
std::string NormalizePortState(std::string state) {
  size_t colon = state.find(": ");
  if (colon != std::string::npos) state = state.substr(colon + 2);
  state = absl::AsciiStrToUpper(state);
  if (absl::StartsWith(state, "PORT_")) state = state.substr(5);
  return state;
}

// The entries of `dir` named by a number (ports/1, gids/0 ...), in numeric
// order, with their numbers; none when `dir` cannot be listed.
std::vector<std::pair<int64_t, std::string>> NumberedEntries(const std::string& dir) {
  absl::StatusOr<std::vector<std::string>> names = sysfs::ListDir(dir);
  std::vector<std::pair<int64_t, std::string>> numbered;
  for (const std::string& name : names.ok() ? *names : std::vector<std::string>()) {
    if (absl::StatusOr<int64_t> n = sysfs::ParseDecimal(name); n.ok()) numbered.emplace_back(*n, name);
  }
  std::sort(numbered.begin(), numbered.end());
  return numbered;
}

}  // namespace

RdmaSource DefaultRdmaSource(const std::string& sysfs_root) {
  return sysfs_root == "/sys" || sysfs_root == "/sys/" ? RdmaSource::kVerbs : RdmaSource::kSysfs;
}

RdmaInventory::RdmaInventory(std::string sysfs_root, RdmaSource source, Logger logger)
    : sysfs_root_(std::move(sysfs_root)), source_(source), logger_(std::move(logger)) {}

absl::StatusOr<std::vector<RdmaNic>> RdmaInventory::Scan() {
  absl::StatusOr<std::vector<RdmaNic>> nics =
      source_ == RdmaSource::kVerbs ? ScanVerbs() : ScanSysfs();
  if (!nics.ok()) return nics;
  for (RdmaNic& nic : *nics) {
    FillNetdevs(&nic);
    FillUverbsDevice(&nic);
    FillPciLocation(&nic);
  }
  std::sort(nics->begin(), nics->end(),
            [](const RdmaNic& a, const RdmaNic& b) { return a.name() < b.name(); });
  if (nics->empty() && !said_none_) {
    logger_.Info("no RDMA devices found; fabric locality will be empty",
                 {{"source", source_ == RdmaSource::kVerbs ? "verbs" : "sysfs"},
                  {"sysfs_root", sysfs_root_}});
    said_none_ = true;
  } else if (!nics->empty()) {
    said_none_ = false;
  }
  return nics;
}

absl::StatusOr<std::vector<RdmaNic>> RdmaInventory::ScanVerbs() {
  int count = 0;
  errno = 0;
  ibv_device** list = ibv_get_device_list(&count);
  if (list == nullptr) {
    // rdma-core reports "no RDMA subsystem" as ENOSYS; that is no devices.
    if (errno == ENOSYS || errno == ENOENT) return std::vector<RdmaNic>();
    return absl::UnavailableError(
        absl::StrCat("rdma-core: ibv_get_device_list: ", std::strerror(errno)));
  }
  std::vector<RdmaNic> nics;
  for (int i = 0; i < count; ++i) {
    RdmaNic nic;
    nic.set_name(ibv_get_device_name(list[i]));
    uint64_t guid = be64toh(ibv_get_device_guid(list[i]));
    nic.set_node_guid(absl::StrFormat("%04x:%04x:%04x:%04x", (guid >> 48) & 0xffff,
                                      (guid >> 32) & 0xffff, (guid >> 16) & 0xffff,
                                      guid & 0xffff));
    ibv_context* ctx = ibv_open_device(list[i]);
    if (ctx == nullptr) {
      logger_.Warn("rdma-core: cannot open device; ports unknown",
                   {{"nic", nic.name()}, {"error", std::strerror(errno)}});
      nics.push_back(std::move(nic));
      continue;
    }
    ibv_device_attr attr;
    if (ibv_query_device(ctx, &attr) == 0) {
      for (uint8_t p = 1; p <= attr.phys_port_cnt; ++p) {
        ibv_port_attr port_attr;
        if (ibv_query_port(ctx, p, &port_attr) != 0) continue;
        RdmaPort* port = nic.add_ports();
        port->set_port(p);
        port->set_state(NormalizePortState(ibv_port_state_str(port_attr.state)));
        port->set_link_layer(port_attr.link_layer == IBV_LINK_LAYER_ETHERNET ? "Ethernet"
                                                                              : "InfiniBand");
        for (int g = 0; g < port_attr.gid_tbl_len; ++g) {
          ibv_gid gid;
          if (ibv_query_gid(ctx, p, g, &gid) != 0) continue;
          std::string text = FormatGid(gid.raw);
          if (!IsZeroGid(text)) port->add_gids(text);
        }
      }
    }
    ibv_close_device(ctx);
    nics.push_back(std::move(nic));
  }
  ibv_free_device_list(list);
  return nics;
}

absl::StatusOr<std::vector<RdmaNic>> RdmaInventory::ScanSysfs() {
  std::string dir = absl::StrCat(sysfs_root_, "/class/infiniband");
  absl::StatusOr<std::vector<std::string>> names = sysfs::ListDir(dir);
  if (absl::IsNotFound(names.status())) return std::vector<RdmaNic>();
  if (!names.ok()) return absl::UnavailableError(absl::StrCat("RDMA inventory: ", names.status().message()));
  std::vector<RdmaNic> nics;
  for (const std::string& name : *names) {
    RdmaNic nic;
    nic.set_name(name);
    std::string base = absl::StrCat(dir, "/", name);
    if (absl::StatusOr<std::string> guid = sysfs::ReadAttr(base + "/node_guid"); guid.ok()) {
      nic.set_node_guid(*guid);
    }
    for (const auto& [n, p] : NumberedEntries(base + "/ports")) {
      std::string pdir = absl::StrCat(base, "/ports/", p);
      RdmaPort* port = nic.add_ports();
      port->set_port(static_cast<uint32_t>(n));
      if (absl::StatusOr<std::string> s = sysfs::ReadAttr(pdir + "/state"); s.ok()) {
        port->set_state(NormalizePortState(*s));
      }
      if (absl::StatusOr<std::string> ll = sysfs::ReadAttr(pdir + "/link_layer"); ll.ok()) {
        port->set_link_layer(*ll);
      }
      for (const auto& [i, g] : NumberedEntries(pdir + "/gids")) {
        absl::StatusOr<std::string> gid = sysfs::ReadAttr(absl::StrCat(pdir, "/gids/", g));
        if (gid.ok() && !IsZeroGid(*gid)) port->add_gids(*gid);
      }
    }
    nics.push_back(std::move(nic));
  }
  return nics;
}

void RdmaInventory::FillNetdevs(RdmaNic* nic) {
  const std::string base = absl::StrCat(sysfs_root_, "/class/infiniband/", nic->name());
  // rxe and siw name their netdev in `parent`.
  absl::StatusOr<std::string> parent = sysfs::ReadAttr(base + "/parent");
  for (RdmaPort& port : *nic->mutable_ports()) {
    if (parent.ok()) port.set_netdev(*parent);
    // Else each set GID entry names its netdev (RoCE); unset ones read as
    // EINVAL. The first entries are the port's default GIDs.
    const std::string ndevs = absl::StrCat(base, "/ports/", port.port(), "/gid_attrs/ndevs/");
    for (int i = 0; i < 16 && port.netdev().empty(); ++i) {  // no parent
      absl::StatusOr<std::string> name = sysfs::ReadAttr(absl::StrCat(ndevs, i));
      if (name.ok()) port.set_netdev(*name);
    }
    // As `rdma link` does: a netdev of another network namespace (shared
    // RDMA devices are visible from every namespace) is not named.
    if (!port.netdev().empty() && !sysfs::Exists(absl::StrCat(sysfs_root_, "/class/net/", port.netdev()))) {
      port.clear_netdev();
    }
  }
}

void RdmaInventory::FillUverbsDevice(RdmaNic* nic) {
  const std::string dir = absl::StrCat(sysfs_root_, "/class/infiniband_verbs");
  absl::StatusOr<std::vector<std::string>> entries = sysfs::ListDir(dir);
  for (const std::string& e : entries.ok() ? *entries : std::vector<std::string>()) {
    if (!absl::StartsWith(e, "uverbs")) continue;
    absl::StatusOr<std::string> ibdev = sysfs::ReadAttr(absl::StrCat(dir, "/", e, "/ibdev"));
    if (ibdev.ok() && *ibdev == nic->name()) {
      nic->set_uverbs_device(absl::StrCat("/dev/infiniband/", e));
      return;
    }
  }
}

void RdmaInventory::FillPciLocation(RdmaNic* nic) {
  nic->set_numa_node(-1);
  std::string dev = absl::StrCat(sysfs_root_, "/class/infiniband/", nic->name(), "/device");
  sysfs::Link link = sysfs::ReadLink(dev);
  absl::StatusOr<PciAddress> addr = PciAddress::Parse(link.target_name);
  std::string source = "device";
  if (link.state == sysfs::LinkState::kAbsent || !addr.ok()) {
    // Software devices (rxe, siw) have no PCI function of their own; they
    // sit where their netdev does, when that is a PCI NIC (not veth or lo).
    std::string netdev;
    for (const RdmaPort& p : nic->ports()) {
      if (!p.netdev().empty()) netdev = p.netdev();
    }
    if (netdev.empty()) return;
    dev = absl::StrCat(sysfs_root_, "/class/net/", netdev, "/device");
    link = sysfs::ReadLink(dev);
    addr = PciAddress::Parse(link.target_name);
    source = "netdev";
    if (link.state == sysfs::LinkState::kAbsent || !addr.ok()) {
      logger_.Debug("RDMA device has no PCI location", {{"nic", nic->name()}, {"netdev", netdev}});
      return;
    }
  }
  nic->set_bdf(addr->ToString());
  nic->set_location_source(source);
  absl::StatusOr<std::string> numa = sysfs::ReadAttr(dev + "/numa_node");
  if (!numa.ok()) return;
  absl::StatusOr<int64_t> node = sysfs::ParseDecimal(*numa);
  if (node.ok() && *node >= 0 && *node <= 65535) nic->set_numa_node(static_cast<int32_t>(*node));
}

}  // namespace rpci::agent
