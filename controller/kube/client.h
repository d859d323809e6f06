#ifndef RPCI_CONTROLLER_KUBE_CLIENT_H_
#define RPCI_CONTROLLER_KUBE_CLIENT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace httplib {
class ClientImpl;
}

namespace rpci::kube {

// How to reach and authenticate to an API server.
struct KubeConfig {
  std::string server;  // "https://10.0.0.1:443"
  std::string ca_pem;  // cluster CA; empty: system roots
  std::string token;   // bearer token
  std::string token_file;  // re-read on every request when set (rotating SA tokens)
  std::string client_cert_pem;
  std::string client_key_pem;
  bool insecure_skip_tls_verify = false;
  std::string ns = "default";  // the pod's own namespace in cluster
};

// The in-cluster config: $KUBERNETES_SERVICE_HOST/_PORT and the service
// account's token, ca.crt and namespace under `sa_dir`.
absl::StatusOr<KubeConfig> InClusterConfig(
    const std::string& sa_dir = "/var/run/secrets/kubernetes.io/serviceaccount");

// A kubeconfig file's `context` (empty: current-context). Supports
// certificate-authority(-data), client-certificate(-data), client-key(-data),
// token, tokenFile, insecure-skip-tls-verify; relative paths are relative to
// the file. INVALID_ARGUMENT naming the file and the missing piece.
absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context = "");

// The HTTP status an error came from (0 when it did not come from a response).
int HttpStatusOf(const absl::Status& status);

// One watch event: ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
struct WatchEvent {
  std::string type;
  nlohmann::json object;
};

// One line of a watch stream ({"type": "...", "object": {...}}); nullopt for a
// line that is not an event (empty, not JSON, not an object, no string type).
std::optional<WatchEvent> ParseWatchEvent(const std::string& line);

// A small Kubernetes REST client (cpp-httplib + nlohmann/json). Errors carry
// the API's Status message and map HTTP codes onto absl codes (404 NOT_FOUND,
// 409 ABORTED or ALREADY_EXISTS, 410 OUT_OF_RANGE, 401/403 UNAUTHENTICATED /
// PERMISSION_DENIED, 5xx and transport UNAVAILABLE); HttpStatusOf() gives the
// code. Thread-safe: each request uses its own connection.
class KubeClient {
 public:
  static absl::StatusOr<std::unique_ptr<KubeClient>> Create(KubeConfig config);
  ~KubeClient();

  absl::StatusOr<nlohmann::json> Get(const std::string& path);
  absl::StatusOr<nlohmann::json> Create(const std::string& collection_path, const nlohmann::json& object);
  // PUT; the object's metadata.resourceVersion makes it conditional.
  absl::StatusOr<nlohmann::json> Update(const std::string& path, const nlohmann::json& object);
  absl::Status Delete(const std::string& path);  // NOT_FOUND is an error here

  // Reads the object, lets `mutate` change it, writes it (to `path` +
  // "/status" when `status`), and on 409 Conflict reads again and retries,
  // up to `attempts` times. `mutate` returning false means "nothing to do".
  absl::StatusOr<nlohmann::json> ReadModifyWrite(const std::string& path, bool status,
                                                 const std::function<bool(nlohmann::json&)>& mutate,
                                                 int attempts = 5);

  // Watches `collection_path` from `resource_version`, calling `on_event` for
  // each event until the server ends the stream (OK), the connection breaks
  // (UNAVAILABLE), `on_event` returns false (OK) or Cancel() is called
  // (CANCELLED). A 410 answer to the request itself is OUT_OF_RANGE; a 410
  // ERROR event is passed to on_event like any other.
  // `owner` tags the watch for CancelWatches(owner); `stopped`, checked once
  // the watch is registered, closes the race with a concurrent cancel.
  absl::Status Watch(const std::string& collection_path, const std::string& resource_version,
                     int timeout_seconds, const std::function<bool(const WatchEvent&)>& on_event,
                     const void* owner = nullptr, const std::function<bool()>& stopped = nullptr);
  // Breaks the watches in progress that `owner` started.
  void CancelWatches(const void* owner);
  // Breaks every Watch in progress and makes new ones return CANCELLED.
  void Cancel();

  // Posts a core/v1 Event about `object` (kind, name, namespace and uid are
  // taken from it; cluster-scoped objects' events go to "default").
  absl::Status PostEvent(const nlohmann::json& object, const std::string& type, const std::string& reason,
                         const std::string& message, const std::string& component);

  const KubeConfig& config() const { return config_; }

 private:
  explicit KubeClient(KubeConfig config);
  std::unique_ptr<httplib::ClientImpl> NewConnection() const;
  absl::StatusOr<nlohmann::json> Send(const std::string& method, const std::string& path, const nlohmann::json* body);
  std::string Token() const;

  KubeConfig config_;
  std::string scheme_;
  std::string host_;
  int port_ = 0;
  std::atomic<bool> cancelled_{false};
  std::mutex watches_mu_;
  std::vector<std::pair<const void*, httplib::ClientImpl*>> watches_;
};

}  // namespace rpci::kube

#endif  // RPCI_CONTROLLER_KUBE_CLIENT_H_
