#ifndef RPCI_CONTROLLER_KUBE_INFORMER_H_
#define RPCI_CONTROLLER_KUBE_INFORMER_H_

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "controller/kube/client.h"
#include "common/log.h"

namespace rpci::kube {

// Keeps an up-to-date copy of one collection: list, then watch from the
// list's resourceVersion, advancing it on every event and BOOKMARK; a broken
// or ended stream is watched again from the last resourceVersion; a 410
// (request status or ERROR event) means relist. `on_change` gets the whole
// cache (keyed "namespace/name") after every list and event.
class Informer {
 public:
  using Cache = std::map<std::string, nlohmann::json>;
  Informer(KubeClient* client, std::string collection_path, std::function<void(const Cache&)> on_change,
           int watch_timeout_seconds = 300);
  ~Informer();

  void Start();
  void Stop();

  bool synced() const { return synced_; }
  int lists() const { return lists_; }
  std::string resource_version() const;
  Cache Snapshot() const;

 private:
  void Run();

  KubeClient* client_;
  const std::string path_;
  std::function<void(const Cache&)> on_change_;
  const int watch_timeout_seconds_;
  Logger log_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> synced_{false};
  std::atomic<int> lists_{0};
  mutable std::mutex mu_;
  Cache cache_;
  std::string rv_;
  std::thread thread_;
};

// The pure steps of Informer::Run, for tests and fuzzing. Objects are keyed
// "namespace/name"; a missing or non-string field counts as "".
//
// The cache a list response holds ("items"); sets `resource_version` to the
// list's metadata.resourceVersion ("" when absent).
Informer::Cache CacheFromList(const nlohmann::json& list, std::string* resource_version);

enum class WatchOutcome {
  kChanged,    // ADDED, MODIFIED or DELETED applied to the cache
  kUnchanged,  // BOOKMARK: only the resourceVersion moved
  kGone,       // ERROR with code 410: relist
  kError,      // any other ERROR: rewatch
};
// Applies one watch event to `cache` and `resource_version`.
WatchOutcome ApplyWatchEvent(const WatchEvent& event, Informer::Cache* cache, std::string* resource_version);

}  // namespace rpci::kube

#endif  // RPCI_CONTROLLER_KUBE_INFORMER_H_
