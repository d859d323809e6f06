#include "controller/placement.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace rpci::controller {
namespace {

const absl::Time kNow = absl::FromUnixSeconds(1'000'000);

// A healthy, available device of pool "emu" on device server `server`.
Device Dev(const std::string& id, const std::string& server = "dev-a") {
  Device d;
  d.exported.set_id(id);
  d.exported.set_pool("emu");
  d.exported.set_node(server);
  return d;
}

Device AssignedDev(const std::string& id, const std::string& node, absl::Time last_used = kNow) {
  Device d = Dev(id);
  d.assigned_node = node;
  d.assigned_changed = last_used;
  d.last_used = last_used;
  return d;
}

Move Assign(const std::string& id, const std::string& node, const std::string& reason) {
  return Move{Move::Kind::kAssign, id, node, reason};
}
Move Release(const std::string& id, const std::string& node, const std::string& reason) {
  return Move{Move::Kind::kRelease, id, node, reason};
}

struct Case {
  std::string name;
  PoolSpec pool;
  std::vector<Device> devices;
  std::vector<PlacementNode> nodes;
  std::vector<PodDemand> demand;
  std::vector<Move> want;
};

PoolSpec Pool(int64_t spares, int64_t max = 0, int64_t idle = 0, Locality locality = Locality::kNone) {
  PoolSpec p;
  p.name = "emu";
  p.spares_per_node = spares;
  p.max_per_node = max;
  p.idle_release_seconds = idle;
  p.locality = locality;
  return p;
}

PodDemand Pods(int64_t count, const std::string& hint = "", const std::string& pool = "emu") {
  return PodDemand{"ns", "pod", pool, count, hint};
}

Device WithZone(Device d, const std::string& zone) {
  (*d.exported.mutable_labels())["topology.kubernetes.io/zone"] = zone;
  return d;
}

Device Drained(Device d) {
  d.drain_requested = true;
  return d;
}

Device WithNic(Device d) {
  d.exported.add_local_nics();
  return d;
}

Device InUse(Device d) {
  d.attachment = "grant-" + d.id();
  return d;
}

Device OnDeadServer(Device d) {
  d.exported.set_node("dev-dead");
  return d;
}

std::vector<Case> Cases() {
  const absl::Time old = kNow - absl::Hours(1);
  const PlacementNode cn1{"cn-1", {{"topology.kubernetes.io/zone", "z2"}}};
  const PlacementNode cn2{"cn-2", {}};
  return {
      {"NothingWantedNothingMoves", Pool(0), {Dev("d1")}, {cn1}, {}, {}},
      {"SparesFillEachNode", Pool(1), {Dev("d1"), Dev("d2")}, {cn1, cn2}, {},
       {Assign("d1", "cn-1", "Spare"), Assign("d2", "cn-2", "Spare")}},
      {"SparesBeyondAvailableStopQuietly", Pool(2), {Dev("d1")}, {cn1}, {}, {Assign("d1", "cn-1", "Spare")}},
      // After a controller restart (fault suite scenario c): cn-1's spare is
      // in use, cn-2 has nothing, one device is left.
      {"ScarceDevicesGoFirstToTheNodeHoldingNone", Pool(1), {InUse(AssignedDev("d0", "cn-1")), Dev("d1")},
       {cn1, cn2}, {}, {Assign("d1", "cn-2", "Spare")}},
      {"SparesAreDealtOneANodeARound", Pool(2), {Dev("d1"), Dev("d2")}, {cn1, cn2}, {},
       {Assign("d1", "cn-1", "Spare"), Assign("d2", "cn-2", "Spare")}},
      {"MaxPerNodeCapsSpares", Pool(3, 1), {Dev("d1"), Dev("d2")}, {cn1}, {}, {Assign("d1", "cn-1", "Spare")}},
      {"BoundPodsGetDevicesOnTheirNode", Pool(0), {Dev("d1"), Dev("d2")}, {cn1, cn2}, {Pods(2, "cn-2")},
       {Assign("d1", "cn-2", "PendingPod"), Assign("d2", "cn-2", "PendingPod")}},
      {"OtherPoolsDemandIsIgnored", Pool(0), {Dev("d1")}, {cn1}, {Pods(1, "cn-1", "gpu")}, {}},
      {"UnboundPodsSpreadToTheEmptiestNode", Pool(0), {AssignedDev("d0", "cn-1"), Dev("d1")}, {cn1, cn2},
       {Pods(2)}, {Assign("d1", "cn-2", "PendingPod")}},
      {"UnboundPodsUseSurplusFirst", Pool(0), {AssignedDev("d0", "cn-1"), Dev("d1")}, {cn1}, {Pods(1)}, {}},
      {"DeadAgentsDevicesAreNotPlaced", Pool(1), {OnDeadServer(Dev("d1"))}, {cn1}, {}, {}},
      {"DrainedIdleDeviceLeaves", Pool(0), {Drained(AssignedDev("d1", "cn-1"))}, {cn1}, {},
       {Release("d1", "cn-1", "Drained")}},
      {"ZoneLocalityPrefersTheNodesZone", Pool(1, 0, 0, Locality::kZone),
       {WithZone(Dev("d1"), "z1"), WithZone(Dev("d2"), "z2")}, {cn1}, {}, {Assign("d2", "cn-1", "Spare")}},
      {"ZoneLocalityFallsBackToAnyDevice", Pool(1, 0, 0, Locality::kZone), {WithZone(Dev("d1"), "z1")}, {cn1}, {},
       {Assign("d1", "cn-1", "Spare")}},
      {"RdmaLocalityPrefersDevicesWithANic", Pool(1, 0, 0, Locality::kRdma), {Dev("d1"), WithNic(Dev("d2"))},
       {cn1}, {}, {Assign("d2", "cn-1", "Spare")}},
      {"IdleDevicesBeyondWantGoBackOldestFirst", Pool(1, 0, 600),
       {AssignedDev("d1", "cn-1", kNow - absl::Minutes(5)), AssignedDev("d2", "cn-1", old),
        AssignedDev("d3", "cn-1", kNow)},
       {cn1}, {}, {Release("d2", "cn-1", "IdleTimeout")}},
      {"IdleDevicesStayWhileUnboundPodsNeedThem", Pool(0, 0, 60), {AssignedDev("d1", "cn-1", old)}, {cn1},
       {Pods(1)}, {}},
      {"RecentlyUsedDevicesStay", Pool(0, 0, 60), {AssignedDev("d1", "cn-1", kNow - absl::Seconds(10))}, {cn1}, {},
       {}},
  };
}

TEST(PlacementTest, TableOfPools) {
  for (const Case& c : Cases()) {
    PlacementInput in{c.pool, {}, c.nodes, {"dev-a"}, c.demand, kNow};
    for (const Device& d : c.devices) in.devices.push_back(&d);
    std::vector<Move> got = PlacePool(in);
    EXPECT_EQ(got.size(), c.want.size()) << c.name;
    for (size_t i = 0; i < got.size() && i < c.want.size(); ++i) {
      EXPECT_EQ(got[i], c.want[i]) << c.name << " move " << i << ": got " << got[i].device_id << " -> "
                                   << got[i].node << " (" << got[i].reason << ")";
    }
  }
}

TEST(PlacementTest, PlacementIsAPureFunctionOfItsInput) {
  Device d1 = Dev("d1"), d2 = Dev("d2");
  PlacementInput in{Pool(1), {&d1, &d2}, {{"cn-1", {}}, {"cn-2", {}}}, {"dev-a"}, {Pods(1)}, kNow};
  std::vector<Move> first = PlacePool(in);
  EXPECT_EQ(PlacePool(in), first);
  EXPECT_TRUE(d1.assigned_node.empty()) << "placement changes no device";
}

}  // namespace
}  // namespace rpci::controller
