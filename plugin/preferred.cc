#include "plugin/preferred.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "absl/strings/match.h"

namespace rpci::plugin {

int LocalityRank(const rpci::v1::Assignment& a) {
  const std::string& p = a.agent_fabric_provider();
  if (absl::StartsWith(p, "shm")) return 0;
  if (absl::StartsWith(p, "verbs")) return a.device().local_nics().empty() ? 2 : 1;
  if (absl::StartsWith(p, "tcp")) return 3;
  return 4;
}

std::vector<std::string> PreferDevices(const std::vector<Candidate>& available,
                                       const std::vector<std::string>& must_include, int size) {
  std::vector<std::string> chosen;
  std::set<std::string> taken;
  std::set<std::string> servers;
  std::map<std::string, const Candidate*> by_id;
  for (const Candidate& c : available) by_id[c.id] = &c;
  for (const std::string& id : must_include) {
    if (!taken.insert(id).second) continue;
    chosen.push_back(id);
    if (auto it = by_id.find(id); it != by_id.end()) servers.insert(it->second->device_server);
  }
  std::map<std::string, std::vector<const Candidate*>> groups;
  for (const Candidate& c : available) {
    if (!taken.count(c.id)) groups[c.device_server].push_back(&c);
  }
  for (auto& [server, group] : groups) {
    std::sort(group.begin(), group.end(), [](const Candidate* a, const Candidate* b) {
      return std::tie(a->locality, a->id) < std::tie(b->locality, b->id);
    });
  }
  while (static_cast<int>(chosen.size()) < size && !groups.empty()) {
    const int need = size - static_cast<int>(chosen.size());
    auto key = [&](const std::pair<const std::string, std::vector<const Candidate*>>& g) {
      const int fits = static_cast<int>(g.second.size()) >= need ? 0 : 1;
      return std::make_tuple(servers.count(g.first) ? 0 : 1, g.second.front()->locality, fits,
                             -static_cast<int>(g.second.size()), g.first);
    };
    auto best = std::min_element(groups.begin(), groups.end(),
                                 [&](const auto& a, const auto& b) { return key(a) < key(b); });
    const int take = std::min(need, static_cast<int>(best->second.size()));
    for (int i = 0; i < take; ++i) chosen.push_back(best->second[i]->id);
    servers.insert(best->first);
    groups.erase(best);
  }
  if (static_cast<int>(chosen.size()) > size && size >= 0) chosen.resize(std::max(size, 0));
  return chosen;
}

}  // namespace rpci::plugin
