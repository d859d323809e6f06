#ifndef RPCI_CONTROLLER_PLACEMENT_H_
#define RPCI_CONTROLLER_PLACEMENT_H_

#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "controller/model.h"

namespace rpci::controller {

// A compute node as placement sees it: registered, serving the pool.
struct PlacementNode {
  std::string name;
  std::map<std::string, std::string> labels;  // its Kubernetes Node labels
};

// Everything one placement pass over one pool looks at.
struct PlacementInput {
  PoolSpec pool;                        // its name filled in
  std::vector<const Device*> devices;   // the pool's devices, in id order
  std::vector<PlacementNode> nodes;     // live compute nodes serving the pool, by name
  std::set<std::string> live_agents;    // device servers whose agent lease holds
  std::vector<PodDemand> demand;        // pending pods (other pools' are ignored)
  absl::Time now;
};

// One change placement asks for; PoolManager applies moves in order.
struct Move {
  enum class Kind {
    kAssign,   // give the available device to `node`
    kRelease,  // take the assigned device back from its node (with grace)
  };
  Kind kind;
  std::string device_id;
  std::string node;    // kAssign: the node it goes to; kRelease: the node it leaves
  std::string reason;  // "Spare", "PendingPod", "Drained", "IdleTimeout"

  bool operator==(const Move& o) const {
    return kind == o.kind && device_id == o.device_id && node == o.node && reason == o.reason;
  }
};

// The pool's assignment policy as a pure function: releases drained devices,
// keeps spares_per_node free devices on each node, meets pods bound to a
// node there, places unbound pods' devices on the node with the fewest
// (spread), respects max_per_node and locality, and releases devices idle
// for idle_release_seconds beyond what nodes and pods want.
std::vector<Move> PlacePool(const PlacementInput& input);

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_PLACEMENT_H_
