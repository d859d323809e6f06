#ifndef RPCI_BENCH_FABRIC_PAIR_H_
#define RPCI_BENCH_FABRIC_PAIR_H_

#include <memory>

#include "absl/status/statusor.h"
#include "common/fabric/fabric.h"

namespace rpci::bench {

// Two endpoints on separate fabrics opened with one config (as the agent and
// a client are), each knowing the other as a peer. Endpoints are destroyed
// before their fabrics (member order).
struct FabricPair {
  std::unique_ptr<fabric::Fabric> fabric_a, fabric_b;
  std::unique_ptr<fabric::Endpoint> a, b;
  fabric::PeerId a_to_b{}, b_to_a{};
};

absl::StatusOr<FabricPair> OpenFabricPair(const fabric::FabricConfig& config);

}  // namespace rpci::bench

#endif  // RPCI_BENCH_FABRIC_PAIR_H_
