// The controller's NodeIdentity service against the test API server (which
// answers TokenReview as kube-apiserver does), and the node side
// (RequestNodeCertificate, NodeCertificateRenewer, DaemonTls) against it.
#include <sys/stat.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include "common/cert_authority.h"
#include "common/grpc_util.h"
#include "common/testing/temp_dir.h"
#include "common/tls.h"
#include "common/tls_node_certificate.h"
#include "common/tls_settings.h"
#include "controller/identity/identity_server.h"
#include "controller/identity/token_review.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/rpci/v1/identity.grpc.pb.h"
#include "tests/kube/api_server.h"

namespace rpci::controller::identity {
namespace {

using nlohmann::json;

kubetest::ApiServer::ServiceAccountToken Token(const std::string& ns, const std::string& account,
                                               const std::string& pod, const std::string& pod_uid,
                                               const std::string& node) {
  kubetest::ApiServer::ServiceAccountToken t;
  t.ns = ns;
  t.service_account = account;
  t.pod_name = pod;
  t.pod_uid = pod_uid;
  t.node_name = node;
  return t;
}

// A service that answers with the caller's verified certificate name: an
// mTLS peer of the node's credentials, as the controller's registries are.
class WhoAmIService final : public rpci::v1::NodeIdentity::Service {
  grpc::Status IssueCertificate(grpc::ServerContext* ctx, const rpci::v1::IssueCertificateRequest*,
                                rpci::v1::IssueCertificateResponse* resp) override {
    absl::StatusOr<PeerIdentity> id = GetPeerIdentity(*ctx);
    if (!id.ok()) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(id.status().message()));
    resp->set_certificate_pem(id->role + ":" + id->node);
    return grpc::Status::OK;
  }
};

class IdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::rpci::testing::MakeTempDir("identity");
    absl::StatusOr<CertAuthority> ca = CertAuthority::Create("rpci-ca");
    ASSERT_TRUE(ca.ok());
    ca_ = std::make_unique<CertAuthority>(*ca);
    ASSERT_TRUE(WriteCaFiles().ok());
    absl::StatusOr<TlsMaterial> controller = ca_->Issue("controller", {"localhost"}, {"127.0.0.1"});
    ASSERT_TRUE(controller.ok());
    controller_ = *controller;

    ASSERT_TRUE(api_.Start().ok());
    api_.CreateNamespace("rpci");
    kube::KubeConfig kc;
    kc.server = api_.url();
    absl::StatusOr<std::unique_ptr<kube::KubeClient>> client = kube::KubeClient::Create(kc);
    ASSERT_TRUE(client.ok()) << client.status();
    kube_ = *std::move(client);
    api_.Put("/api/v1/namespaces/rpci", json::object());
    AddPod("agent-a", "node-a", "10.0.0.7");
    AddPod("agent-b", "node-b", "10.0.0.8");
    api_.AddToken("token-agent-a", Token("rpci", "rpci-agent", "agent-a", "uid-agent-a", "node-a"));
    api_.AddToken("token-agent-b", Token("rpci", "rpci-agent", "agent-b", "uid-agent-b", "node-b"));

    StartServer(ServerOptions(absl::Hours(1)));
  }

  // The identity server on loopback with the CA SetUp wrote, issuing
  // certificates for `lifetime` to rpci-agent and rpci-plugin.
  IdentityOptions ServerOptions(absl::Duration lifetime) const {
    IdentityOptions o;
    o.listen = "127.0.0.1:0";
    o.ca_cert_file = dir_ + "/ca-signing.crt";
    o.ca_key_file = dir_ + "/ca-signing.key";
    o.issue.service_accounts = {{"agent", "rpci/rpci-agent"}, {"plugin", "rpci/rpci-plugin"}};
    o.issue.lifetime = lifetime;
    return o;
  }

  absl::Status WriteCaFiles() {
    std::ofstream(dir_ + "/ca.crt") << ca_->ca_pem();
    return ca_->WriteCa(dir_ + "/ca-signing.crt", dir_ + "/ca-signing.key");
  }

  void StartServer(const IdentityOptions& o) {
    server_.reset();
    absl::StatusOr<std::unique_ptr<IdentityServer>> server = IdentityServer::Create(o, kube_.get(), &metrics_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_TRUE(server_->Start(MakeServerCredentials(controller_, ClientCertPolicy::kRequestAndVerifyIfPresent)).ok());
  }

  void AddPod(const std::string& name, const std::string& node, const std::string& host_ip) {
    api_.Put("/api/v1/namespaces/rpci/pods/" + name,
             {{"metadata", {{"uid", "uid-" + name}}},
              {"spec", {{"nodeName", node}, {"serviceAccountName", "rpci-agent"}}},
              {"status", {{"hostIP", host_ip}, {"podIPs", json::array({{{"ip", host_ip}}})}}}});
  }

  NodeCertificateOptions Request(const std::string& token, const std::string& node) {
    std::string token_file = dir_ + "/token-" + token;
    std::ofstream(token_file) << token << "\n";
    NodeCertificateOptions o;
    o.identity_address = "127.0.0.1:" + std::to_string(server_->port());
    o.ca_file = dir_ + "/ca.crt";
    o.token_file = token_file;
    o.role = "agent";
    o.node = node;
    o.cert_dir = ::rpci::testing::MakeTempDir("cert-" + node);
    o.request_timeout = absl::Seconds(5);
    return o;
  }

  // A daemon's TLS settings asking the identity service as `r` does.
  static TlsSettings DaemonSettings(const NodeCertificateOptions& r) {
    TlsSettings settings;
    settings.identity_address = r.identity_address;
    settings.token_file = r.token_file;
    settings.ca_file = r.ca_file;
    settings.cert_dir = r.cert_dir;
    return settings;
  }

  // Requests a certificate with `o`: refused with `code`, saying `says`.
  void ExpectRefused(const NodeCertificateOptions& o, absl::StatusCode code, const std::string& says) {
    absl::Status s = RequestNodeCertificate(o).status();
    EXPECT_EQ(s.code(), code) << s;
    EXPECT_NE(s.message().find(says), std::string::npos) << s;
  }

  std::string dir_;
  std::unique_ptr<CertAuthority> ca_;
  TlsMaterial controller_;
  kubetest::ApiServer api_;
  std::unique_ptr<kube::KubeClient> kube_;
  MetricsRegistry metrics_;
  std::unique_ptr<IdentityServer> server_;
};

TEST_F(IdentityTest, AnAgentOnItsNodeGetsACertificateNamingItsNodeAndHostIp) {
  NodeCertificateOptions o = Request("token-agent-a", "node-a");
  o.ip_addresses = {"10.0.0.7"};
  absl::StatusOr<TlsMaterial> tls = RequestNodeCertificate(o);
  ASSERT_TRUE(tls.ok()) << tls.status();
  absl::StatusOr<CertificateInfo> info = ReadCertificateInfo(tls->cert_pem);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, "agent:node-a");
  EXPECT_LE(info->not_after, absl::Now() + absl::Hours(1) + absl::Seconds(5));
  EXPECT_EQ(tls->ca_pem, ca_->ca_pem());
  EXPECT_EQ(api_.token_reviews(), 1);
}

TEST_F(IdentityTest, AForgedTokenGetsNoCertificate) {
  std::ostringstream log;
  Logger::SetSink(&log);
  absl::Status s = RequestNodeCertificate(Request("forged-token", "node-a")).status();
  Logger::SetSink(&std::cerr);
  EXPECT_NE(log.str().find("node certificate refused"), std::string::npos) << log.str();
  EXPECT_EQ(log.str().find("forged-token"), std::string::npos) << "the token was logged: " << log.str();
  EXPECT_NE(metrics_.Render().find("rpci_identity_requests_total{result=\"bad_token\"} 1"), std::string::npos)
      << metrics_.Render();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnauthenticated) << s;
  EXPECT_NE(s.message().find("token not authenticated by the API server: [invalid bearer token"), std::string::npos)
      << s;
}

TEST_F(IdentityTest, AReviewTheControllerMayNotMakeIsUnavailableNotARefusal) {
  api_.Forbid("tokenreviews");
  ExpectRefused(Request("token-agent-a", "node-a"), absl::StatusCode::kUnavailable,
                "TokenReview failed: PERMISSION_DENIED");
}

TEST_F(IdentityTest, AnExpiredOrRevokedTokenGetsNoCertificate) {
  NodeCertificateOptions o = Request("token-agent-a", "node-a");
  api_.RemoveToken("token-agent-a");
  EXPECT_EQ(RequestNodeCertificate(o).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(IdentityTest, TheTokenOfAPodOnAnotherNodeGetsNoCertificate) {
  ExpectRefused(Request("token-agent-b", "node-a"), absl::StatusCode::kPermissionDenied,
                "runs on node \"node-b\", not on \"node-a\"");
}

TEST_F(IdentityTest, WithoutNodeClaimsThePodIsReadToFindItsNode) {
  // API servers before 1.30 put no node-name in the token's extra.
  api_.AddToken("old-token-agent-b", Token("rpci", "rpci-agent", "agent-b", "uid-agent-b", ""));
  ExpectRefused(Request("old-token-agent-b", "node-a"), absl::StatusCode::kPermissionDenied,
                "pod rpci/agent-b runs on node \"node-b\"");
  EXPECT_TRUE(RequestNodeCertificate(Request("old-token-agent-b", "node-b")).ok());
}

TEST_F(IdentityTest, ATokenOfARecreatedPodGetsNoCertificate) {
  api_.Delete("/api/v1/namespaces/rpci/pods/agent-a");
  ExpectRefused(Request("token-agent-a", "node-a"), absl::StatusCode::kPermissionDenied, "does not exist");
  api_.Put("/api/v1/namespaces/rpci/pods/agent-a",
           {{"metadata", {{"uid", "uid-agent-a-2"}}}, {"spec", {{"nodeName", "node-a"}}}, {"status", json::object()}});
  ExpectRefused(Request("token-agent-a", "node-a"), absl::StatusCode::kPermissionDenied, "uid differs");
}

TEST_F(IdentityTest, AnotherServiceAccountsTokenGetsNoAgentCertificate) {
  // A workload pod on node-a with a token for audience rpci.
  AddPod("workload", "node-a", "10.0.0.7");
  api_.AddToken("token-workload", Token("default", "app", "workload", "uid-workload", "node-a"));
  ExpectRefused(Request("token-workload", "node-a"), absl::StatusCode::kPermissionDenied,
                "ServiceAccount default/app may not hold a agent certificate");
}

TEST_F(IdentityTest, ATokenForAnotherAudienceGetsNoCertificate) {
  kubetest::ApiServer::ServiceAccountToken t = Token("rpci", "rpci-agent", "agent-a", "uid-agent-a", "node-a");
  t.audiences = {"https://kubernetes.default.svc.cluster.local"};
  api_.AddToken("api-token-agent-a", t);
  ExpectRefused(Request("api-token-agent-a", "node-a"), absl::StatusCode::kUnauthenticated,
                "is invalid for the target audiences [\"rpci\"]");
}

TEST_F(IdentityTest, ALegacyTokenBoundToNoPodGetsNoCertificate) {
  api_.AddToken("legacy", Token("rpci", "rpci-agent", "", "", ""));
  ExpectRefused(Request("legacy", "node-a"), absl::StatusCode::kPermissionDenied, "not bound to a pod");
}

TEST_F(IdentityTest, AnIpThatIsNotThePodsGetsNoCertificate) {
  NodeCertificateOptions o = Request("token-agent-a", "node-a");
  o.ip_addresses = {"10.0.0.8"};  // node-b's
  ExpectRefused(o, absl::StatusCode::kPermissionDenied, "IP 10.0.0.8 is not an address of pod rpci/agent-a");
}

TEST_F(IdentityTest, BadRolesNodeNamesAndRequestsAreRefused) {
  NodeCertificateOptions o = Request("token-agent-a", "node-a");
  o.role = "controller";
  EXPECT_EQ(RequestNodeCertificate(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Request("token-agent-a", "Node_A:x");
  EXPECT_EQ(RequestNodeCertificate(o).status().code(), absl::StatusCode::kInvalidArgument);

  rpci::v1::IssueCertificateRequest req;
  req.set_role("agent");
  req.set_node("node-a");
  req.set_token("token-agent-a");
  req.set_csr_pem("-----BEGIN CERTIFICATE REQUEST-----\ngarbage\n-----END CERTIFICATE REQUEST-----\n");
  auto creds = MakeCaOnlyChannelCredentials(dir_ + "/ca.crt");
  ASSERT_TRUE(creds.ok());
  auto stub = rpci::v1::NodeIdentity::NewStub(
      grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()), *creds));
  grpc::ClientContext ctx;
  rpci::v1::IssueCertificateResponse resp;
  grpc::Status s = stub->IssueCertificate(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_NE(s.error_message().find("not a PEM PKCS#10 request"), std::string::npos) << s.error_message();
}

TEST_F(IdentityTest, AControllerImpostorIsNotTrustedWithTheToken) {
  absl::StatusOr<CertAuthority> other = CertAuthority::Create("impostor-ca");
  ASSERT_TRUE(other.ok());
  NodeCertificateOptions o = Request("token-agent-a", "node-a");
  o.ca_file = dir_ + "/impostor-ca.crt";
  std::ofstream(o.ca_file) << other->ca_pem();
  absl::Status s = RequestNodeCertificate(o).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_EQ(api_.token_reviews(), 0);  // the handshake failed before the token was sent
}

// An mTLS server with the controller's certificate that requires client
// certificates, as the controller's registries do.
class MtlsPeer {
 public:
  explicit MtlsPeer(const TlsMaterial& tls) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", MakeServerCredentials(tls, ClientCertPolicy::kRequire), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~MtlsPeer() { server_->Shutdown(); }

  // A fresh channel each time, so each call is a new TLS handshake.
  absl::StatusOr<std::string> WhoAmI(std::shared_ptr<grpc::ChannelCredentials> creds) {
    auto stub = rpci::v1::NodeIdentity::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port_), creds));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    rpci::v1::IssueCertificateRequest req;
    rpci::v1::IssueCertificateResponse resp;
    grpc::Status s = stub->IssueCertificate(&ctx, req, &resp);
    if (!s.ok()) return FromGrpc(s);
    return resp.certificate_pem();
  }

 private:
  WhoAmIService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(IdentityTest, AnExpiredNodeCertificateIsRefusedByTheControllersMtls) {
  StartServer(ServerOptions(absl::Seconds(1)));
  absl::StatusOr<TlsMaterial> tls = RequestNodeCertificate(Request("token-agent-a", "node-a"));
  ASSERT_TRUE(tls.ok()) << tls.status();
  MtlsPeer peer(controller_);
  absl::StatusOr<std::string> fresh = peer.WhoAmI(MakeChannelCredentials(*tls));
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(*fresh, "agent:node-a");
  absl::SleepFor(absl::Seconds(2.5));
  absl::StatusOr<std::string> expired = peer.WhoAmI(MakeChannelCredentials(*tls));
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kUnavailable) << expired.status();
}

TEST_F(IdentityTest, ANodeCertificateIsRenewedBeforeExpiryWithoutRestart) {
  StartServer(ServerOptions(absl::Seconds(3)));
  TlsSettings settings = DaemonSettings(Request("token-agent-a", "node-a"));
  settings.reload_interval = absl::Seconds(1);
  absl::StatusOr<std::unique_ptr<DaemonTls>> daemon =
      DaemonTls::Start(settings, {"agent", "node-a", {"10.0.0.7"}}, Logger("agent"), absl::Seconds(10));
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  const CertificateInfo first = (*daemon)->renewer()->current();
  MtlsPeer peer(controller_);
  std::shared_ptr<grpc::ChannelCredentials> creds = (*daemon)->ChannelCredentials();
  ASSERT_TRUE(peer.WhoAmI(creds).ok());

  // Past the first certificate's end: the same credentials still connect,
  // with a certificate renewed in the background.
  absl::SleepFor(first.not_after + absl::Seconds(1.5) - absl::Now());
  absl::StatusOr<std::string> later = peer.WhoAmI(creds);
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_EQ(*later, "agent:node-a");
  EXPECT_GE((*daemon)->renewer()->renewals(), 1);
  EXPECT_GT((*daemon)->renewer()->current().not_after, first.not_after);
}

TEST_F(IdentityTest, ADaemonWithARefusedTokenDoesNotStart) {
  TlsSettings settings = DaemonSettings(Request("forged-token", "node-a"));
  absl::StatusOr<std::unique_ptr<DaemonTls>> daemon =
      DaemonTls::Start(settings, {"agent", "node-a", {}}, Logger("agent"), absl::Seconds(1));
  EXPECT_EQ(daemon.status().code(), absl::StatusCode::kUnauthenticated) << daemon.status();
}

TEST_F(IdentityTest, TheCaCertificateIsPublishedForNodesAndKeptCurrent) {
  IdentityOptions o = ServerOptions(absl::Hours(1));
  o.ca_bundle_configmap = "rpci/rpci-ca-bundle";
  StartServer(o);
  absl::Status published = server_->PublishCaBundle();
  ASSERT_TRUE(published.ok()) << published;
  absl::StatusOr<json> cm = api_.Get("/api/v1/namespaces/rpci/configmaps/rpci-ca-bundle");
  ASSERT_TRUE(cm.ok()) << cm.status();
  EXPECT_EQ((*cm)["data"]["ca.crt"], ca_->ca_pem());
  EXPECT_EQ((*cm)["data"].size(), 1u);  // the certificate only, never the key

  api_.Put("/api/v1/namespaces/rpci/configmaps/rpci-ca-bundle", {{"data", {{"ca.crt", "stale"}}}});
  ASSERT_TRUE(server_->PublishCaBundle().ok());
  EXPECT_EQ((*api_.Get("/api/v1/namespaces/rpci/configmaps/rpci-ca-bundle"))["data"]["ca.crt"], ca_->ca_pem());
}

TEST(ParseTokenReviewTest, AnythingButAnAuthenticatedServiceAccountForOurAudienceIsRefused) {
  for (const char* answer :
       {"null", "[]", R"({"status": []})", R"({"status": {"authenticated": "true"}})",
        R"({"status": {"authenticated": true}})", R"({"status": {"authenticated": true, "audiences": "rpci"}})",
        R"({"status": {"authenticated": true, "audiences": ["rpci"], "user": {"username": 7}}})",
        R"({"status": {"authenticated": true, "audiences": ["rpci"], "user": {"username": "alice"}}})",
        R"({"status": {"authenticated": true, "audiences": ["rpci"],
                       "user": {"username": "system:serviceaccount:ns:"}}})",
        R"({"status": {"error": ["not a string"]}})"}) {
    absl::StatusOr<ReviewedToken> t = ParseTokenReview(json::parse(answer), "rpci");
    EXPECT_EQ(t.status().code(), absl::StatusCode::kUnauthenticated) << answer;
  }
  absl::StatusOr<ReviewedToken> t = ParseTokenReview(
      json::parse(R"({"status": {"authenticated": true, "audiences": ["rpci"],
                    "user": {"username": "system:serviceaccount:rpci:rpci-agent",
                             "extra": {"authentication.kubernetes.io/pod-name": [3],
                                       "authentication.kubernetes.io/pod-uid": "u"}}}})"),
      "rpci");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->service_account, "rpci-agent");
  EXPECT_EQ(t->pod_name, "");  // malformed claims count as absent
  EXPECT_EQ(t->pod_uid, "");
}

TEST(IdentityServerTest, NeedsTheApiServerAndTheCa) {
  MetricsRegistry metrics;
  IdentityOptions o;
  o.listen = "127.0.0.1:0";
  EXPECT_NE(IdentityServer::Create(o, nullptr, &metrics).status().message().find("--store=kube"), std::string::npos);
}

}  // namespace
}  // namespace rpci::controller::identity
