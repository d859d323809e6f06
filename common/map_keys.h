#ifndef RPCI_COMMON_MAP_KEYS_H_
#define RPCI_COMMON_MAP_KEYS_H_

// The keys of a map, in its order (sorted for std::map).

#include <vector>

namespace rpci {

template <typename Map>
std::vector<typename Map::key_type> KeysOf(const Map& m) {
  std::vector<typename Map::key_type> keys;
  keys.reserve(m.size());
  for (const auto& entry : m) keys.push_back(entry.first);
  return keys;
}

}  // namespace rpci

#endif  // RPCI_COMMON_MAP_KEYS_H_
