#include "controller/kube/client.h"

#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "common/config.h"
#include "httplib.h"

namespace rpci::kube {
namespace {

using nlohmann::json;

constexpr char kHttpStatusPayload[] = "rpci.io/http-status";

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The string at `key` of a JSON object (kubeconfig map, API Status), or "".
std::string Field(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_string()) return "";
  return object[key].get<std::string>();
}

absl::Status FromHttp(int code, const std::string& body, const std::string& what) {
  std::string message = body;
  std::string reason;
  json status = json::parse(body, nullptr, false);
  if (!status.is_discarded() && status.is_object()) {
    if (std::string m = Field(status, "message"); !m.empty()) message = m;
    reason = Field(status, "reason");
  }
  message = absl::StrCat(what, ": HTTP ", code, ": ", message);
  absl::StatusCode sc = absl::StatusCode::kUnknown;
  switch (code) {
    case 400: case 422: sc = absl::StatusCode::kInvalidArgument; break;
    case 401: sc = absl::StatusCode::kUnauthenticated; break;
    case 403: sc = absl::StatusCode::kPermissionDenied; break;
    case 404: sc = absl::StatusCode::kNotFound; break;
    case 409: sc = reason == "AlreadyExists" ? absl::StatusCode::kAlreadyExists : absl::StatusCode::kAborted; break;
    case 410: sc = absl::StatusCode::kOutOfRange; break;
    case 429: sc = absl::StatusCode::kResourceExhausted; break;
    default: sc = code >= 500 ? absl::StatusCode::kUnavailable : absl::StatusCode::kUnknown;
  }
  absl::Status s(sc, message);
  s.SetPayload(kHttpStatusPayload, absl::Cord(std::to_string(code)));
  return s;
}

const json& MemberOf(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object() || !object.contains(key)) return kNull;
  return object[key];
}

const json* Named(const json& list, const std::string& name, const char* inner) {
  if (!list.is_array()) return nullptr;
  for (const json& e : list) {
    if (e.is_object() && Field(e, "name") == name && e.contains(inner)) return &e[inner];
  }
  return nullptr;
}

// "-data" (base64) or a file path relative to the kubeconfig's directory.
absl::StatusOr<std::string> DataOrFile(const json& object, const std::string& key, const std::string& base_dir,
                                       const std::string& origin) {
  std::string data = Field(object, (key + "-data").c_str());
  if (!data.empty()) {
    std::string decoded;
    if (!absl::Base64Unescape(data, &decoded)) {
      return absl::InvalidArgumentError(absl::StrCat(origin, ": ", key, "-data is not base64"));
    }
    return decoded;
  }
  std::string path = Field(object, key.c_str());
  if (path.empty()) return std::string();
  if (path[0] != '/') path = base_dir + "/" + path;
  return ReadFile(path);
}

}  // namespace

std::optional<WatchEvent> ParseWatchEvent(const std::string& line) {
  if (line.empty()) return std::nullopt;
  json e = json::parse(line, nullptr, false);
  if (e.is_discarded() || !e.is_object() || !e.contains("type") || !e["type"].is_string()) return std::nullopt;
  return WatchEvent{e["type"].get<std::string>(), e.value("object", json::object())};
}

int HttpStatusOf(const absl::Status& status) {
  auto payload = status.GetPayload(kHttpStatusPayload);
  int code = 0;
  if (payload.has_value()) (void)absl::SimpleAtoi(std::string(*payload), &code);
  return code;
}

absl::StatusOr<KubeConfig> InClusterConfig(const std::string& sa_dir) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr) {
    return absl::FailedPreconditionError(
        "in-cluster config: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set (not in a pod?)");
  }
  KubeConfig c;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  c.server = absl::StrCat("https://", h, ":", port);
  absl::StatusOr<std::string> ca = ReadFile(sa_dir + "/ca.crt");
  if (!ca.ok()) return ca.status();
  c.ca_pem = *ca;
  c.token_file = sa_dir + "/token";
  absl::StatusOr<std::string> token = ReadFile(c.token_file);
  if (!token.ok()) return token.status();
  absl::StatusOr<std::string> ns = ReadFile(sa_dir + "/namespace");
  if (ns.ok()) c.ns = std::string(absl::StripAsciiWhitespace(*ns));
  return c;
}

absl::StatusOr<KubeConfig> LoadKubeconfig(const std::string& path, const std::string& context) {
  absl::StatusOr<json> doc = LoadConfigFile(path);
  if (!doc.ok()) return doc.status();
  const std::string base_dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
  std::string ctx_name = context.empty() ? Field(*doc, "current-context") : context;
  if (ctx_name.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no current-context"));
  const json* ctx = Named(MemberOf(*doc, "contexts"), ctx_name, "context");
  if (ctx == nullptr) return absl::InvalidArgumentError(absl::StrCat(path, ": context \"", ctx_name, "\" not found"));
  const std::string cluster_name = Field(*ctx, "cluster");
  const json* cluster = Named(MemberOf(*doc, "clusters"), cluster_name, "cluster");
  if (cluster == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": cluster \"", cluster_name, "\" not found"));
  }
  KubeConfig c;
  c.server = Field(*cluster, "server");
  if (c.server.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": cluster ", cluster_name, " has no server"));
  const json& insecure = MemberOf(*cluster, "insecure-skip-tls-verify");
  if (!insecure.is_null() && !insecure.is_boolean()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": cluster ", cluster_name, ": insecure-skip-tls-verify is not a boolean"));
  }
  c.insecure_skip_tls_verify = insecure.is_boolean() && insecure.get<bool>();
  absl::StatusOr<std::string> ca = DataOrFile(*cluster, "certificate-authority", base_dir, path);
  if (!ca.ok()) return ca.status();
  c.ca_pem = *ca;
  if (!Field(*ctx, "namespace").empty()) c.ns = Field(*ctx, "namespace");
  const std::string user_name = Field(*ctx, "user");
  if (const json* user = Named(MemberOf(*doc, "users"), user_name, "user"); user != nullptr) {
    c.token = Field(*user, "token");
    c.token_file = Field(*user, "tokenFile");
    absl::StatusOr<std::string> cert = DataOrFile(*user, "client-certificate", base_dir, path);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> key = DataOrFile(*user, "client-key", base_dir, path);
    if (!key.ok()) return key.status();
    c.client_cert_pem = *cert;
    c.client_key_pem = *key;
  }
  return c;
}

absl::StatusOr<std::unique_ptr<KubeClient>> KubeClient::Create(KubeConfig config) {
  std::unique_ptr<KubeClient> c(new KubeClient(std::move(config)));
  absl::string_view url = c->config_.server;
  if (absl::ConsumePrefix(&url, "https://")) {
    c->scheme_ = "https";
    c->port_ = 443;
  } else if (absl::ConsumePrefix(&url, "http://")) {
    c->scheme_ = "http";
    c->port_ = 80;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("API server URL \"", c->config_.server, "\": need http(s)://"));
  }
  std::string rest(url.substr(0, url.find('/')));
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find(']', colon) == std::string::npos) {
    if (!absl::SimpleAtoi(rest.substr(colon + 1), &c->port_)) {
      return absl::InvalidArgumentError(absl::StrCat("API server URL \"", c->config_.server, "\": bad port"));
    }
    rest = rest.substr(0, colon);
  }
  if (!rest.empty() && rest.front() == '[') rest = rest.substr(1, rest.size() - 2);
  c->host_ = rest;
  if (c->scheme_ == "https" && !c->config_.client_cert_pem.empty() != !c->config_.client_key_pem.empty()) {
    return absl::InvalidArgumentError("kube client: client certificate and key must come together");
  }
  return c;
}

KubeClient::KubeClient(KubeConfig config) : config_(std::move(config)) {}
KubeClient::~KubeClient() { Cancel(); }

std::string KubeClient::Token() const {
  if (!config_.token_file.empty()) {
    absl::StatusOr<std::string> t = ReadFile(config_.token_file);
    if (t.ok()) return std::string(absl::StripAsciiWhitespace(*t));
  }
  return config_.token;
}

std::unique_ptr<httplib::ClientImpl> KubeClient::NewConnection() const {
  std::unique_ptr<httplib::ClientImpl> cli;
  if (scheme_ == "https") {
    X509* cert = nullptr;
    EVP_PKEY* key = nullptr;
    if (!config_.client_cert_pem.empty()) {
      BIO* b = BIO_new_mem_buf(config_.client_cert_pem.data(), static_cast<int>(config_.client_cert_pem.size()));
      cert = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
      BIO_free(b);
      b = BIO_new_mem_buf(config_.client_key_pem.data(), static_cast<int>(config_.client_key_pem.size()));
      key = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
      BIO_free(b);
    }
    auto ssl = (cert && key) ? std::make_unique<httplib::SSLClient>(host_, port_, cert, key)
                             : std::make_unique<httplib::SSLClient>(host_, port_);
    if (cert) X509_free(cert);
    if (key) EVP_PKEY_free(key);
    ssl->enable_server_certificate_verification(!config_.insecure_skip_tls_verify);
    if (!config_.ca_pem.empty()) {
      X509_STORE* store = X509_STORE_new();
      BIO* b = BIO_new_mem_buf(config_.ca_pem.data(), static_cast<int>(config_.ca_pem.size()));
      while (X509* ca = PEM_read_bio_X509(b, nullptr, nullptr, nullptr)) {
        X509_STORE_add_cert(store, ca);
        X509_free(ca);
      }
      BIO_free(b);
      ssl->set_ca_cert_store(store);  // the client owns it from here
    }
    cli = std::move(ssl);
  } else {
    cli = std::make_unique<httplib::ClientImpl>(host_, port_);
  }
  cli->set_connection_timeout(5, 0);
  cli->set_read_timeout(30, 0);
  cli->set_write_timeout(30, 0);
  return cli;
}

absl::StatusOr<json> KubeClient::Send(const std::string& method, const std::string& path, const json* body) {
  auto cli = NewConnection();
  httplib::Headers headers = {{"Accept", "application/json"}};
  std::string token = Token();
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  const std::string what = absl::StrCat(method, " ", path);
  httplib::Result r = method == "GET"    ? cli->Get(path.c_str(), headers)
                      : method == "POST" ? cli->Post(path.c_str(), headers, body->dump(), "application/json")
                      : method == "PUT"  ? cli->Put(path.c_str(), headers, body->dump(), "application/json")
                                         : cli->Delete(path.c_str(), headers);
  if (!r) return absl::UnavailableError(absl::StrCat(what, ": ", httplib::to_string(r.error())));
  if (r->status < 200 || r->status >= 300) return FromHttp(r->status, r->body, what);
  json out = json::parse(r->body, nullptr, false);
  if (out.is_discarded()) return absl::InternalError(absl::StrCat(what, ": response is not JSON"));
  return out;
}

absl::StatusOr<json> KubeClient::Get(const std::string& path) { return Send("GET", path, nullptr); }
absl::StatusOr<json> KubeClient::Create(const std::string& collection_path, const json& object) {
  return Send("POST", collection_path, &object);
}
absl::StatusOr<json> KubeClient::Update(const std::string& path, const json& object) {
  return Send("PUT", path, &object);
}
absl::Status KubeClient::Delete(const std::string& path) { return Send("DELETE", path, nullptr).status(); }

absl::StatusOr<json> KubeClient::ReadModifyWrite(const std::string& path, bool status,
                                                 const std::function<bool(json&)>& mutate, int attempts) {
  absl::Status last;
  for (int i = 0; i < attempts; ++i) {
    absl::StatusOr<json> current = Get(path);
    if (!current.ok()) return current.status();
    if (!mutate(*current)) return current;
    absl::StatusOr<json> written = Update(status ? path + "/status" : path, *current);
    if (written.ok() || HttpStatusOf(written.status()) != 409) return written;
    last = written.status();
  }
  return absl::AbortedError(absl::StrCat(path, ": still conflicting after ", attempts, " attempts: ", last.message()));
}

absl::Status KubeClient::Watch(const std::string& collection_path, const std::string& resource_version,
                               int timeout_seconds, const std::function<bool(const WatchEvent&)>& on_event,
                               const void* owner, const std::function<bool()>& stopped) {
  if (cancelled_) return absl::CancelledError("kube client cancelled");
  auto cli = NewConnection();
  cli->set_read_timeout(timeout_seconds + 30, 0);
  auto unregister = [&] {
    std::lock_guard<std::mutex> lock(watches_mu_);
    watches_.erase(std::find(watches_.begin(), watches_.end(), std::make_pair(owner, cli.get())));
  };
  {
    std::lock_guard<std::mutex> lock(watches_mu_);
    watches_.emplace_back(owner, cli.get());
  }
  if (stopped && stopped()) {
    unregister();
    return absl::CancelledError("watch cancelled");
  }
  std::string path = absl::StrCat(collection_path, "?watch=true&allowWatchBookmarks=true&timeoutSeconds=",
                                  timeout_seconds);
  if (!resource_version.empty()) absl::StrAppend(&path, "&resourceVersion=", resource_version);
  httplib::Headers headers = {{"Accept", "application/json"}};
  std::string token = Token();
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  std::string buffer;
  std::string error_body;
  int status = 0;
  bool stopped_by_handler = false;
  httplib::Result r = cli->Get(
      path.c_str(), headers,
      [&](const httplib::Response& res) {
        status = res.status;
        return true;
      },
      [&](const char* data, size_t len) {
        if (status != 200) {
          error_body.append(data, len);
          return true;
        }
        buffer.append(data, len);
        size_t nl;
        while ((nl = buffer.find('\n')) != std::string::npos) {
          std::string line = buffer.substr(0, nl);
          buffer.erase(0, nl + 1);
          std::optional<WatchEvent> event = ParseWatchEvent(line);
          if (!event.has_value()) continue;
          if (!on_event(*event)) {
            stopped_by_handler = true;
            return false;
          }
        }
        return !cancelled_ && !(stopped && stopped());
      });
  unregister();
  if (stopped_by_handler) return absl::OkStatus();
  if (cancelled_ || (stopped && stopped())) return absl::CancelledError("watch cancelled");
  if (status != 0 && status != 200) return FromHttp(status, error_body, "watch " + collection_path);
  if (!r) return absl::UnavailableError(absl::StrCat("watch ", collection_path, ": ", httplib::to_string(r.error())));
  return absl::OkStatus();
}

void KubeClient::CancelWatches(const void* owner) {
  std::lock_guard<std::mutex> lock(watches_mu_);
  for (const auto& [o, c] : watches_) {
    if (o == owner) c->stop();
  }
}

void KubeClient::Cancel() {
  cancelled_ = true;
  std::lock_guard<std::mutex> lock(watches_mu_);
  for (const auto& [o, c] : watches_) c->stop();
}

absl::Status KubeClient::PostEvent(const json& object, const std::string& type, const std::string& reason,
                                   const std::string& message, const std::string& component) {
  const json meta = object.value("metadata", json::object());
  const std::string name = meta.value("name", "");
  const std::string ns = meta.value("namespace", "default");
  const std::string now = absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", absl::Now(), absl::UTCTimeZone());
  json event = {
      {"apiVersion", "v1"},
      {"kind", "Event"},
      {"metadata", {{"name", absl::StrCat(name, ".", absl::ToUnixNanos(absl::Now()))}, {"namespace", ns}}},
      {"involvedObject",
       {{"apiVersion", object.value("apiVersion", "")},
        {"kind", object.value("kind", "")},
        {"name", name},
        {"namespace", meta.value("namespace", "")},
        {"uid", meta.value("uid", "")}}},
      {"reason", reason},
      {"message", message},
      {"type", type},
      {"source", {{"component", component}}},
      {"reportingComponent", component},
      {"firstTimestamp", now},
      {"lastTimestamp", now},
      {"count", 1},
  };
  return Create(absl::StrCat("/api/v1/namespaces/", ns, "/events"), event).status();
}

}  // namespace rpci::kube
