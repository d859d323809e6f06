// `kubectl apply -f deploy/crds -f deploy/examples` against the test API
// server, which answers as kube-apiserver does where it matters here: CRDs
// become served resources validated against their schemas and rules, and
// nothing can be created in a namespace that does not exist. Every file is a
// Kubernetes object and every object is accepted, in file-name order.
#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "nlohmann/json.hpp"
#include "tests/kube/api_server.h"
#include "tests/schema/openapi.h"

namespace rpci {
namespace {

using nlohmann::json;

std::vector<std::string> FilesIn(const std::string& dir) {
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(dir)) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());  // kubectl apply -f <dir> goes in name order
  return files;
}

// Where `kubectl apply` would POST `object`: core kinds from a table, custom
// kinds from the CRDs applied before.
class Applier {
 public:
  explicit Applier(const std::string& url) : http_(url.substr(url.find("//") + 2).c_str()) {}

  // The HTTP status of the create, and the answer.
  std::pair<int, json> Apply(const json& object) {
    const std::string kind = object.value("kind", "");
    const std::string ns = object["metadata"].value("namespace", "");
    std::string collection;
    if (kind == "CustomResourceDefinition") {
      collection = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions";
      const json spec = object["spec"];
      kinds_[spec["names"].value("kind", "")] = {
          absl::StrCat("/apis/", spec.value("group", ""), "/", spec["versions"][0].value("name", "")),
          spec["names"].value("plural", ""), spec.value("scope", "") == "Namespaced"};
    } else if (auto it = kinds_.find(kind); it != kinds_.end()) {
      collection = it->second.namespaced ? absl::StrCat(it->second.prefix, "/namespaces/", ns, "/", it->second.plural)
                                         : absl::StrCat(it->second.prefix, "/", it->second.plural);
    } else {
      return {0, json{{"error", "kind " + kind + " is neither core nor from an applied CRD"}}};
    }
    httplib::Result r = http_.Post(collection.c_str(), object.dump(), "application/json");
    if (!r) return {0, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }

 private:
  struct Kind {
    std::string prefix, plural;
    bool namespaced;
  };
  httplib::Client http_;
  std::map<std::string, Kind> kinds_ = {{"Namespace", {"/api/v1", "namespaces", false}},
                                        {"Pod", {"/api/v1", "pods", true}},
                                        {"ConfigMap", {"/api/v1", "configmaps", true}},
                                        {"Secret", {"/api/v1", "secrets", true}},
                                        {"ResourceClaimTemplate",
                                         {"/apis/resource.k8s.io/v1", "resourceclaimtemplates", true}}};
};

std::vector<json> Objects(const std::vector<std::string>& files) {
  std::vector<json> out;
  for (const std::string& f : files) {
    absl::StatusOr<std::vector<json>> docs = schema::LoadYamlFile(f);
    EXPECT_TRUE(docs.ok()) << f << ": " << docs.status();
    if (!docs.ok()) continue;
    for (json& d : *docs) {
      EXPECT_TRUE(d.is_object() && d.contains("apiVersion") && d.contains("kind") && d.contains("metadata"))
          << f << " holds something that is not a Kubernetes object";
      out.push_back(std::move(d));
    }
  }
  return out;
}

TEST(Examples, ApplyCleanlyInOrderToAFreshCluster) {
  kubetest::ApiServer server;
  ASSERT_TRUE(server.Start().ok());
  Applier kubectl(server.url());
  std::vector<std::string> files = FilesIn("deploy/crds");
  for (const std::string& f : FilesIn("deploy/examples")) files.push_back(f);
  int applied = 0;
  for (const json& object : Objects(files)) {
    auto [code, answer] = kubectl.Apply(object);
    EXPECT_EQ(code, 201) << object["kind"] << " " << object["metadata"].value("name", "") << ": " << answer.dump();
    ++applied;
  }
  EXPECT_GE(applied, 10);
  EXPECT_TRUE(server.Get("/api/v1/namespaces/ml/pods/emu-workload").ok());
  EXPECT_TRUE(server.Get("/api/v1/namespaces/ml/pods/emu-workload-dra").ok());
  EXPECT_TRUE(server.Get("/apis/resource.k8s.io/v1/namespaces/ml/resourceclaimtemplates/emu-device").ok());
}

// The double is strict: without the namespaces file first, the pod is refused
// as a real cluster refuses it.
TEST(Examples, WithoutTheirNamespacesThePodIsRefused) {
  kubetest::ApiServer server;
  ASSERT_TRUE(server.Start().ok());
  Applier kubectl(server.url());
  std::vector<std::string> files = FilesIn("deploy/crds");
  for (const std::string& f : FilesIn("deploy/examples")) {
    if (f.find("namespaces") == std::string::npos) files.push_back(f);
  }
  bool pod_refused = false;
  for (const json& object : Objects(files)) {
    auto [code, answer] = kubectl.Apply(object);
    if (object["kind"] == "Pod") {
      pod_refused = code == 404 && answer.value("message", "") == "namespaces \"ml\" not found";
    }
  }
  EXPECT_TRUE(pod_refused);
}

}  // namespace
}  // namespace rpci
