#include "controller/placement.h"

#include <algorithm>
#include <cstdint>

namespace rpci::controller {
namespace {

constexpr char kZoneLabel[] = "topology.kubernetes.io/zone";

// A device assigned to a node and free there; last_used as this pass sees it
// (now for devices the pass assigns).
struct FreeDevice {
  const Device* device;
  absl::Time last_used;
};

// One pass over one pool: the state PlacePool builds and the moves it makes.
class Placer {
 public:
  explicit Placer(const PlacementInput& in) : in_(in), pool_(in.pool) {}

  std::vector<Move> Run() {
    Classify();
    Want();
    FillNodes();
    SpreadUnbound();
    ReleaseIdle();
    return std::move(moves_);
  }

 private:
  void Classify() {
    for (const PlacementNode& n : in_.nodes) nodes_[n.name] = &n;
    for (const Device* d : in_.devices) {
      if (!d->assigned_node.empty() && d->drain_requested && d->attachment.empty()) {
        // Drained: nothing uses it any more, so it leaves the node now.
        moves_.push_back(Move{Move::Kind::kRelease, d->id(), d->assigned_node, "Drained"});
        continue;
      }
      if (!d->assigned_node.empty()) {
        ++assigned_[d->assigned_node];
        if (d->healthy && !d->draining && !d->drain_requested && d->attachment.empty()) {
          free_[d->assigned_node].push_back({d, d->last_used});
        }
        continue;
      }
      if (d->PhaseAt(in_.now) == DevicePhase::kAvailable && pool_.Selects(d->exported) &&
          in_.live_agents.count(d->exported.node())) {
        available_.push_back(d);
      }
    }
  }

  void Want() {
    for (const PlacementNode& n : in_.nodes) want_[n.name] = pool_.spares_per_node;
    for (const PodDemand& pd : in_.demand) {
      if (pd.pool != pool_.name) continue;
      if (!pd.node_hint.empty() && want_.count(pd.node_hint)) {
        want_[pd.node_hint] += pd.count;
      } else {
        unhinted_ += pd.count;
      }
    }
  }

  // Spares and pods bound to a node: fill each node up to what it wants, one
  // device per node and round, nodes holding the fewest devices of the pool
  // first: when devices are scarce a node with none gets one before a node
  // whose devices are all in use gets another.
  void FillNodes() {
    std::vector<const PlacementNode*> order;
    for (const PlacementNode& n : in_.nodes) order.push_back(&n);
    for (bool progress = true; progress;) {
      progress = false;
      std::stable_sort(order.begin(), order.end(), [&](const PlacementNode* a, const PlacementNode* b) {
        return assigned_[a->name] < assigned_[b->name];
      });
      for (const PlacementNode* n : order) {
        if (FreeOn(n->name) >= want_[n->name] || !CanAssign(n->name)) continue;
        if (!AssignTo(n->name, FreeOn(n->name) < pool_.spares_per_node ? "Spare" : "PendingPod")) return;
        progress = true;
      }
    }
  }

  // Pods with no node yet: devices free beyond what nodes want serve them;
  // place the rest on the node with the fewest devices of the pool (spread).
  void SpreadUnbound() {
    for (const PlacementNode& n : in_.nodes) surplus_ += std::max<int64_t>(0, FreeOn(n.name) - want_[n.name]);
    for (int64_t need = unhinted_ - surplus_; need > 0; --need) {
      const std::string* best = nullptr;
      for (const PlacementNode& n : in_.nodes) {
        if (!CanAssign(n.name)) continue;
        if (best == nullptr || assigned_[n.name] < assigned_[*best]) best = &n.name;
      }
      if (best == nullptr || !AssignTo(*best, "PendingPod")) break;
      ++surplus_;
    }
  }

  // Idle release: unused devices beyond what nodes and pods want go back.
  void ReleaseIdle() {
    if (pool_.idle_release_seconds <= 0) return;
    const absl::Duration idle = absl::Seconds(pool_.idle_release_seconds);
    for (auto& [node, list] : free_) {
      auto w = want_.find(node);
      int64_t extra = static_cast<int64_t>(list.size()) - (w == want_.end() ? 0 : w->second);
      std::stable_sort(list.begin(), list.end(),
                       [](const FreeDevice& a, const FreeDevice& b) { return a.last_used < b.last_used; });
      for (const FreeDevice& f : list) {
        if (extra <= 0 || surplus_ <= unhinted_) break;
        if (f.last_used + idle > in_.now) break;
        moves_.push_back(Move{Move::Kind::kRelease, f.device->id(), node, "IdleTimeout"});
        --extra;
        --surplus_;
      }
    }
  }

  int64_t FreeOn(const std::string& node) { return static_cast<int64_t>(free_[node].size()); }

  bool CanAssign(const std::string& node) {
    return pool_.max_per_node == 0 || assigned_[node] < pool_.max_per_node;
  }

  bool AssignTo(const std::string& node, const char* reason) {
    const Device* d = Pick(node);
    if (d == nullptr) return false;
    moves_.push_back(Move{Move::Kind::kAssign, d->id(), node, reason});
    ++assigned_[node];
    free_[node].push_back({d, in_.now});
    return true;
  }

  bool Near(const Device& d, const PlacementNode& node) const {
    switch (pool_.locality) {
      case Locality::kNone: return false;
      case Locality::kRdma: return d.exported.local_nics_size() > 0;
      case Locality::kZone: {
        auto zone = node.labels.find(kZoneLabel);
        if (zone == node.labels.end()) return false;
        auto dz = d.exported.labels().find(kZoneLabel);
        return dz != d.exported.labels().end() && dz->second == zone->second;
      }
    }
    return false;
  }

  // The first available device near `node`, else the first available one.
  const Device* Pick(const std::string& node) {
    while (next_available_ < available_.size() && available_[next_available_] == nullptr) ++next_available_;
    if (next_available_ >= available_.size()) return nullptr;
    size_t chosen = next_available_;
    if (pool_.locality != Locality::kNone) {
      for (size_t i = next_available_; i < available_.size(); ++i) {
        if (available_[i] != nullptr && Near(*available_[i], *nodes_.at(node))) {
          chosen = i;
          break;
        }
      }
    }
    const Device* d = available_[chosen];
    available_[chosen] = nullptr;
    return d;
  }

  const PlacementInput& in_;
  const PoolSpec& pool_;
  std::map<std::string, const PlacementNode*> nodes_;
  std::map<std::string, int64_t> assigned_, want_;
  std::map<std::string, std::vector<FreeDevice>> free_;  // assigned, healthy, unattached
  std::vector<const Device*> available_;                 // nullptr once picked
  size_t next_available_ = 0;
  int64_t unhinted_ = 0;
  int64_t surplus_ = 0;
  std::vector<Move> moves_;
};

}  // namespace

std::vector<Move> PlacePool(const PlacementInput& input) { return Placer(input).Run(); }

}  // namespace rpci::controller
