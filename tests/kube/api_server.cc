#include "tests/kube/api_server.h"

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "httplib.h"
#include "tests/kube/resource_group.h"
#include "tests/schema/openapi.h"

namespace rpci::kubetest {
namespace {

using nlohmann::json;

struct Parsed {
  bool ok = false;
  std::string collection;
  std::string api_version;
  std::string resource;
  std::string ns;
  std::string name;
  std::string sub;
  // resource.k8s.io: the version asked for (objects are stored once, in
  // v1's form, under "/apis/resource.k8s.io/<resource>").
  std::string resource_version;
};

Parsed ParsePath(const std::string& path) {
  Parsed p;
  std::vector<std::string> parts = absl::StrSplit(path, '/', absl::SkipEmpty());
  size_t i = 0;
  std::string prefix;
  if (parts.size() >= 3 && parts[0] == "api" && parts[1] == "v1") {
    prefix = "/api/v1";
    p.api_version = "v1";
    i = 2;
  } else if (parts.size() >= 4 && parts[0] == "apis") {
    prefix = absl::StrCat("/apis/", parts[1], "/", parts[2]);
    if (parts[1] == resource_group::kGroup) {
      prefix = absl::StrCat("/apis/", parts[1]);
      p.resource_version = parts[2];
    }
    p.api_version = absl::StrCat(parts[1], "/", parts[2]);
    i = 3;
  } else {
    return p;
  }
  if (parts.size() - i >= 3 && parts[i] == "namespaces") {
    p.ns = parts[i + 1];
    i += 2;
  }
  if (i >= parts.size() || parts.size() - i > 3) return p;
  p.resource = parts[i];
  if (i + 1 < parts.size()) p.name = parts[i + 1];
  if (i + 2 < parts.size()) p.sub = parts[i + 2];
  p.collection = prefix + "/" + p.resource;
  p.ok = p.sub.empty() || p.sub == "status";
  return p;
}

// Built-in kinds without a status subresource.
bool BuiltinWithoutStatus(const std::string& resource) {
  static const std::set<std::string> kNone = {"leases", "events", "secrets", "configmaps", "serviceaccounts"};
  if (const resource_group::ResourceInfo* r = resource_group::Find(resource)) return !r->status;
  return kNone.count(resource) > 0;
}

// How a client of the request's version sees a stored object.
json Present(const std::string& resource, const std::string& version, json object) {
  if (version.empty()) return object;
  return resource_group::FromStorage(resource, version, std::move(object));
}
json Present(const Parsed& p, json object) { return Present(p.resource, p.resource_version, std::move(object)); }

constexpr char kNamespaces[] = "/api/v1/namespaces";
constexpr char kCrds[] = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";

json StatusObject(int code, const std::string& reason, const std::string& message, json details = nullptr) {
  json s = {{"kind", "Status"},  {"apiVersion", "v1"}, {"metadata", json::object()}, {"status", "Failure"},
            {"message", message}, {"reason", reason},   {"code", code}};
  if (!details.is_null()) s["details"] = std::move(details);
  return s;
}

void Reply(httplib::Response& res, int code, const json& body) {
  res.status = code;
  res.set_content(body.dump(), "application/json");
}

void Fail(httplib::Response& res, int code, const std::string& reason, const std::string& message,
          json details = nullptr) {
  Reply(res, code, StatusObject(code, reason, message, std::move(details)));
}

// kube-apiserver's answer to a create in a namespace that does not exist.
void NamespaceNotFound(httplib::Response& res, const std::string& ns) {
  Fail(res, 404, "NotFound", absl::StrCat("namespaces \"", ns, "\" not found"),
       {{"name", ns}, {"kind", "namespaces"}});
}

// 422 Invalid, as kube-apiserver words it, when `object` breaks `crd`'s
// schema or rules. True when it replied.
bool RefuseInvalid(const json* crd, const json& object, httplib::Response& res) {
  if (crd == nullptr) return false;
  absl::Status s = schema::ValidateObject(*crd, object);
  if (s.ok()) return false;
  const json spec = (*crd)["spec"];
  const std::string kind = spec["names"].value("kind", "");
  const std::string name = object["metadata"].value("name", "");
  // ValidateObject's message is "<Kind> <name>:\n<violation>\n...".
  std::vector<std::string> lines = absl::StrSplit(s.message(), '\n');
  json causes = json::array();
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(": ");
    causes.push_back({{"reason", "FieldValueInvalid"},
                      {"message", colon == std::string::npos ? lines[i] : lines[i].substr(colon + 2)},
                      {"field", colon == std::string::npos ? "" : lines[i].substr(0, colon)}});
  }
  lines.erase(lines.begin());
  Fail(res, 422, "Invalid",
       absl::StrCat(kind, ".", spec.value("group", ""), " \"", name, "\" is invalid: ", absl::StrJoin(lines, ", ")),
       {{"name", name}, {"group", spec.value("group", "")}, {"kind", kind}, {"causes", causes}});
  return true;
}

// 422 Invalid for a resource.k8s.io object kube-apiserver would refuse.
bool RefuseInvalidBuiltin(const Parsed& p, const json& object, httplib::Response& res) {
  if (p.resource_version.empty()) return false;
  std::vector<std::string> errors = resource_group::Validate(p.resource, object);
  if (errors.empty()) return false;
  const resource_group::ResourceInfo* info = resource_group::Find(p.resource);
  const std::string name = object["metadata"].value("name", "");
  json causes = json::array();
  for (const std::string& e : errors) {
    const size_t colon = e.find(": ");
    causes.push_back({{"reason", "FieldValueInvalid"}, {"message", e.substr(colon + 2)}, {"field", e.substr(0, colon)}});
  }
  Fail(res, 422, "Invalid",
       absl::StrCat(info->kind, ".", resource_group::kGroup, " \"", name, "\" is invalid: ", absl::StrJoin(errors, ", ")),
       {{"name", name}, {"group", resource_group::kGroup}, {"kind", info->kind}, {"causes", causes}});
  return true;
}

uint64_t RvOf(const json& object) {
  uint64_t rv = 0;
  if (object.contains("metadata") && object["metadata"].contains("resourceVersion") &&
      object["metadata"]["resourceVersion"].is_string()) {
    (void)absl::SimpleAtoi(object["metadata"]["resourceVersion"].get<std::string>(), &rv);
  }
  return rv;
}

}  // namespace

struct ApiServer::Watch {
  std::string collection;
  std::string ns;
  size_t next = 0;  // index into history_
  bool bookmarks = false;
  uint64_t bookmark_seen = 0;
  uint64_t drop_seen = 0;
  std::chrono::steady_clock::time_point deadline;
  std::string kind;
  std::string api_version;
  std::vector<json> initial;  // synthetic ADDED events
  bool expired = false;
  std::string resource, resource_version;  // resource.k8s.io: how events are shown
};

ApiServer::ApiServer() {
  for (const char* ns : {"default", "kube-system", "kube-public", "kube-node-lease"}) {
    objects_[kNamespaces][absl::StrCat("/", ns)] = {{"apiVersion", "v1"},
                                                     {"kind", "Namespace"},
                                                     {"metadata", {{"name", ns}, {"resourceVersion", "1"}}},
                                                     {"status", {{"phase", "Active"}}}};
  }
}

void ApiServer::CreateNamespace(const std::string& name) {
  Put(absl::StrCat(kNamespaces, "/", name),
      {{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", {{"name", name}}}, {"status", {{"phase", "Active"}}}});
}

absl::Status ApiServer::InstallCrdsFrom(const std::string& dir) {
  std::error_code ec;
  int installed = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() != ".yaml") continue;
    absl::StatusOr<std::vector<json>> docs = schema::LoadYamlFile(entry.path().string());
    if (!docs.ok()) return docs.status();
    for (const json& d : *docs) {
      if (d.value("kind", "") != "CustomResourceDefinition") continue;
      InstallCrd(d);
      ++installed;
    }
  }
  if (ec || installed == 0) return absl::NotFoundError(absl::StrCat("no CRDs in ", dir));
  return absl::OkStatus();
}

void ApiServer::InstallCrd(const json& crd) {
  std::lock_guard<std::mutex> lock(mu_);
  InstallCrdLocked(crd);
}

void ApiServer::InstallCrdLocked(const json& crd) {
  const json spec = crd.value("spec", json::object());
  for (const json& v : spec.value("versions", json::array())) {
    const std::string collection = absl::StrCat("/apis/", spec.value("group", ""), "/", v.value("name", ""), "/",
                                                spec.value("names", json::object()).value("plural", ""));
    crds_[collection] = Crd{crd, v.value("subresources", json::object()).contains("status")};
  }
}

const ApiServer::Crd* ApiServer::CrdFor(const std::string& collection) const {
  auto it = crds_.find(collection);
  return it == crds_.end() ? nullptr : &it->second;
}

bool ApiServer::HasStatusSubresource(const std::string& collection, const std::string& resource) const {
  if (const Crd* crd = CrdFor(collection)) return crd->status_subresource;
  return !BuiltinWithoutStatus(resource);
}

ApiServer::~ApiServer() { Stop(); }

void ApiServer::ServeResourceVersions(std::vector<std::string> versions) {
  std::lock_guard<std::mutex> lock(mu_);
  resource_versions_ = std::move(versions);
}

bool ApiServer::Serves(const std::string& resource_version) const {
  std::lock_guard<std::mutex> lock(mu_);
  return std::find(resource_versions_.begin(), resource_versions_.end(), resource_version) !=
         resource_versions_.end();
}

bool ApiServer::Discovery(const std::string& path, httplib::Response& res) const {
  const std::string group_path = absl::StrCat("/apis/", resource_group::kGroup);
  std::lock_guard<std::mutex> lock(mu_);
  if (path == "/apis" || path == "/apis/") {
    json groups = json::array();
    if (!resource_versions_.empty()) {
      json g = resource_group::Group(resource_versions_);
      g.erase("kind");
      g.erase("apiVersion");
      groups.push_back(g);
    }
    std::map<std::string, json> crd_groups;  // group -> versions
    for (const auto& [collection, crd] : crds_) {
      const json spec = crd.object.value("spec", json::object());
      json& versions = crd_groups[spec.value("group", "")];
      if (versions.is_null()) {
        versions = json::array();
        for (const json& v : spec.value("versions", json::array())) {
          versions.push_back({{"groupVersion", absl::StrCat(spec.value("group", ""), "/", v.value("name", ""))},
                              {"version", v.value("name", "")}});
        }
      }
    }
    for (const auto& [name, versions] : crd_groups) {
      groups.push_back({{"name", name}, {"versions", versions}, {"preferredVersion", versions.empty() ? json() : versions[0]}});
    }
    Reply(res, 200, {{"kind", "APIGroupList"}, {"apiVersion", "v1"}, {"groups", groups}});
    return true;
  }
  if (path.rfind(group_path, 0) != 0) return false;
  const std::string rest = path.substr(group_path.size());
  if (rest.empty() || rest == "/") {
    if (resource_versions_.empty()) {
      Fail(res, 404, "NotFound", "the server could not find the requested resource");
    } else {
      Reply(res, 200, resource_group::Group(resource_versions_));
    }
    return true;
  }
  const std::string version = rest.substr(1);
  if (version.find('/') != std::string::npos) return false;
  if (std::find(resource_versions_.begin(), resource_versions_.end(), version) == resource_versions_.end()) {
    Fail(res, 404, "NotFound", "the server could not find the requested resource");
  } else {
    Reply(res, 200, resource_group::ResourceList(version));
  }
  return true;
}


absl::Status ApiServer::Start() {
  server_ = std::make_unique<httplib::Server>();
  return Listen();
}

absl::Status ApiServer::StartTls(const std::string& cert_pem, const std::string& key_pem) {
  BIO* cb = BIO_new_mem_buf(cert_pem.data(), static_cast<int>(cert_pem.size()));
  X509* cert = PEM_read_bio_X509(cb, nullptr, nullptr, nullptr);
  BIO_free(cb);
  BIO* kb = BIO_new_mem_buf(key_pem.data(), static_cast<int>(key_pem.size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kb, nullptr, nullptr, nullptr);
  BIO_free(kb);
  if (cert == nullptr || key == nullptr) return absl::InvalidArgumentError("test API server: bad cert or key PEM");
  server_ = std::make_unique<httplib::SSLServer>(cert, key);
  X509_free(cert);
  EVP_PKEY_free(key);
  tls_ = true;
  return Listen();
}

absl::Status ApiServer::Listen() {
  server_->new_task_queue = [] { return new httplib::ThreadPool(32); };
  server_->set_socket_options([](int sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  Install();
  port_ = server_->bind_to_any_port("127.0.0.1");
  if (port_ <= 0) return absl::UnavailableError("test API server: cannot bind 127.0.0.1");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return absl::OkStatus();
}

void ApiServer::Stop() {
  if (!server_) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

std::string ApiServer::url() const { return absl::StrCat(tls_ ? "https" : "http", "://127.0.0.1:", port_); }

void ApiServer::RequireToken(const std::string& token) {
  std::lock_guard<std::mutex> lock(mu_);
  token_ = token;
}

void ApiServer::Compact() {
  std::lock_guard<std::mutex> lock(mu_);
  compacted_rv_ = rv_;
  history_.clear();
  // Open watches keep streaming from the new, empty history.
}

void ApiServer::SendBookmarks() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++bookmark_generation_;
  }
  cv_.notify_all();
}

void ApiServer::DropWatches() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++drop_generation_;
  }
  cv_.notify_all();
}

void ApiServer::InjectConflicts(const std::string& path_part, int count) {
  std::lock_guard<std::mutex> lock(mu_);
  conflicts_[path_part] = count;
}

int ApiServer::watch_requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return watch_requests_;
}

int ApiServer::conflicts_returned() const {
  std::lock_guard<std::mutex> lock(mu_);
  return conflicts_returned_;
}

int ApiServer::open_watches() const {
  std::lock_guard<std::mutex> lock(mu_);
  return open_watches_;
}

void ApiServer::Forbid(const std::string& path_part) {
  std::lock_guard<std::mutex> lock(mu_);
  forbidden_ = path_part;
}

void ApiServer::AddToken(const std::string& token, ServiceAccountToken who) {
  std::lock_guard<std::mutex> lock(mu_);
  tokens_[token] = std::move(who);
}

void ApiServer::RemoveToken(const std::string& token) {
  std::lock_guard<std::mutex> lock(mu_);
  tokens_.erase(token);
}

int ApiServer::token_reviews() const {
  std::lock_guard<std::mutex> lock(mu_);
  return token_reviews_;
}

// REQUIRES: mu_ held.
json ApiServer::ReviewToken(const json& review) {
  ++token_reviews_;
  json spec = review.value("spec", json::object());
  json wanted = spec.value("audiences", json::array());
  if (!wanted.is_array() || wanted.empty()) wanted = json::array({"https://kubernetes.default.svc.cluster.local"});
  json out = {{"kind", "TokenReview"},
              {"apiVersion", "authentication.k8s.io/v1"},
              {"metadata", {{"creationTimestamp", nullptr}}},
              {"spec", spec},
              {"status", {{"user", json::object()}}}};
  auto it = tokens_.find(spec.value("token", ""));
  if (it == tokens_.end()) {
    out["status"]["error"] = "[invalid bearer token, square/go-jose: error in cryptographic primitive]";
    return out;
  }
  const ServiceAccountToken& t = it->second;
  json granted = json::array();
  for (const json& a : wanted) {
    if (std::find(t.audiences.begin(), t.audiences.end(), a.get<std::string>()) != t.audiences.end()) {
      granted.push_back(a);
    }
  }
  if (granted.empty()) {
    out["status"]["error"] = absl::StrCat("[invalid bearer token, token audiences ", json(t.audiences).dump(),
                                          " is invalid for the target audiences ", wanted.dump(), "]");
    return out;
  }
  json extra = json::object();
  if (!t.pod_name.empty()) {
    extra["authentication.kubernetes.io/pod-name"] = {t.pod_name};
    extra["authentication.kubernetes.io/pod-uid"] = {t.pod_uid};
    extra["authentication.kubernetes.io/credential-id"] = {absl::StrCat("JTI=jti-", t.pod_uid)};
  }
  if (!t.node_name.empty()) {
    extra["authentication.kubernetes.io/node-name"] = {t.node_name};
    extra["authentication.kubernetes.io/node-uid"] = {absl::StrCat("uid-node-", t.node_name)};
  }
  out["status"] = {{"authenticated", true},
                   {"user",
                    {{"username", absl::StrCat("system:serviceaccount:", t.ns, ":", t.service_account)},
                     {"uid", absl::StrCat("uid-sa-", t.ns, "-", t.service_account)},
                     {"groups", {"system:serviceaccounts", absl::StrCat("system:serviceaccounts:", t.ns),
                                 "system:authenticated"}},
                     {"extra", extra}}},
                   {"audiences", granted}};
  return out;
}

absl::StatusOr<json> ApiServer::Get(const std::string& path) const {
  Parsed p = ParsePath(path);
  std::lock_guard<std::mutex> lock(mu_);
  auto c = objects_.find(p.collection);
  if (!p.ok || c == objects_.end()) return absl::NotFoundError(path);
  auto it = c->second.find(p.ns + "/" + p.name);
  if (it == c->second.end()) return absl::NotFoundError(path);
  return Present(p, it->second);
}

json ApiServer::Put(const std::string& path, json object) {
  Parsed p = ParsePath(path);
  if (!p.resource_version.empty()) {
    std::vector<std::string> ignored;
    object = resource_group::ToStorage(p.resource, p.resource_version, std::move(object), &ignored);
  }
  std::string type;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& slot = objects_[p.collection][p.ns + "/" + p.name];
    type = slot.is_null() ? "ADDED" : "MODIFIED";
    object["metadata"]["name"] = p.name;
    if (!p.ns.empty()) object["metadata"]["namespace"] = p.ns;
    object["metadata"]["resourceVersion"] = std::to_string(++rv_);
    if (!object["metadata"].contains("uid")) object["metadata"]["uid"] = absl::StrCat("uid-", rv_);
    slot = object;
    history_.push_back(Event{rv_, type, p.collection, p.ns, object});
  }
  cv_.notify_all();
  return Present(p, object);
}

void ApiServer::Delete(const std::string& path) {
  Parsed p = ParsePath(path);
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& coll = objects_[p.collection];
    auto it = coll.find(p.ns + "/" + p.name);
    if (it == coll.end()) return;
    json last = it->second;
    coll.erase(it);
    last["metadata"]["resourceVersion"] = std::to_string(++rv_);
    history_.push_back(Event{rv_, "DELETED", p.collection, p.ns, last});
  }
  cv_.notify_all();
}

void ApiServer::Install() {
  auto handler = [this](const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!token_.empty() && req.get_header_value("Authorization") != "Bearer " + token_) {
        Fail(res, 401, "Unauthorized", "Unauthorized");
        return;
      }
      if (!forbidden_.empty() && req.path.find(forbidden_) != std::string::npos) {
        Fail(res, 403, "Forbidden",
             absl::StrCat("User \"system:serviceaccount:test\" cannot ", req.method, " ", req.path));
        return;
      }
    }
    if (req.method == "POST" && req.path == "/apis/authentication.k8s.io/v1/tokenreviews") {
      json review = json::parse(req.body, nullptr, false);
      if (review.is_discarded() || !review.is_object()) {
        Fail(res, 400, "BadRequest", "request body is not a JSON object");
        return;
      }
      std::lock_guard<std::mutex> lock(mu_);
      Reply(res, 201, ReviewToken(review));
      return;
    }
    if (req.method == "GET" && Discovery(req.path, res)) return;
    Parsed p = ParsePath(req.path);
    if (!p.ok || (!p.resource_version.empty() && (!Serves(p.resource_version) || !resource_group::Find(p.resource)))) {
      Fail(res, 404, "NotFound", "the server could not find the requested resource");
      return;
    }
    const std::string key = p.ns + "/" + p.name;
    json body;
    if (req.method == "POST" || req.method == "PUT") {
      body = json::parse(req.body, nullptr, false);
      if (body.is_discarded() || !body.is_object()) {
        Fail(res, 400, "BadRequest", "request body is not a JSON object");
        return;
      }
      if (!p.resource_version.empty()) {
        std::vector<std::string> warnings;
        body = resource_group::ToStorage(p.resource, p.resource_version, std::move(body), &warnings);
        for (const std::string& w : warnings) res.set_header("Warning", absl::StrCat("299 - \"", w, "\""));
      }
    }
    if (req.method == "GET" && p.name.empty() &&
        (req.get_param_value("watch") == "true" || req.get_param_value("watch") == "1")) {
      auto w = std::make_shared<Watch>();
      w->collection = p.collection;
      w->ns = p.ns;
      w->bookmarks = req.get_param_value("allowWatchBookmarks") == "true";
      w->api_version = p.api_version;
      w->resource = p.resource;
      w->resource_version = p.resource_version;
      int timeout = 0;
      (void)absl::SimpleAtoi(req.get_param_value("timeoutSeconds"), &timeout);
      w->deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout > 0 ? timeout : 1800);
      uint64_t from = 0;
      const std::string rv_text = req.get_param_value("resourceVersion");
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++watch_requests_;
        w->bookmark_seen = bookmark_generation_;
        w->drop_seen = drop_generation_;
        if (rv_text.empty() || rv_text == "0") {
          for (const auto& [k, o] : objects_[p.collection]) {
            if (p.ns.empty() || o["metadata"].value("namespace", "") == p.ns) w->initial.push_back(o);
          }
          w->next = history_.size();
        } else if (!absl::SimpleAtoi(rv_text, &from)) {
          Fail(res, 400, "BadRequest", "resourceVersion is not a number");
          return;
        } else if (from < compacted_rv_) {
          w->expired = true;
        } else {
          w->next = history_.size();
          while (w->next > 0 && history_[w->next - 1].rv > from) --w->next;
        }
      }
      res.status = 200;
      res.set_chunked_content_provider(
          "application/json",
          [this, w](size_t, httplib::DataSink& sink) {
            std::string out;
            if (w->expired) {
              out = json({{"type", "ERROR"},
                          {"object", StatusObject(410, "Expired", "too old resource version")}})
                        .dump() +
                    "\n";
              sink.write(out.data(), out.size());
              sink.done();
              return true;
            }
            for (const json& o : w->initial) {
              out += json({{"type", "ADDED"}, {"object", Present(w->resource, w->resource_version, o)}}).dump() + "\n";
            }
            w->initial.clear();
            std::unique_lock<std::mutex> lock(mu_);
            if (out.empty()) {
              cv_.wait_for(lock, std::chrono::milliseconds(200), [&] {
                return stopping_ || drop_generation_ != w->drop_seen || bookmark_generation_ != w->bookmark_seen ||
                       w->next < history_.size();
              });
            }
            if (stopping_ || drop_generation_ != w->drop_seen) return false;  // connection broken
            for (; w->next < history_.size(); ++w->next) {
              const Event& e = history_[w->next];
              if (e.collection != w->collection || (!w->ns.empty() && e.ns != w->ns)) continue;
              out += json({{"type", e.type}, {"object", Present(w->resource, w->resource_version, e.object)}}).dump() +
                     "\n";
            }
            if (bookmark_generation_ != w->bookmark_seen) {
              w->bookmark_seen = bookmark_generation_;
              if (w->bookmarks) {
                out += json({{"type", "BOOKMARK"},
                             {"object",
                              {{"apiVersion", w->api_version},
                               {"metadata", {{"resourceVersion", std::to_string(rv_)}}}}}})
                           .dump() +
                       "\n";
              }
            }
            const bool timed_out = std::chrono::steady_clock::now() > w->deadline;
            lock.unlock();
            if (!out.empty() && !sink.write(out.data(), out.size())) return false;
            if (timed_out) sink.done();
            return true;
          });
      return;
    }

    std::unique_lock<std::mutex> lock(mu_);
    auto& coll = objects_[p.collection];
    if (req.method == "GET" && p.name.empty()) {
      const resource_group::ResourceInfo* info = p.resource_version.empty() ? nullptr : resource_group::Find(p.resource);
      json list = {{"kind", info ? absl::StrCat(info->kind, "List") : "List"},
                   {"apiVersion", p.api_version},
                   {"metadata", {{"resourceVersion", std::to_string(rv_)}}},
                   {"items", json::array()}};
      for (const auto& [k, o] : coll) {
        if (p.ns.empty() || o["metadata"].value("namespace", "") == p.ns) list["items"].push_back(Present(p, o));
      }
      Reply(res, 200, list);
      return;
    }
    if (req.method == "POST" && p.name.empty()) {
      std::string name = body["metadata"].value("name", "");
      if (name.empty()) {
        Fail(res, 422, "Invalid", "metadata.name: Required value");
        return;
      }
      if (!p.ns.empty() && !objects_[kNamespaces].count("/" + p.ns)) {
        NamespaceNotFound(res, p.ns);
        return;
      }
      const std::string obj_key = p.ns + "/" + name;
      if (coll.count(obj_key)) {
        Fail(res, 409, "AlreadyExists", absl::StrCat(p.resource, " \"", name, "\" already exists"));
        return;
      }
      if (HasStatusSubresource(p.collection, p.resource)) body.erase("status");
      if (!p.ns.empty()) body["metadata"]["namespace"] = p.ns;
      const Crd* crd = CrdFor(p.collection);
      if (RefuseInvalid(crd ? &crd->object : nullptr, body, res)) return;
      if (RefuseInvalidBuiltin(p, body, res)) return;
      if (p.collection == kCrds) InstallCrdLocked(body);
      body["metadata"]["resourceVersion"] = std::to_string(++rv_);
      body["metadata"]["uid"] = absl::StrCat("uid-", rv_);
      body["metadata"]["generation"] = 1;
      body["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z";
      if (!p.ns.empty()) body["metadata"]["namespace"] = p.ns;
      coll[obj_key] = body;
      history_.push_back(Event{rv_, "ADDED", p.collection, p.ns, body});
      lock.unlock();
      cv_.notify_all();
      Reply(res, 201, Present(p, body));
      return;
    }
    auto it = coll.find(key);
    if (it == coll.end()) {
      Fail(res, 404, "NotFound", absl::StrCat(p.resource, " \"", p.name, "\" not found"));
      return;
    }
    if (req.method == "GET") {
      Reply(res, 200, Present(p, it->second));
      return;
    }
    if (req.method == "DELETE") {
      json last = it->second;
      coll.erase(it);
      last["metadata"]["resourceVersion"] = std::to_string(++rv_);
      history_.push_back(Event{rv_, "DELETED", p.collection, p.ns, last});
      lock.unlock();
      cv_.notify_all();
      Reply(res, 200, Present(p, last));
      return;
    }
    if (req.method == "PUT") {
      if (p.sub == "status" && !HasStatusSubresource(p.collection, p.resource)) {
        Fail(res, 404, "NotFound", "the server could not find the requested resource");
        return;
      }
      for (auto& [part, count] : conflicts_) {
        if (count > 0 && req.path.find(part) != std::string::npos) {
          --count;
          ++conflicts_returned_;
          Fail(res, 409, "Conflict", "Operation cannot be fulfilled: the object has been modified");
          return;
        }
      }
      json& stored = it->second;
      const uint64_t want = RvOf(body);
      if (want != 0 && want != RvOf(stored)) {
        ++conflicts_returned_;
        Fail(res, 409, "Conflict",
             absl::StrCat("Operation cannot be fulfilled on ", p.resource, " \"", p.name,
                          "\": the object has been modified; please apply your changes to the latest version"));
        return;
      }
      json next = stored;
      if (p.sub == "status") {
        next["status"] = body.value("status", json::object());
      } else {
        json keep_status = stored.value("status", json());
        next = body;
        next["metadata"] = stored["metadata"];
        if (body["metadata"].contains("labels")) next["metadata"]["labels"] = body["metadata"]["labels"];
        if (body["metadata"].contains("annotations")) next["metadata"]["annotations"] = body["metadata"]["annotations"];
        if (HasStatusSubresource(p.collection, p.resource)) {
          if (keep_status.is_null()) next.erase("status"); else next["status"] = keep_status;
        }
        if (next.value("spec", json()) != stored.value("spec", json())) {
          next["metadata"]["generation"] = stored["metadata"].value("generation", 1) + 1;
        }
      }
      const Crd* crd = CrdFor(p.collection);
      if (RefuseInvalid(crd ? &crd->object : nullptr, next, res)) return;
      if (RefuseInvalidBuiltin(p, next, res)) return;
      next["metadata"]["resourceVersion"] = std::to_string(++rv_);
      stored = next;
      history_.push_back(Event{rv_, "MODIFIED", p.collection, p.ns, next});
      lock.unlock();
      cv_.notify_all();
      Reply(res, 200, Present(p, next));
      return;
    }
    Fail(res, 405, "MethodNotAllowed", req.method + " is not supported");
  };
  server_->Get(".*", handler);
  server_->Post(".*", handler);
  server_->Put(".*", handler);
  server_->Delete(".*", handler);
}

}  // namespace rpci::kubetest
