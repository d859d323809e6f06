#ifndef RPCI_TESTS_KUBE_API_SERVER_H_
#define RPCI_TESTS_KUBE_API_SERVER_H_

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace httplib {
class Server;
struct Response;
}

namespace rpci::kubetest {

// An in-process Kubernetes API server for tests: real HTTP + JSON on
// loopback, objects in memory. It does what rpci's clients use:
//   GET/POST/PUT/DELETE on /api/v1/... and /apis/<group>/<version>/...,
//   namespaced and cluster-scoped, the /status subresource (the main
//   resource ignores status, /status ignores everything else, except for
//   leases and events which have none), resourceVersion on every write,
//   409 AlreadyExists / Conflict, 404 NotFound as Status objects, list with
//   metadata.resourceVersion, and watch (?watch=true) as a chunked stream of
//   JSON lines with ADDED / MODIFIED / DELETED / BOOKMARK events; a watch from
//   a compacted resourceVersion gets an ERROR event holding a 410 Expired
//   Status, as the real server sends. Optional bearer-token check and TLS.
// Like kube-apiserver it refuses to create an object in a namespace that
// does not exist (404 `namespaces "x" not found`, details {name, kind}); the
// namespaces default, kube-system, kube-public and kube-node-lease exist from
// the start. A CustomResourceDefinition created through the API (or
// InstallCrd) is served as kube-apiserver would: objects are validated
// against its openAPIV3Schema and x-kubernetes-validations rules
// (tests/schema; 422 Invalid naming every violation), and /status exists
// exactly when the CRD declares the status subresource.
// Not a real API server: no selectors, patch, pruning, defaulting or
// admission.
class ApiServer {
 public:
  ApiServer();
  ~ApiServer();
  ApiServer(const ApiServer&) = delete;
  ApiServer& operator=(const ApiServer&) = delete;

  // Serves plain HTTP (or HTTPS with the given PEM cert and key) on
  // 127.0.0.1 and a free port.
  absl::Status Start();
  absl::Status StartTls(const std::string& cert_pem, const std::string& key_pem);
  void Stop();
  std::string url() const;

  // When set, requests must carry "Authorization: Bearer <token>" (401 otherwise).
  void RequireToken(const std::string& token);

  // ---- controls for tests ----
  // Forgets event history: watches from any older resourceVersion get 410.
  void Compact();
  // Every open watch that asked for bookmarks gets a BOOKMARK now.
  void SendBookmarks();
  // Breaks every open watch connection (no clean end of stream).
  void DropWatches();
  // The next `count` PUTs (any path containing `path_part`) fail with 409
  // Conflict as if someone else wrote first.
  void InjectConflicts(const std::string& path_part, int count);
  // Every request whose path contains `path_part` gets 403 Forbidden, as
  // RBAC would answer (empty: none).
  void Forbid(const std::string& path_part);

  // TokenReview (POST /apis/authentication.k8s.io/v1/tokenreviews), answered
  // as kube-apiserver does (201, spec echoed): a token added here for an
  // audience in spec.audiences is authenticated as the ServiceAccount, with
  // the pod it is bound to in user.extra; any other token (forged, removed
  // as if expired, another audience) is authenticated: false with an error.
  struct ServiceAccountToken {
    std::string ns;
    std::string service_account;
    std::string pod_name, pod_uid;  // empty: a legacy token bound to no pod
    std::string node_name;          // empty: as API servers before 1.30 (no node claims)
    std::vector<std::string> audiences = {"rpci"};
  };
  void AddToken(const std::string& token, ServiceAccountToken who);
  void RemoveToken(const std::string& token);
  int token_reviews() const;
  // Serves the CRD's resource as described above (what POSTing it to
  // /apis/apiextensions.k8s.io/v1/customresourcedefinitions also does).
  void InstallCrd(const nlohmann::json& crd);
  // InstallCrd for every CustomResourceDefinition in the YAML files of `dir`
  // (deploy/crds: the tests' runfiles need //deploy:crds).
  absl::Status InstallCrdsFrom(const std::string& dir);
  // The resource.k8s.io versions served (tests/kube/resource_group.h), in
  // preference order: {"v1", "v1beta1"} by default, as Kubernetes 1.34
  // (which also serves v1beta2, not here); {"v1beta1"} as 1.32; {} as a
  // cluster without DRA. Discovery (/apis, /apis/resource.k8s.io,
  // /apis/resource.k8s.io/<version>) answers accordingly, an unserved
  // version is 404 like an unknown path.
  void ServeResourceVersions(std::vector<std::string> versions);

  // Creates Namespace `name` (as `kubectl create namespace` would).
  void CreateNamespace(const std::string& name);

  // Direct access to stored objects by API path ("/api/v1/nodes/n1").
  // Put creates or replaces (status included) and emits the watch event.
  absl::StatusOr<nlohmann::json> Get(const std::string& path) const;
  nlohmann::json Put(const std::string& path, nlohmann::json object);
  void Delete(const std::string& path);

  int watch_requests() const;
  int conflicts_returned() const;
  int open_watches() const;

 private:
  struct Key;
  struct Event {
    uint64_t rv;
    std::string type;
    std::string collection;  // "<prefix>/<resource>"
    std::string ns;
    nlohmann::json object;
  };
  struct Watch;
  struct Crd {
    nlohmann::json object;
    bool status_subresource = false;
  };
  void Install();
  // The CRD serving `collection` ("/apis/<group>/<version>/<plural>"), or null.
  const Crd* CrdFor(const std::string& collection) const;  // mu_ held
  bool HasStatusSubresource(const std::string& collection, const std::string& resource) const;  // mu_ held
  void InstallCrdLocked(const nlohmann::json& crd);
  bool Serves(const std::string& resource_version) const;
  // Answers GET on a discovery path; false when `path` is not one.
  bool Discovery(const std::string& path, httplib::Response& res) const;
  absl::Status Listen();

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  bool tls_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string token_;
  uint64_t rv_ = 100;
  uint64_t compacted_rv_ = 0;  // history starts after this
  // collection -> "ns/name" -> object
  std::map<std::string, std::map<std::string, nlohmann::json>> objects_;
  std::map<std::string, Crd> crds_;  // by collection
  std::vector<std::string> resource_versions_ = {"v1", "v1beta1"};
  std::vector<Event> history_;
  uint64_t bookmark_generation_ = 0;
  uint64_t drop_generation_ = 0;
  bool stopping_ = false;
  std::map<std::string, int> conflicts_;
  std::string forbidden_;
  std::map<std::string, ServiceAccountToken> tokens_;
  int token_reviews_ = 0;
  nlohmann::json ReviewToken(const nlohmann::json& review);
  int watch_requests_ = 0;
  int conflicts_returned_ = 0;
  int open_watches_ = 0;
};

}  // namespace rpci::kubetest

#endif  // RPCI_TESTS_KUBE_API_SERVER_H_
