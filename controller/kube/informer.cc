#include "controller/kube/informer.h"

#include <chrono>

namespace rpci::kube {
namespace {

using nlohmann::json;

const json& MemberOf(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

std::string StringOf(const json& value) { return value.is_string() ? value.get<std::string>() : ""; }

std::string KeyOf(const json& object) {
  const json& meta = MemberOf(object, "metadata");
  return StringOf(MemberOf(meta, "namespace")) + "/" + StringOf(MemberOf(meta, "name"));
}

std::string RvOf(const json& object) { return StringOf(MemberOf(MemberOf(object, "metadata"), "resourceVersion")); }

}  // namespace

Informer::Cache CacheFromList(const json& list, std::string* resource_version) {
  Informer::Cache cache;
  const json& items = MemberOf(list, "items");
  if (items.is_array()) {
    for (const json& item : items) cache[KeyOf(item)] = item;
  }
  *resource_version = RvOf(list);
  return cache;
}

WatchOutcome ApplyWatchEvent(const WatchEvent& event, Informer::Cache* cache, std::string* resource_version) {
  if (event.type == "ERROR") {
    const json& code = MemberOf(event.object, "code");
    return code.is_number_integer() && code.get<int64_t>() == 410 ? WatchOutcome::kGone : WatchOutcome::kError;
  }
  const std::string rv = RvOf(event.object);
  if (!rv.empty()) *resource_version = rv;
  if (event.type == "BOOKMARK") return WatchOutcome::kUnchanged;
  if (event.type == "DELETED") {
    cache->erase(KeyOf(event.object));
  } else {
    (*cache)[KeyOf(event.object)] = event.object;
  }
  return WatchOutcome::kChanged;
}

Informer::Informer(KubeClient* client, std::string collection_path, std::function<void(const Cache&)> on_change,
                   int watch_timeout_seconds)
    : client_(client),
      path_(std::move(collection_path)),
      on_change_(std::move(on_change)),
      watch_timeout_seconds_(watch_timeout_seconds),
      log_(Logger("controller").With("informer", path_)) {}

Informer::~Informer() { Stop(); }

void Informer::Start() { thread_ = std::thread([this] { Run(); }); }

void Informer::Stop() {
  stop_ = true;
  client_->CancelWatches(this);
  if (thread_.joinable()) thread_.join();
}

std::string Informer::resource_version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rv_;
}

Informer::Cache Informer::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cache_;
}

void Informer::Run() {
  bool need_list = true;
  auto pause = [this](int ms) {
    for (int i = 0; i < ms / 50 && !stop_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  };
  while (!stop_) {
    if (need_list) {
      absl::StatusOr<json> list = client_->Get(path_);
      if (!list.ok()) {
        log_.Warn("list failed; retrying", {{"error", list.status().ToString()}});
        pause(1000);
        continue;
      }
      std::string rv;
      Cache fresh = CacheFromList(*list, &rv);
      Cache copy;
      {
        std::lock_guard<std::mutex> lock(mu_);
        cache_ = std::move(fresh);
        rv_ = rv;
        copy = cache_;
      }
      ++lists_;
      synced_ = true;
      need_list = false;
      on_change_(copy);
    }
    bool gone = false;
    absl::Status s = client_->Watch(path_, resource_version(), watch_timeout_seconds_, [&](const WatchEvent& e) {
      if (stop_) return false;
      Cache copy;
      WatchOutcome outcome;
      {
        std::lock_guard<std::mutex> lock(mu_);
        outcome = ApplyWatchEvent(e, &cache_, &rv_);
        if (outcome == WatchOutcome::kChanged) copy = cache_;
      }
      if (outcome == WatchOutcome::kGone) {
        gone = true;
        return false;
      }
      if (outcome == WatchOutcome::kError) {
        log_.Warn("watch error event", {{"object", e.object}});
        return false;
      }
      if (outcome == WatchOutcome::kUnchanged) return true;
      on_change_(copy);
      return true;
    }, this, [this] { return stop_.load(); });
    if (stop_) break;
    if (gone || HttpStatusOf(s) == 410) {
      log_.Info("resourceVersion expired; relisting", {{"resourceVersion", resource_version()}});
      need_list = true;
      continue;
    }
    if (!s.ok()) {
      log_.Warn("watch broke; rewatching", {{"error", s.ToString()}});
      pause(200);
    }
  }
}

}  // namespace rpci::kube
