// The test API server answers as kube-apiserver does where rpci's clients
// depend on it: namespaces that must exist, CRD validation, status
// subresources.
#include "tests/kube/api_server.h"

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

}  // namespace
}  // namespace rpci::kubetest
