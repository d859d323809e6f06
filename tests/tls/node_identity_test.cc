// Node identity with the real daemons: rpci-controller's logic (ControllerApp,
// --store=kube against the test API server, which answers TokenReview as
// kube-apiserver does) holds the only CA key; the real rpci-agent and
// rpci-plugin binaries get their certificates from it with projected-token
// files, as the Helm chart runs them. A forged token, or the token of a pod
// on another node, gets no certificate and the daemon exits saying why; a
// certificate renewed in the background lets an agent reconnect after its
// first certificate expired, without a restart.
#include <signal.h>
#include <sys/stat.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>

#include "absl/strings/str_cat.h"
#include "common/cert_authority.h"
#include "common/log.h"
#include "common/testing/temp_dir.h"
#include "controller/controller_app.h"
#include "controller/testing/installed_api_server.h"
#include "controller/testing/kube_options.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/harness/free_port.h"
#include "tests/harness/subprocess.h"

namespace rpci::testing {
namespace {

using nlohmann::json;

constexpr const char* kNs = controller::testing::kInstallNamespace;

kubetest::ApiServer::ServiceAccountToken Token(const std::string& account, const std::string& pod,
                                               const std::string& node) {
  kubetest::ApiServer::ServiceAccountToken t;
  t.ns = kNs;
  t.service_account = account;
  t.pod_name = pod;
  t.pod_uid = "uid-" + pod;
  t.node_name = node;
  return t;
}

class NodeIdentityTest : public controller::testing::InstalledApiServerTest {
 protected:
  void SetUp() override {
    InstalledApiServerTest::SetUp();
    if (HasFatalFailure()) return;
    dir_ = MakeTempDir("node-identity");
    for (const auto& [pod, node] : {std::pair<std::string, std::string>{"agent-a", "dev-a"}, {"plugin-b", "cmp-b"}}) {
      server_.Put(absl::StrCat("/api/v1/namespaces/", kNs, "/pods/", pod),
                  {{"metadata", {{"uid", "uid-" + pod}}},
                   {"spec", {{"nodeName", node}}},
                   {"status", {{"hostIP", "127.0.0.1"}, {"podIPs", json::array({{{"ip", "127.0.0.1"}}})}}}});
    }
    server_.AddToken("token-agent-a", Token("rpci-agent", "agent-a", "dev-a"));
    server_.AddToken("token-plugin-b", Token("rpci-plugin", "plugin-b", "cmp-b"));

    absl::StatusOr<CertAuthority> ca = CertAuthority::Create("rpci-ca");
    ASSERT_TRUE(ca.ok());
    ASSERT_TRUE(ca->WriteCa(dir_ + "/ca-signing.crt", dir_ + "/ca-signing.key").ok());
    absl::StatusOr<TlsMaterial> controller = ca->Issue("controller", {"localhost"}, {"127.0.0.1"});
    ASSERT_TRUE(controller.ok());
    absl::StatusOr<TlsFiles> files = CertAuthority::WriteFiles(*controller, dir_, "controller");
    ASSERT_TRUE(files.ok());
    controller_files_ = *files;
    grpc_port_ = FreeLoopbackPort();
    identity_port_ = FreeLoopbackPort();
  }

  void StartController(absl::Duration node_cert_lifetime) {
    controller::ControllerOptions o = controller::testing::KubeStoreOptions(server_.url(), kNs);
    o.leader_elect = false;
    o.listen = absl::StrCat("127.0.0.1:", grpc_port_);
    o.http_listen = "127.0.0.1:0";
    o.reconcile_interval = absl::Milliseconds(200);
    o.tls.cert_file = controller_files_.cert_file;
    o.tls.key_file = controller_files_.key_file;
    o.tls.ca_file = controller_files_.ca_file;
    o.node_identity.listen = absl::StrCat("127.0.0.1:", identity_port_);
    o.node_identity.ca_cert_file = dir_ + "/ca-signing.crt";
    o.node_identity.ca_key_file = dir_ + "/ca-signing.key";
    o.node_identity.ca_bundle_configmap = absl::StrCat(kNs, "/rpci-ca-bundle");
    o.node_identity.issue.service_accounts = {{"agent", absl::StrCat(kNs, "/rpci-agent")},
                                              {"plugin", absl::StrCat(kNs, "/rpci-plugin")}};
    o.node_identity.issue.lifetime = node_cert_lifetime;
    absl::StatusOr<std::unique_ptr<controller::ControllerApp>> app = controller::ControllerApp::Create(o);
    ASSERT_TRUE(app.ok()) << app.status();
    ASSERT_TRUE((*app)->Start().ok());
    controller_ = *std::move(app);
    // What the chart mounts on nodes: the CA bundle ConfigMap, nothing more.
    absl::StatusOr<json> bundle = server_.Get(absl::StrCat("/api/v1/namespaces/", kNs, "/configmaps/rpci-ca-bundle"));
    ASSERT_TRUE(bundle.ok()) << bundle.status();
    std::ofstream(dir_ + "/ca-bundle.crt") << (*bundle)["data"]["ca.crt"].get<std::string>();
  }

  std::vector<std::string> NodeTlsFlags(const std::string& name, const std::string& token) {
    std::ofstream(dir_ + "/" + name + ".token") << token << "\n";
    return {"--tls-ca=" + dir_ + "/ca-bundle.crt", absl::StrCat("--identity-address=127.0.0.1:", identity_port_),
            "--token-file=" + dir_ + "/" + name + ".token", "--cert-dir=" + dir_ + "/" + name + "-tls"};
  }

  std::unique_ptr<Subprocess> StartAgent(const std::string& name, const std::string& node, const std::string& token,
                                         int http_port) {
    std::filesystem::create_directories(dir_ + "/" + name + "-state");
    std::vector<std::string> argv = {"agent/rpci-agent", "serve", "--node=" + node,
                                     absl::StrCat("--controller=127.0.0.1:", grpc_port_), "--emu-count=1",
                                     "--session-listen=127.0.0.1:0", "--fabric-provider=tcp;ofi_rxm",
                                     "--fabric-address=127.0.0.1", "--state-dir=" + dir_ + "/" + name + "-state",
                                     absl::StrCat("--http-listen=127.0.0.1:", http_port), "--log-level=info"};
    for (const std::string& f : NodeTlsFlags(name, token)) argv.push_back(f);
    return std::make_unique<Subprocess>(argv, dir_ + "/" + name + ".out", dir_ + "/" + name + ".err");
  }

  // True once the agent answers /readyz 200 (registered with the controller).
  static bool ReadyWithin(int http_port, absl::Duration timeout) {
    httplib::Client http("127.0.0.1", http_port);
    http.set_connection_timeout(1);
    for (absl::Time end = absl::Now() + timeout; absl::Now() < end; absl::SleepFor(absl::Milliseconds(100))) {
      httplib::Result r = http.Get("/readyz");
      if (r && r->status == 200) return true;
    }
    return false;
  }

  std::string dir_;
  TlsFiles controller_files_;
  int grpc_port_ = 0, identity_port_ = 0;
  std::unique_ptr<controller::ControllerApp> controller_;
};

TEST_F(NodeIdentityTest, AnAgentGetsItsCertificateFromTheControllerAndRegisters) {
  StartController(absl::Hours(1));
  const int http = FreeLoopbackPort();
  std::unique_ptr<Subprocess> agent = StartAgent("agent-a", "dev-a", "token-agent-a", http);
  ASSERT_TRUE(ReadyWithin(http, absl::Seconds(30))) << agent->err();
  absl::StatusOr<CertificateInfo> cert = ReadCertificateInfo(ReadWholeFile(dir_ + "/agent-a-tls/tls.crt"));
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(cert->common_name, "agent:dev-a");
  struct stat key = {};
  ASSERT_EQ(stat((dir_ + "/agent-a-tls/tls.key").c_str(), &key), 0);
  EXPECT_EQ(key.st_mode & 0777, 0600u);
  EXPECT_NE(agent->err().find("node certificate issued"), std::string::npos) << agent->err();
}

TEST_F(NodeIdentityTest, AForgedTokenOrAnotherNodesTokenGetsNoCertificateAndTheDaemonSaysWhy) {
  StartController(absl::Hours(1));
  // An agent on dev-b showing the token of the agent pod on dev-a.
  std::unique_ptr<Subprocess> foreign = StartAgent("agent-b", "dev-b", "token-agent-a", FreeLoopbackPort());
  EXPECT_EQ(foreign->Wait(absl::Seconds(30)), 1);
  // (The log line is JSON: the reason's quotes are escaped.)
  EXPECT_NE(foreign->err().find(R"(token's pod rpci-system/agent-a runs on node \"dev-a\", not on \"dev-b\")"),
            std::string::npos)
      << foreign->err();
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/agent-b-tls/tls.crt"));

  // A plugin with a made-up token.
  std::filesystem::create_directories(dir_ + "/kubelet");
  std::vector<std::string> argv = {"plugin/rpci-plugin", "--node=cmp-b",
                                   absl::StrCat("--controller=127.0.0.1:", grpc_port_), "--plugin-dir=" + dir_ + "/kubelet",
                                   "--health-addr=", "--state-dir=" + dir_ + "/plugin-state",
                                   "--cdi-dir=" + dir_ + "/cdi"};
  for (const std::string& f : NodeTlsFlags("plugin-b", "eyJhbGciOiJSUzI1NiJ9.forged.signature")) argv.push_back(f);
  Subprocess forged(argv, dir_ + "/forged.out", dir_ + "/forged.err");
  EXPECT_EQ(forged.Wait(absl::Seconds(30)), 1);
  EXPECT_NE(forged.err().find("token not authenticated by the API server"), std::string::npos) << forged.err();
  EXPECT_EQ(forged.err().find("forged.signature"), std::string::npos) << "the token was logged";
}

TEST_F(NodeIdentityTest, AnAgentReconnectsAfterItsFirstCertificateExpiredWithoutRestarting) {
  StartController(absl::Seconds(6));  // renewed after 4 s
  const int http = FreeLoopbackPort();
  std::unique_ptr<Subprocess> agent = StartAgent("agent-a", "dev-a", "token-agent-a", http);
  ASSERT_TRUE(ReadyWithin(http, absl::Seconds(30))) << agent->err();
  absl::StatusOr<CertificateInfo> first = ReadCertificateInfo(ReadWholeFile(dir_ + "/agent-a-tls/tls.crt"));
  ASSERT_TRUE(first.ok());

  // Past the first certificate's end, the controller restarts: the agent's
  // new connection must present a renewed certificate.
  absl::SleepFor(first->not_after - absl::Now() + absl::Seconds(1));
  controller_.reset();
  StartController(absl::Seconds(6));
  EXPECT_EQ(agent->Wait(absl::ZeroDuration()), -1) << "the agent exited: " << agent->err();
  // It registers again with the new controller: a new mTLS handshake.
  auto registrations = [&] {
    const std::string err = agent->err();
    int n = 0;
    for (size_t at = err.find("registered with controller"); at != std::string::npos;
         at = err.find("registered with controller", at + 1)) {
      ++n;
    }
    return n;
  };
  for (absl::Time end = absl::Now() + absl::Seconds(30); registrations() < 2 && absl::Now() < end;) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_GE(registrations(), 2) << agent->err();
  EXPECT_TRUE(ReadyWithin(http, absl::Seconds(5))) << agent->err();
  absl::StatusOr<CertificateInfo> now = ReadCertificateInfo(ReadWholeFile(dir_ + "/agent-a-tls/tls.crt"));
  ASSERT_TRUE(now.ok());
  EXPECT_GT(now->not_after, first->not_after);
  EXPECT_EQ(agent->Wait(absl::ZeroDuration()), -1) << "the agent restarted";
}

}  // namespace
}  // namespace rpci::testing
