#include "bench/fabric_pair.h"

#include <utility>

namespace rpci::bench {

absl::StatusOr<FabricPair> OpenFabricPair(const fabric::FabricConfig& config) {
  FabricPair p;
  auto fa = fabric::Fabric::Open(config);
  if (!fa.ok()) return fa.status();
  p.fabric_a = *std::move(fa);
  auto fb = fabric::Fabric::Open(config);
  if (!fb.ok()) return fb.status();
  p.fabric_b = *std::move(fb);
  auto a = p.fabric_a->OpenEndpoint();
  if (!a.ok()) return a.status();
  p.a = *std::move(a);
  auto b = p.fabric_b->OpenEndpoint();
  if (!b.ok()) return b.status();
  p.b = *std::move(b);
  auto to_b = p.a->InsertPeer(p.b->address());
  if (!to_b.ok()) return to_b.status();
  p.a_to_b = *to_b;
  auto to_a = p.b->InsertPeer(p.a->address());
  if (!to_a.ok()) return to_a.status();
  p.b_to_a = *to_a;
  return p;
}

}  // namespace rpci::bench
