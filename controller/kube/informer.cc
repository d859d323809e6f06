#include "controller/kube/informer.h"

#include <chrono>

namespace rpci::kube {
namespace {

using nlohmann::json;

std::string KeyOf(const json& object) {
  const json meta = object.value("metadata", json::object());
  return meta.value("namespace", "") + "/" + meta.value("name", "");
}

std::string RvOf(const json& object) {
  return object.value("metadata", json::object()).value("resourceVersion", "");
}

}  // namespace

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
      Cache fresh;
      for (const json& item : list->value("items", json::array())) fresh[KeyOf(item)] = item;
      Cache copy;
      {
        std::lock_guard<std::mutex> lock(mu_);
        cache_ = std::move(fresh);
        rv_ = list->value("metadata", json::object()).value("resourceVersion", "");
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
      if (e.type == "ERROR") {
        if (e.object.value("code", 0) == 410) gone = true;
        else log_.Warn("watch error event", {{"object", e.object}});
        return false;
      }
      Cache copy;
      {
        std::lock_guard<std::mutex> lock(mu_);
        const std::string rv = RvOf(e.object);
        if (!rv.empty()) rv_ = rv;
        if (e.type == "BOOKMARK") return true;
        if (e.type == "DELETED") {
          cache_.erase(KeyOf(e.object));
        } else {
          cache_[KeyOf(e.object)] = e.object;
        }
        copy = cache_;
      }
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
