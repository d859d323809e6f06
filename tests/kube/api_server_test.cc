// The test API server answers as kube-apiserver does where rpci's clients
// depend on it: namespaces that must exist, CRD validation, status
// subresources.
#include "tests/kube/api_server.h"

#include <thread>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/schema/openapi.h"

namespace rpci::kubetest {
namespace {

using nlohmann::json;

json Crd(const std::string& file) {
  absl::StatusOr<std::vector<json>> docs = schema::LoadYamlFile("deploy/crds/" + file);
  EXPECT_TRUE(docs.ok()) << docs.status();
  return docs.ok() && !docs->empty() ? (*docs)[0] : json();
}

class ApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.Start().ok());
    const std::string url = server_.url();
    http_ = std::make_unique<httplib::Client>(url.substr(url.find("//") + 2).c_str());
  }
  // POST/PUT with the raw answer, as a client sees it.
  std::pair<int, json> Send(const std::string& method, const std::string& path, const json& body) {
    httplib::Result r = method == "POST" ? http_->Post(path.c_str(), body.dump(), "application/json")
                                         : http_->Put(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r) << method << " " << path;
    if (!r) return {0, json()};
    return {r->status, json::parse(r->body, nullptr, false)};
  }
  ApiServer server_;
  std::unique_ptr<httplib::Client> http_;
};

TEST_F(ApiServerTest, CreateInANamespaceThatDoesNotExistIsA404StatusLikeKubeApiserver) {
  const json cm = {{"apiVersion", "v1"}, {"kind", "ConfigMap"}, {"metadata", {{"name", "c"}}}};
  auto [code, body] = Send("POST", "/api/v1/namespaces/kubelet/configmaps", cm);
  EXPECT_EQ(code, 404);
  EXPECT_EQ(body, json::parse(R"({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
      "message": "namespaces \"kubelet\" not found", "reason": "NotFound",
      "details": {"name": "kubelet", "kind": "namespaces"}, "code": 404})"));
  // default exists from the start; a created namespace exists from then on.
  EXPECT_EQ(Send("POST", "/api/v1/namespaces/default/configmaps", cm).first, 201);
  EXPECT_EQ(Send("POST", "/api/v1/namespaces", {{"apiVersion", "v1"}, {"kind", "Namespace"},
                                                {"metadata", {{"name", "kubelet"}}}}).first, 201);
  EXPECT_EQ(Send("POST", "/api/v1/namespaces/kubelet/configmaps", cm).first, 201);
}

TEST_F(ApiServerTest, ACrdCreatedThroughTheApiValidatesItsObjectsAndRules) {
  const json pool_crd = Crd("devicepools.yaml");
  ASSERT_EQ(Send("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", pool_crd).first, 201);
  json pool = {{"apiVersion", "rpci.io/v1alpha1"},
               {"kind", "DevicePool"},
               {"metadata", {{"name", "emu"}}},
               {"spec", {{"resourceName", "rpci.io/gpu"}, {"sparesPerNode", 1}}}};
  auto [code, body] = Send("POST", "/apis/rpci.io/v1alpha1/devicepools", pool);
  EXPECT_EQ(code, 422);
  EXPECT_EQ(body["reason"], "Invalid");
  EXPECT_EQ(body["details"]["kind"], "DevicePool");
  EXPECT_NE(body["message"].get<std::string>().find("spec.resourceName must be rpci.io/<metadata.name>"),
            std::string::npos) << body.dump();
  pool["spec"]["resourceName"] = "rpci.io/emu";
  ASSERT_EQ(Send("POST", "/apis/rpci.io/v1alpha1/devicepools", pool).first, 201);
  // Schema checks on update too: a negative spare count is refused.
  json stored = *server_.Get("/apis/rpci.io/v1alpha1/devicepools/emu");
  stored["spec"]["sparesPerNode"] = -1;
  EXPECT_EQ(Send("PUT", "/apis/rpci.io/v1alpha1/devicepools/emu", stored).first, 422);
}

TEST_F(ApiServerTest, StatusSubresourceFollowsTheCrd) {
  server_.InstallCrd(Crd("devicepools.yaml"));
  json pool = {{"apiVersion", "rpci.io/v1alpha1"}, {"kind", "DevicePool"}, {"metadata", {{"name", "emu"}}},
               {"spec", json::object()}, {"status", {{"available", 3}}}};
  ASSERT_EQ(Send("POST", "/apis/rpci.io/v1alpha1/devicepools", pool).first, 201);
  json stored = *server_.Get("/apis/rpci.io/v1alpha1/devicepools/emu");
  EXPECT_FALSE(stored.contains("status")) << "create ignores status when /status exists";
  stored["status"] = {{"available", 2}};
  auto [code, body] = Send("PUT", "/apis/rpci.io/v1alpha1/devicepools/emu/status", stored);
  ASSERT_EQ(code, 200) << body.dump();
  EXPECT_EQ(body["status"]["available"], 2);
  stored = body;
  stored["status"]["available"] = -1;
  EXPECT_EQ(Send("PUT", "/apis/rpci.io/v1alpha1/devicepools/emu/status", stored).first, 422);
  // Secrets have no status subresource.
  EXPECT_EQ(Send("POST", "/api/v1/namespaces/default/secrets",
                 {{"apiVersion", "v1"}, {"kind", "Secret"}, {"metadata", {{"name", "s"}}}}).first, 201);
  EXPECT_EQ(Send("PUT", "/api/v1/namespaces/default/secrets/s/status",
                 {{"apiVersion", "v1"}, {"kind", "Secret"}, {"metadata", {{"name", "s"}}}}).first, 404);
}

// ---- resource.k8s.io (Dynamic Resource Allocation) ----

json Get(httplib::Client& http, const std::string& path, int* code) {
  httplib::Result r = http.Get(path.c_str());
  *code = r ? r->status : 0;
  return r ? json::parse(r->body, nullptr, false) : json();
}

TEST_F(ApiServerTest, DiscoveryNamesTheResourceVersionsServedLikeKubeApiserver) {
  int code = 0;
  json group = Get(*http_, "/apis/resource.k8s.io", &code);
  EXPECT_EQ(code, 200);
  EXPECT_EQ(group, json::parse(R"({"kind": "APIGroup", "apiVersion": "v1", "name": "resource.k8s.io",
      "versions": [{"groupVersion": "resource.k8s.io/v1", "version": "v1"},
                   {"groupVersion": "resource.k8s.io/v1beta1", "version": "v1beta1"}],
      "preferredVersion": {"groupVersion": "resource.k8s.io/v1", "version": "v1"}})"));
  json all = Get(*http_, "/apis", &code);
  EXPECT_EQ(all["kind"], "APIGroupList");
  ASSERT_FALSE(all["groups"].empty());
  EXPECT_EQ(all["groups"][0]["name"], "resource.k8s.io");
  EXPECT_FALSE(all["groups"][0].contains("kind"));
  json resources = Get(*http_, "/apis/resource.k8s.io/v1beta1", &code);
  EXPECT_EQ(resources["kind"], "APIResourceList");
  EXPECT_EQ(resources["groupVersion"], "resource.k8s.io/v1beta1");
  bool claim_status = false;
  for (const json& r : resources["resources"]) {
    if (r["name"] == "resourceclaims/status") claim_status = r["verbs"] == json({"get", "patch", "update"});
    if (r["name"] == "resourceslices") {
      EXPECT_EQ(r["namespaced"], false);
    }
    if (r["name"] == "resourceclaims") {
      EXPECT_EQ(r["kind"], "ResourceClaim");
    }
  }
  EXPECT_TRUE(claim_status);
  // As Kubernetes 1.32: v1beta1 only; v1 is then an unknown path.
  server_.ServeResourceVersions({"v1beta1"});
  EXPECT_EQ(Get(*http_, "/apis/resource.k8s.io", &code)["preferredVersion"]["version"], "v1beta1");
  json missing = Get(*http_, "/apis/resource.k8s.io/v1/resourceslices", &code);
  EXPECT_EQ(code, 404);
  EXPECT_EQ(missing["reason"], "NotFound");
  Get(*http_, "/apis/resource.k8s.io/v1", &code);
  EXPECT_EQ(code, 404);
  server_.ServeResourceVersions({});
  Get(*http_, "/apis/resource.k8s.io", &code);
  EXPECT_EQ(code, 404);
}

TEST_F(ApiServerTest, ResourceSliceIsStoredOnceAndShownInEachVersionsShape) {
  const json v1beta1 = json::parse(R"({"apiVersion": "resource.k8s.io/v1beta1", "kind": "ResourceSlice",
      "metadata": {"name": "s"},
      "spec": {"driver": "rpci.io", "pool": {"name": "gpu", "generation": 1, "resourceSliceCount": 1},
               "allNodes": true,
               "devices": [{"name": "d0", "basic": {"attributes": {"rpci.io/vendorId": {"int": 4318}},
                                                    "capacity": {"rpci.io/bar0": {"value": "16Mi"}}}}]}})");
  auto [code, created] = Send("POST", "/apis/resource.k8s.io/v1beta1/resourceslices", v1beta1);
  ASSERT_EQ(code, 201) << created.dump();
  EXPECT_EQ(created["spec"]["devices"], v1beta1["spec"]["devices"]);
  int get_code = 0;
  json v1 = Get(*http_, "/apis/resource.k8s.io/v1/resourceslices/s", &get_code);
  EXPECT_EQ(v1["apiVersion"], "resource.k8s.io/v1");
  EXPECT_EQ(v1["spec"]["devices"], json::parse(R"([{"name": "d0", "attributes": {"rpci.io/vendorId": {"int": 4318}},
      "capacity": {"rpci.io/bar0": {"value": "16Mi"}}}])"));
  // A v1beta1 shape written to v1 loses what v1 does not have, as with
  // kube-apiserver's default field validation (a Warning header says so).
  json wrong = v1beta1;
  wrong["apiVersion"] = "resource.k8s.io/v1";
  wrong["metadata"]["name"] = "wrong";
  httplib::Result r = http_->Post("/apis/resource.k8s.io/v1/resourceslices", wrong.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 201);
  EXPECT_NE(r->get_header_value("Warning").find("spec.devices[0].basic"), std::string::npos);
  EXPECT_EQ(json::parse(r->body)["spec"]["devices"], json::parse(R"([{"name": "d0"}])"));
  // The list is a ResourceSliceList in the version asked for.
  json list = Get(*http_, "/apis/resource.k8s.io/v1beta1/resourceslices", &get_code);
  EXPECT_EQ(list["kind"], "ResourceSliceList");
  EXPECT_EQ(list["apiVersion"], "resource.k8s.io/v1beta1");
  EXPECT_TRUE(list["items"][0]["spec"]["devices"][0].contains("basic"));
}

TEST_F(ApiServerTest, ResourceSliceValidationRefusesWhatKubeApiserverRefuses) {
  json slice = json::parse(R"({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice", "metadata": {"name": "s"},
      "spec": {"driver": "rpci.io", "pool": {"name": "gpu", "generation": 0, "resourceSliceCount": 1},
               "nodeSelector": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In",
                                                                          "values": ["cn-1"]}]}]},
               "devices": [{"name": "Not_A_Label", "attributes": {"a": {"int": 1, "string": "x"}},
                            "capacity": {"c": {"value": "lots"}}}]}})");
  slice["spec"]["allNodes"] = true;
  auto [code, body] = Send("POST", "/apis/resource.k8s.io/v1/resourceslices", slice);
  EXPECT_EQ(code, 422);
  EXPECT_EQ(body["reason"], "Invalid");
  EXPECT_EQ(body["details"]["kind"], "ResourceSlice");
  const std::string message = body["message"];
  EXPECT_NE(message.find("exactly one of `nodeName`, `nodeSelector`, `allNodes`"), std::string::npos) << message;
  EXPECT_NE(message.find("spec.devices[0].name"), std::string::npos) << message;
  EXPECT_NE(message.find("spec.devices[0].attributes[a]"), std::string::npos) << message;
  EXPECT_NE(message.find("spec.devices[0].capacity[c].value"), std::string::npos) << message;
  slice["spec"].erase("allNodes");
  slice["spec"]["devices"] = json::parse(R"([{"name": "d0", "attributes": {"a": {"int": 1}},
                                              "capacity": {"c": {"value": "1Gi"}}}])");
  EXPECT_EQ(Send("POST", "/apis/resource.k8s.io/v1/resourceslices", slice).first, 201);
}

TEST_F(ApiServerTest, ResourceClaimRequestsConvertAndStatusIsASubresource) {
  const json claim = json::parse(R"({"apiVersion": "resource.k8s.io/v1beta1", "kind": "ResourceClaim",
      "metadata": {"name": "c"},
      "spec": {"devices": {"requests": [{"name": "gpu", "deviceClassName": "rpci-gpu", "allocationMode": "ExactCount",
                                         "count": 1}]}},
      "status": {"allocation": {"devices": {"results": []}}}})");
  auto [code, created] = Send("POST", "/apis/resource.k8s.io/v1beta1/namespaces/default/resourceclaims", claim);
  ASSERT_EQ(code, 201) << created.dump();
  EXPECT_FALSE(created.contains("status")) << "create ignores status";
  json v1 = *server_.Get("/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/c");
  EXPECT_EQ(v1["spec"]["devices"]["requests"][0], json::parse(R"({"name": "gpu",
      "exactly": {"deviceClassName": "rpci-gpu", "allocationMode": "ExactCount", "count": 1}})"));
  // The scheduler writes the allocation through /status, in v1.
  v1["status"] = json::parse(R"({"allocation": {"devices": {"results": [
      {"request": "gpu", "driver": "rpci.io", "pool": "gpu", "device": "d0"}]}}})");
  auto [status_code, updated] =
      Send("PUT", "/apis/resource.k8s.io/v1/namespaces/default/resourceclaims/c/status", v1);
  ASSERT_EQ(status_code, 200) << updated.dump();
  // A v1beta1 reader sees the same allocation and its own request shape.
  json old = *server_.Get("/apis/resource.k8s.io/v1beta1/namespaces/default/resourceclaims/c");
  EXPECT_EQ(old["status"]["allocation"], v1["status"]["allocation"]);
  EXPECT_EQ(old["spec"]["devices"]["requests"][0]["deviceClassName"], "rpci-gpu");
  // DeviceClasses have no /status.
  json dc = {{"apiVersion", "resource.k8s.io/v1"}, {"kind", "DeviceClass"}, {"metadata", {{"name", "rpci-gpu"}}},
             {"spec", {{"selectors", {{{"cel", {{"expression", "device.driver == \"rpci.io\""}}}}}}}}};
  EXPECT_EQ(Send("POST", "/apis/resource.k8s.io/v1/deviceclasses", dc).first, 201);
  EXPECT_EQ(Send("PUT", "/apis/resource.k8s.io/v1/deviceclasses/rpci-gpu/status", dc).first, 404);
}

TEST_F(ApiServerTest, AWatchShowsResourceObjectsInTheWatchersVersion) {
  std::string stream;
  std::thread watcher([&] {
    httplib::Client c(server_.url().substr(server_.url().find("//") + 2).c_str());
    c.Get("/apis/resource.k8s.io/v1beta1/resourceslices?watch=true&timeoutSeconds=2",
          [&](const char* data, size_t n) {
            stream.append(data, n);
            return true;
          });
  });
  while (server_.watch_requests() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  server_.Put("/apis/resource.k8s.io/v1/resourceslices/s",
              json::parse(R"({"apiVersion": "resource.k8s.io/v1", "kind": "ResourceSlice",
                  "spec": {"driver": "rpci.io", "pool": {"name": "gpu", "generation": 1, "resourceSliceCount": 1},
                           "allNodes": true, "devices": [{"name": "d0", "attributes": {"x": {"bool": true}}}]}})"));
  watcher.join();
  std::vector<json> events;
  for (absl::string_view line : absl::StrSplit(stream, '\n', absl::SkipEmpty())) {
    events.push_back(json::parse(line, nullptr, false));
  }
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0]["type"], "ADDED");
  EXPECT_EQ(events[0]["object"]["apiVersion"], "resource.k8s.io/v1beta1");
  EXPECT_EQ(events[0]["object"]["spec"]["devices"][0]["basic"]["attributes"]["x"]["bool"], true);
}

}  // namespace
}  // namespace rpci::kubetest
