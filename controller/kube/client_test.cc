#include "controller/kube/client.h"

#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "common/cert_authority.h"
#include "common/testing/manual_clock.h"
#include "common/testing/temp_dir.h"
#include "controller/kube/informer.h"
#include "controller/kube/leader_election.h"
#include "gtest/gtest.h"
#include "tests/kube/api_server.h"

namespace rpci::kube {
namespace {

using nlohmann::json;

bool WaitFor(const std::function<bool()>& cond, int ms = 5000) {
  for (int i = 0; i < ms / 10; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

json Node(const std::string& name) { return {{"apiVersion", "v1"}, {"kind", "Node"}, {"metadata", {{"name", name}}}}; }

class KubeClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kError);
    ASSERT_TRUE(server_.Start().ok());
    KubeConfig config;
    config.server = server_.url();
    auto client = KubeClient::Create(config);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }
  kubetest::ApiServer server_;
  std::unique_ptr<KubeClient> client_;
};

TEST_F(KubeClientTest, CreateGetUpdateDeleteWithApiErrors) {
  auto created = client_->Create("/api/v1/nodes", Node("n1"));
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(client_->Create("/api/v1/nodes", Node("n1")).status().code(), absl::StatusCode::kAlreadyExists);
  json stale = *created;
  json fresh = *created;
  fresh["metadata"]["labels"] = {{"a", "b"}};
  ASSERT_TRUE(client_->Update("/api/v1/nodes/n1", fresh).ok());
  auto conflict = client_->Update("/api/v1/nodes/n1", stale);
  EXPECT_EQ(HttpStatusOf(conflict.status()), 409);
  EXPECT_EQ(conflict.status().code(), absl::StatusCode::kAborted);
  ASSERT_TRUE(client_->Delete("/api/v1/nodes/n1").ok());
  auto missing = client_->Get("/api/v1/nodes/n1");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("not found"), std::string::npos);
}

TEST_F(KubeClientTest, StatusWriteRetriesOnConflict) {
  ASSERT_TRUE(client_->Create("/apis/rpci.io/v1alpha1/pciedevices",
                              {{"kind", "PcieDevice"}, {"metadata", {{"name", "d1"}}}, {"spec", {{"pool", "emu"}}}})
                  .ok());
  server_.InjectConflicts("/pciedevices/d1/status", 2);
  int calls = 0;
  auto r = client_->ReadModifyWrite("/apis/rpci.io/v1alpha1/pciedevices/d1", true, [&](json& o) {
    ++calls;
    o["status"] = {{"phase", "Assigned"}};
    return true;
  });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(server_.conflicts_returned(), 2);
  EXPECT_EQ((*server_.Get("/apis/rpci.io/v1alpha1/pciedevices/d1"))["status"]["phase"], "Assigned");
  // The status subresource does not touch spec, and the object PUT does not touch status.
  json o = *client_->Get("/apis/rpci.io/v1alpha1/pciedevices/d1");
  o["status"] = {{"phase", "Available"}};
  o["spec"]["pool"] = "gpu";
  ASSERT_TRUE(client_->Update("/apis/rpci.io/v1alpha1/pciedevices/d1", o).ok());
  json after = *server_.Get("/apis/rpci.io/v1alpha1/pciedevices/d1");
  EXPECT_EQ(after["status"]["phase"], "Assigned");
  EXPECT_EQ(after["spec"]["pool"], "gpu");
  EXPECT_EQ(after["metadata"]["generation"], 2);
}

TEST_F(KubeClientTest, StatusWriteGivesUpAfterPersistentConflicts) {
  server_.Put("/api/v1/nodes/n1", Node("n1"));
  server_.InjectConflicts("/nodes/n1", 100);
  auto r = client_->ReadModifyWrite("/api/v1/nodes/n1", true, [](json& o) {
    o["status"] = {{"x", 1}};
    return true;
  }, 3);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted);
}

TEST_F(KubeClientTest, InformerFollowsWatchBookmarksAndRelistsOnGone) {
  server_.Put("/api/v1/nodes/n1", Node("n1"));
  std::mutex mu;
  Informer::Cache seen;
  Informer informer(client_.get(), "/api/v1/nodes", [&](const Informer::Cache& c) {
    std::lock_guard<std::mutex> lock(mu);
    seen = c;
  });
  informer.Start();
  auto has = [&](const std::string& key) {
    std::lock_guard<std::mutex> lock(mu);
    return seen.count(key) > 0;
  };
  ASSERT_TRUE(WaitFor([&] { return has("/n1"); }));
  ASSERT_TRUE(WaitFor([&] { return server_.open_watches() >= 0 && server_.watch_requests() == 1; }));
  server_.Put("/api/v1/nodes/n2", Node("n2"));
  ASSERT_TRUE(WaitFor([&] { return has("/n2"); }));
  server_.Delete("/api/v1/nodes/n1");
  ASSERT_TRUE(WaitFor([&] { return !has("/n1"); }));
  // A bookmark moves the resourceVersion on without changing the cache.
  server_.Put("/api/v1/pods/other", {{"kind", "Pod"}});  // another collection's write bumps the version
  const std::string before = informer.resource_version();
  server_.SendBookmarks();
  ASSERT_TRUE(WaitFor([&] { return informer.resource_version() != before; }));
  EXPECT_EQ(informer.lists(), 1);
  // A dropped connection is rewatched from where it was, without a list.
  server_.DropWatches();
  ASSERT_TRUE(WaitFor([&] { return server_.watch_requests() >= 2; }));
  server_.Put("/api/v1/nodes/n3", Node("n3"));
  ASSERT_TRUE(WaitFor([&] { return has("/n3"); }));
  EXPECT_EQ(informer.lists(), 1);
  // History compacted while disconnected: the rewatch gets 410 and relists.
  const int watches = server_.watch_requests();
  server_.Put("/api/v1/nodes/n4", Node("n4"));
  ASSERT_TRUE(WaitFor([&] { return has("/n4"); }));
  server_.DropWatches();
  ASSERT_TRUE(WaitFor([&] { return server_.watch_requests() > watches; }));
  // While the informer is disconnected, n5 happens and history is compacted
  // past it: the rewatch gets 410 and the informer lists again.
  server_.DropWatches();
  server_.Put("/api/v1/nodes/n5", Node("n5"));
  server_.Compact();
  ASSERT_TRUE(WaitFor([&] { return informer.lists() == 2; }));
  ASSERT_TRUE(WaitFor([&] { return has("/n5") && has("/n3") && !has("/n1"); }));
  informer.Stop();
}

TEST_F(KubeClientTest, LeaderTakesOverWhenHolderStopsRenewing) {
  ManualClock clock;
  LeaderElector::Options a_opts;
  a_opts.identity = "controller-a";
  LeaderElector::Options b_opts = a_opts;
  b_opts.identity = "controller-b";
  LeaderElector a(client_.get(), &clock, a_opts);
  LeaderElector b(client_.get(), &clock, b_opts);
  EXPECT_TRUE(a.TryAcquireOrRenew());
  EXPECT_FALSE(b.TryAcquireOrRenew());
  EXPECT_EQ(b.holder(), "controller-a");
  // A renews on time: B stays a follower.
  for (int i = 0; i < 10; ++i) {
    clock.Advance(absl::Seconds(2));
    EXPECT_TRUE(a.TryAcquireOrRenew());
    EXPECT_FALSE(b.TryAcquireOrRenew());
  }
  // A is killed: no more renewals. B takes over once the lease runs out.
  clock.Advance(absl::Seconds(10));
  EXPECT_FALSE(b.TryAcquireOrRenew());
  clock.Advance(absl::Seconds(6));
  EXPECT_TRUE(b.TryAcquireOrRenew());
  json lease = *server_.Get("/apis/coordination.k8s.io/v1/namespaces/default/leases/rpci-controller");
  EXPECT_EQ(lease["spec"]["holderIdentity"], "controller-b");
  EXPECT_EQ(lease["spec"]["leaseTransitions"], 1);
  // A comes back and finds itself a follower.
  EXPECT_FALSE(a.TryAcquireOrRenew());
  EXPECT_FALSE(a.is_leader());
  EXPECT_EQ(a.holder(), "controller-b");
}

TEST_F(KubeClientTest, ReleasedLeaseIsTakenAtOnce) {
  ManualClock clock;
  LeaderElector::Options o;
  o.identity = "controller-a";
  LeaderElector a(client_.get(), &clock, o);
  o.identity = "controller-b";
  LeaderElector b(client_.get(), &clock, o);
  ASSERT_TRUE(a.TryAcquireOrRenew());
  ASSERT_FALSE(b.TryAcquireOrRenew());
  ASSERT_TRUE(a.Release().ok());
  EXPECT_FALSE(a.is_leader());
  EXPECT_TRUE(b.TryAcquireOrRenew());
}

TEST_F(KubeClientTest, LeaderThatCannotRenewStepsDown) {
  ManualClock clock;
  LeaderElector::Options o;
  o.identity = "controller-a";
  LeaderElector a(client_.get(), &clock, o);
  ASSERT_TRUE(a.TryAcquireOrRenew());
  server_.Stop();  // API server unreachable
  clock.Advance(absl::Seconds(5));
  EXPECT_TRUE(a.TryAcquireOrRenew());  // still within the renew deadline
  clock.Advance(absl::Seconds(6));
  EXPECT_FALSE(a.TryAcquireOrRenew());
}

TEST(KubeTlsTest, VerifiesTheServerAgainstTheClusterCa) {
  Logger::SetMinLevel(LogLevel::kError);
  auto ca = CertAuthority::Create("cluster-ca");
  ASSERT_TRUE(ca.ok());
  auto serving = ca->Issue("kube-apiserver", {"localhost"}, {"127.0.0.1"});
  ASSERT_TRUE(serving.ok());
  kubetest::ApiServer server;
  ASSERT_TRUE(server.StartTls(serving->cert_pem, serving->key_pem).ok());
  server.RequireToken("s3cret");
  server.Put("/api/v1/nodes/n1", Node("n1"));

  KubeConfig good;
  good.server = server.url();
  good.ca_pem = ca->ca_pem();
  good.token = "s3cret";
  EXPECT_TRUE((*KubeClient::Create(good))->Get("/api/v1/nodes/n1").ok());

  KubeConfig bad_token = good;
  bad_token.token = "nope";
  EXPECT_EQ((*KubeClient::Create(bad_token))->Get("/api/v1/nodes/n1").status().code(),
            absl::StatusCode::kUnauthenticated);

  auto other = CertAuthority::Create("other-ca");
  ASSERT_TRUE(other.ok());
  KubeConfig wrong_ca = good;
  wrong_ca.ca_pem = other->ca_pem();
  EXPECT_EQ((*KubeClient::Create(wrong_ca))->Get("/api/v1/nodes/n1").status().code(),
            absl::StatusCode::kUnavailable);
}

// Bearer tokens and client keys are secrets: neither the statuses the client
// returns nor what it and the informer log at debug level (through refused
// requests, retries and a malformed kubeconfig) may carry them.
TEST(KubeSecretsTest, TokensAndKeysNeverReachLogsOrErrors) {
  std::ostringstream logs;
  Logger::SetSink(&logs);
  Logger::SetMinLevel(LogLevel::kDebug);
  const std::string right = "right-token-5f0c1d2e3a4b", wrong = "wrong-token-9e8d7c6b5a4f";
  kubetest::ApiServer server;
  ASSERT_TRUE(server.Start().ok());
  server.RequireToken(right);
  server.Put("/api/v1/nodes/n1", Node("n1"));
  std::vector<std::string> statuses;
  for (const std::string& token : {right, wrong}) {
    KubeConfig config;
    config.server = server.url();
    config.token = token;
    std::unique_ptr<KubeClient> client = *KubeClient::Create(config);
    statuses.push_back(client->Get("/api/v1/nodes/n1").status().ToString());
    statuses.push_back(client->Get("/api/v1/nodes/absent").status().ToString());
    statuses.push_back(client->Update("/api/v1/nodes/n1", json{{"metadata", 5}}).status().ToString());
    Informer informer(client.get(), "/api/v1/nodes", [](const Informer::Cache&) {});
    informer.Start();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    informer.Stop();
  }
  const std::string path = ::rpci::testing::MakeTempDir("kubeconfig") + "/kubeconfig-secrets";
  const std::string key_data = absl::Base64Escape("-----BEGIN PRIVATE KEY-----\nnot-a-key\n-----END PRIVATE KEY-----\n");
  std::ofstream(path) << "current-context: a\n"
                         "clusters:\n- name: c1\n  cluster: {server: \"https://h:1\"}\n"
                         "contexts:\n- name: a\n  context: {cluster: c1, user: u1}\n"
                         "users:\n- name: u1\n  user: {token: [" << wrong << "], client-key-data: " << key_data << "}\n";
  statuses.push_back(LoadKubeconfig(path, "a").status().ToString());
  Logger::SetSink(&std::cerr);
  Logger::SetMinLevel(LogLevel::kError);

  EXPECT_NE(logs.str().find("list failed"), std::string::npos) << "the refused lists should be logged:\n" << logs.str();
  for (const std::string& secret : {right, wrong, key_data, std::string("PRIVATE KEY")}) {
    EXPECT_EQ(logs.str().find(secret), std::string::npos) << secret << " logged:\n" << logs.str();
    for (const std::string& status : statuses) EXPECT_EQ(status.find(secret), std::string::npos) << status;
  }
}

TEST(KubeconfigTest, ReadsContextClusterAndUser) {
  const std::string path = ::rpci::testing::MakeTempDir("kubeconfig") + "/kubeconfig";
  std::ofstream(path) << "apiVersion: v1\nkind: Config\ncurrent-context: dev\n"
                         "clusters:\n- name: c1\n  cluster:\n    server: https://10.1.2.3:6443\n"
                         "    certificate-authority-data: " << absl::Base64Escape("CA PEM") << "\n"
                         "contexts:\n- name: dev\n  context:\n    cluster: c1\n    user: u1\n    namespace: rpci-system\n"
                         "users:\n- name: u1\n  user:\n    token: abc\n";
  auto c = LoadKubeconfig(path);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server, "https://10.1.2.3:6443");
  EXPECT_EQ(c->ca_pem, "CA PEM");
  EXPECT_EQ(c->token, "abc");
  EXPECT_EQ(c->ns, "rpci-system");
  auto missing = LoadKubeconfig(path, "prod");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(missing.status().message().find("prod"), std::string::npos);
}

TEST(KubeconfigTest, WrongTypesAreErrorsNotExceptions) {
  const std::string path = ::rpci::testing::MakeTempDir("kubeconfig") + "/kubeconfig-bad";
  std::ofstream(path) << "current-context: a\n"
                         "clusters:\n- name: c1\n  cluster: {server: https://h:1, insecure-skip-tls-verify: \"true\"}\n"
                         "- name: c2\n  cluster: 5\n"
                         "contexts:\n- name: a\n  context: {cluster: c1}\n- name: b\n  context: {cluster: c2}\n";
  auto insecure = LoadKubeconfig(path, "a");
  EXPECT_EQ(insecure.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(insecure.status().message().find("insecure-skip-tls-verify"), std::string::npos);
  auto not_a_map = LoadKubeconfig(path, "b");
  EXPECT_EQ(not_a_map.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WatchEventTest, ParsesEventLinesAndSkipsTheRest) {
  auto added = ParseWatchEvent(R"({"type": "ADDED", "object": {"metadata": {"name": "n1"}}})");
  ASSERT_TRUE(added.has_value());
  EXPECT_EQ(added->type, "ADDED");
  EXPECT_EQ(added->object["metadata"]["name"], "n1");
  EXPECT_FALSE(ParseWatchEvent("").has_value());
  EXPECT_FALSE(ParseWatchEvent("not json").has_value());
  EXPECT_FALSE(ParseWatchEvent("[1]").has_value());
  EXPECT_FALSE(ParseWatchEvent(R"({"type": 3})").has_value());
}

TEST(WatchEventTest, MalformedObjectsNeverThrow) {
  Informer::Cache cache;
  std::string rv = "1";
  // Not objects, or metadata fields of the wrong type: keyed by what is
  // readable ("" otherwise), resourceVersion kept.
  EXPECT_EQ(ApplyWatchEvent({"ADDED", json(5)}, &cache, &rv), WatchOutcome::kChanged);
  EXPECT_EQ(ApplyWatchEvent({"ADDED", {{"metadata", {{"name", 5}, {"resourceVersion", 7}}}}}, &cache, &rv),
            WatchOutcome::kChanged);
  EXPECT_EQ(ApplyWatchEvent({"DELETED", {{"metadata", "x"}}}, &cache, &rv), WatchOutcome::kChanged);
  EXPECT_EQ(rv, "1");
  EXPECT_TRUE(cache.empty());
  EXPECT_EQ(ApplyWatchEvent({"ERROR", {{"code", "410"}}}, &cache, &rv), WatchOutcome::kError);
  EXPECT_EQ(ApplyWatchEvent({"ERROR", json::array({410})}, &cache, &rv), WatchOutcome::kError);
  EXPECT_EQ(ApplyWatchEvent({"ERROR", {{"code", 410}}}, &cache, &rv), WatchOutcome::kGone);
  EXPECT_EQ(ApplyWatchEvent({"BOOKMARK", {{"metadata", {{"resourceVersion", "9"}}}}}, &cache, &rv),
            WatchOutcome::kUnchanged);
  EXPECT_EQ(rv, "9");
  Informer::Cache listed = CacheFromList(json("a string"), &rv);
  EXPECT_TRUE(listed.empty());
  EXPECT_EQ(rv, "");
  listed = CacheFromList({{"items", {{{"metadata", {{"namespace", "ns"}, {"name", "a"}}}}}},
                          {"metadata", {{"resourceVersion", "12"}}}},
                         &rv);
  EXPECT_EQ(listed.count("ns/a"), 1u);
  EXPECT_EQ(rv, "12");
}

TEST(InClusterConfigTest, NeedsServiceEnvironment) {
  unsetenv("KUBERNETES_SERVICE_HOST");
  EXPECT_EQ(InClusterConfig("/nonexistent").status().code(), absl::StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace rpci::kube
