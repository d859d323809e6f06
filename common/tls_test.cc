#include "common/tls.h"

#include <sys/stat.h>

#include <fstream>
#include <iostream>
#include <sstream>

#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "common/cert_authority.h"
#include "common/testing/temp_dir.h"
#include "common/tls_settings.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "third_party/kubelet/deviceplugin/v1beta1/api.grpc.pb.h"

namespace rpci {
namespace {

// A real gRPC service that records who called it.
class RecordingRegistration : public v1beta1::Registration::Service {
 public:
  grpc::Status Register(grpc::ServerContext* context, const v1beta1::RegisterRequest*,
                        v1beta1::Empty*) override {
    absl::StatusOr<PeerIdentity> id = GetPeerIdentity(*context);
    if (!id.ok()) return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(id.status().message()));
    role = id->role;
    node = id->node;
    return grpc::Status::OK;
  }
  std::string role, node;
};

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<CertAuthority> ca = CertAuthority::Create("rpci-test-ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::make_unique<CertAuthority>(*std::move(ca));
    absl::StatusOr<TlsMaterial> server = ca_->Issue("controller", {"localhost"}, {"127.0.0.1"});
    ASSERT_TRUE(server.ok()) << server.status();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", MakeServerCredentials(*server, Policy()), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override { server_->Shutdown(); }
  virtual ClientCertPolicy Policy() const { return ClientCertPolicy::kRequire; }

  grpc::Status Call(std::shared_ptr<grpc::ChannelCredentials> creds) {
    grpc::ChannelArguments args;
    args.SetSslTargetNameOverride("localhost");
    auto stub = v1beta1::Registration::NewStub(
        grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port_), creds, args));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1beta1::RegisterRequest req;
    v1beta1::Empty resp;
    return stub->Register(&ctx, req, &resp);
  }

  // A client with a "plugin:node-b" certificate from our CA gets through and
  // is named by it.
  void ExpectPluginNodeBIsIdentified() {
    absl::StatusOr<TlsMaterial> plugin = ca_->Issue("plugin:node-b", {}, {});
    ASSERT_TRUE(plugin.ok());
    grpc::Status s = Call(MakeChannelCredentials(*plugin));
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(service_.role, "plugin");
    EXPECT_EQ(service_.node, "node-b");
  }

  std::unique_ptr<CertAuthority> ca_;
  RecordingRegistration service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(TlsTest, ClientWithCertFromTheSameCaIsIdentifiedByRoleAndNode) { ExpectPluginNodeBIsIdentified(); }

TEST_F(TlsTest, ClientWithCertFromAnotherCaIsRefused) {
  absl::StatusOr<CertAuthority> other = CertAuthority::Create("intruder-ca");
  ASSERT_TRUE(other.ok());
  absl::StatusOr<TlsMaterial> intruder = other->Issue("plugin:node-b", {}, {});
  ASSERT_TRUE(intruder.ok());
  intruder->ca_pem = ca_->ca_pem();  // it trusts our server, but we don't trust it
  EXPECT_FALSE(Call(MakeChannelCredentials(*intruder)).ok());
  EXPECT_TRUE(service_.role.empty());
}

TEST_F(TlsTest, ClientWithoutCertIsRefused) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ca_->ca_pem();
  EXPECT_FALSE(Call(grpc::SslCredentials(options)).ok());
  EXPECT_TRUE(service_.role.empty());
}

// The agent's session server: plugins present a certificate, workloads only
// verify the server with the CA.
class OptionalClientCertTest : public TlsTest {
 protected:
  ClientCertPolicy Policy() const override { return ClientCertPolicy::kRequestAndVerifyIfPresent; }
};

TEST_F(OptionalClientCertTest, ClientWithCertIsIdentified) { ExpectPluginNodeBIsIdentified(); }

TEST_F(OptionalClientCertTest, ClientWithOnlyTheCaReachesTheServiceAnonymously) {
  std::string ca_file = testing::MakeTempDir("tls") + "/optional-ca.crt";
  std::ofstream(ca_file) << ca_->ca_pem();
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = MakeCaOnlyChannelCredentials(ca_file);
  ASSERT_TRUE(creds.ok()) << creds.status();
  grpc::Status s = Call(*creds);
  // The TLS handshake succeeded; the service itself saw no identity.
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_NE(s.error_message().find("no verified client certificate"), std::string::npos) << s.error_message();
}

TEST_F(OptionalClientCertTest, ClientWithCertFromAnotherCaIsStillRefused) {
  absl::StatusOr<CertAuthority> other = CertAuthority::Create("intruder-ca");
  ASSERT_TRUE(other.ok());
  absl::StatusOr<TlsMaterial> intruder = other->Issue("plugin:node-b", {}, {});
  ASSERT_TRUE(intruder.ok());
  intruder->ca_pem = ca_->ca_pem();
  grpc::Status s = Call(MakeChannelCredentials(*intruder));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_TRUE(service_.role.empty());
}

TEST_F(OptionalClientCertTest, AServerFromAnotherCaIsNotTrustedByACaOnlyClient) {
  absl::StatusOr<CertAuthority> other = CertAuthority::Create("other-ca");
  ASSERT_TRUE(other.ok());
  std::string ca_file = testing::MakeTempDir("tls") + "/other-ca.crt";
  std::ofstream(ca_file) << other->ca_pem();
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = MakeCaOnlyChannelCredentials(ca_file);
  ASSERT_TRUE(creds.ok()) << creds.status();
  EXPECT_EQ(Call(*creds).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST(MakeCaOnlyChannelCredentialsTest, ReportsMissingAndGarbageFiles) {
  std::string dir = testing::MakeTempDir("tls");
  EXPECT_EQ(MakeCaOnlyChannelCredentials(dir + "/absent.crt").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(MakeCaOnlyChannelCredentials("").status().code(), absl::StatusCode::kInvalidArgument);
  std::ofstream(dir + "/not-a-ca.crt") << "hello\n";
  absl::Status s = MakeCaOnlyChannelCredentials(dir + "/not-a-ca.crt").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("not-a-ca.crt"), std::string::npos) << s;
}

TEST(LoadTlsMaterialTest, ReportsMissingGarbageAndMismatchedFiles) {
  std::string dir = testing::MakeTempDir("tls");
  absl::StatusOr<CertAuthority> ca = CertAuthority::Create("ca");
  ASSERT_TRUE(ca.ok());
  absl::StatusOr<TlsMaterial> a = ca->Issue("agent:node-a", {}, {});
  absl::StatusOr<TlsMaterial> b = ca->Issue("agent:node-b", {}, {});
  ASSERT_TRUE(a.ok() && b.ok());
  absl::StatusOr<TlsFiles> files_a = CertAuthority::WriteFiles(*a, dir, "a");
  absl::StatusOr<TlsFiles> files_b = CertAuthority::WriteFiles(*b, dir, "b");
  ASSERT_TRUE(files_a.ok() && files_b.ok());

  absl::StatusOr<TlsMaterial> loaded = LoadTlsMaterial(*files_a);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ(loaded->common_name, "agent:node-a");

  TlsFiles missing = *files_a;
  missing.ca_file = dir + "/nope.crt";
  EXPECT_EQ(LoadTlsMaterial(missing).status().code(), absl::StatusCode::kNotFound);

  TlsFiles mismatched = *files_a;
  mismatched.key_file = files_b->key_file;
  absl::Status s = LoadTlsMaterial(mismatched).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("does not match"), std::string::npos) << s;

  std::ofstream(dir + "/garbage.crt") << "-----BEGIN CERTIFICATE-----\nnot base64\n";
  TlsFiles garbage = *files_a;
  garbage.cert_file = dir + "/garbage.crt";
  EXPECT_EQ(LoadTlsMaterial(garbage).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(TlsTest, ReloadingCredentialsUseARewrittenCertificateOnTheNextConnection) {
  const std::string dir = testing::MakeTempDir("reload");
  absl::StatusOr<TlsMaterial> first = ca_->Issue("plugin:node-b", {}, {});
  ASSERT_TRUE(first.ok());
  absl::StatusOr<TlsFiles> files = CertAuthority::WriteFiles(*first, dir, "tls");
  ASSERT_TRUE(files.ok());
  std::shared_ptr<grpc::ChannelCredentials> creds = MakeReloadingChannelCredentials(*files, absl::Seconds(1));
  ASSERT_TRUE(Call(creds).ok());
  EXPECT_EQ(service_.node, "node-b");

  absl::StatusOr<TlsMaterial> second = ca_->Issue("plugin:node-c", {}, {});
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(CertAuthority::WriteFiles(*second, dir, "tls").ok());
  absl::SleepFor(absl::Seconds(2.5));
  ASSERT_TRUE(Call(creds).ok());  // a new channel, the same credentials object
  EXPECT_EQ(service_.node, "node-c");
}

TEST(ReloadingCredentialsTest, AServerPresentsARewrittenCertificateWithoutRestart) {
  absl::StatusOr<CertAuthority> old_ca = CertAuthority::Create("old-ca");
  absl::StatusOr<CertAuthority> new_ca = CertAuthority::Create("new-ca");
  ASSERT_TRUE(old_ca.ok() && new_ca.ok());
  const std::string dir = testing::MakeTempDir("server-reload");
  absl::StatusOr<TlsMaterial> first = old_ca->Issue("controller", {"localhost"}, {"127.0.0.1"});
  ASSERT_TRUE(first.ok());
  absl::StatusOr<TlsFiles> files = CertAuthority::WriteFiles(*first, dir, "server");
  ASSERT_TRUE(files.ok());
  RecordingRegistration service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0",
                           MakeReloadingServerCredentials(*files, ClientCertPolicy::kRequestAndVerifyIfPresent,
                                                          absl::Seconds(1)),
                           &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> srv = builder.BuildAndStart();
  ASSERT_NE(srv, nullptr);
  auto trusting = [&](const CertAuthority& ca) {
    const std::string ca_file = dir + "/trust-" + std::to_string(reinterpret_cast<uintptr_t>(&ca)) + ".crt";
    std::ofstream(ca_file) << ca.ca_pem();
    auto stub = v1beta1::Registration::NewStub(
        grpc::CreateChannel("127.0.0.1:" + std::to_string(port), *MakeCaOnlyChannelCredentials(ca_file)));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    v1beta1::RegisterRequest req;
    v1beta1::Empty resp;
    return stub->Register(&ctx, req, &resp).error_code();
  };
  // Reaching the service (which wants a client certificate) means the TLS
  // handshake, and so the server's certificate, was accepted.
  EXPECT_EQ(trusting(*old_ca), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(trusting(*new_ca), grpc::StatusCode::UNAVAILABLE);

  absl::StatusOr<TlsMaterial> second = new_ca->Issue("controller", {"localhost"}, {"127.0.0.1"});
  ASSERT_TRUE(second.ok());
  ASSERT_TRUE(CertAuthority::WriteFiles(*second, dir, "server").ok());
  absl::SleepFor(absl::Seconds(2.5));
  EXPECT_EQ(trusting(*new_ca), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(trusting(*old_ca), grpc::StatusCode::UNAVAILABLE);
  srv->Shutdown();
}

TEST(ReloadingCredentialsTest, AServerWhoseCertificateDoesNotNameTheAddressIsRefused) {
  absl::StatusOr<CertAuthority> ca = CertAuthority::Create("ca");
  ASSERT_TRUE(ca.ok());
  const std::string dir = testing::MakeTempDir("hostname");
  absl::StatusOr<TlsMaterial> server = ca->Issue("agent:node-a", {"node-a"}, {"10.9.9.9"});  // not 127.0.0.1
  absl::StatusOr<TlsMaterial> client = ca->Issue("plugin:node-b", {}, {});
  ASSERT_TRUE(server.ok() && client.ok());
  absl::StatusOr<TlsFiles> client_files = CertAuthority::WriteFiles(*client, dir, "client");
  ASSERT_TRUE(client_files.ok());
  RecordingRegistration service;
  int port = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", MakeServerCredentials(*server, ClientCertPolicy::kRequire), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> srv = builder.BuildAndStart();
  ASSERT_NE(srv, nullptr);
  auto stub = v1beta1::Registration::NewStub(grpc::CreateChannel(
      "127.0.0.1:" + std::to_string(port), MakeReloadingChannelCredentials(*client_files, absl::Seconds(10))));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1beta1::RegisterRequest req;
  v1beta1::Empty resp;
  EXPECT_EQ(stub->Register(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(service.role.empty());
  srv->Shutdown();
}

TEST(TlsSettingsTest, NothingConfiguredIsRefusedNamingTheWaysOut) {
  absl::Status s = ValidateTlsSettings(TlsSettings{}, /*node_identity=*/true);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("refusing to run without peer authentication"), std::string::npos) << s;
  EXPECT_NE(s.message().find("insecure"), std::string::npos) << s;
  EXPECT_NE(s.message().find("token-file"), std::string::npos) << s;
  EXPECT_EQ(ValidateTlsSettings(TlsSettings{}, false).message().find("token-file"), std::string::npos);
}

TEST(TlsSettingsTest, ExactlyOneWayIsAccepted) {
  TlsSettings insecure;
  insecure.insecure = true;
  EXPECT_TRUE(ValidateTlsSettings(insecure, true).ok());
  TlsSettings files;
  files.cert_file = "c.crt";
  files.key_file = "c.key";
  files.ca_file = "ca.crt";
  EXPECT_TRUE(ValidateTlsSettings(files, false).ok());
  TlsSettings identity;
  identity.ca_file = "ca.crt";
  identity.identity_address = "ctl:7402";
  identity.token_file = "/var/run/secrets/rpci/token";
  identity.cert_dir = "/run/rpci/tls";
  EXPECT_TRUE(ValidateTlsSettings(identity, true).ok());
  EXPECT_FALSE(ValidateTlsSettings(identity, /*node_identity=*/false).ok());  // the controller signs its own

  TlsSettings both = files;
  both.insecure = true;
  EXPECT_NE(ValidateTlsSettings(both, true).message().find("choose one"), std::string::npos);
  TlsSettings partial = files;
  partial.key_file.clear();
  EXPECT_NE(ValidateTlsSettings(partial, true).message().find("all required"), std::string::npos);
  TlsSettings mixed = identity;
  mixed.cert_file = "c.crt";
  EXPECT_NE(ValidateTlsSettings(mixed, true).message().find("choose one"), std::string::npos);
}

TEST(DaemonTlsTest, InsecureIsWarnedAtStart) {
  std::ostringstream sink;
  Logger::SetSink(&sink);
  TlsSettings s;
  s.insecure = true;
  absl::StatusOr<std::unique_ptr<DaemonTls>> tls = DaemonTls::Start(s, {}, Logger("test"));
  Logger::SetSink(&std::cerr);
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_TRUE((*tls)->insecure());
  EXPECT_NE(sink.str().find("\"level\":\"warn\""), std::string::npos) << sink.str();
  EXPECT_NE(sink.str().find("WITHOUT TLS"), std::string::npos) << sink.str();
}

// A PKCS#10 request for `cn` with an RSA key of `bits`, via OpenSSL directly.
std::string RsaRequest(const std::string& cn, int bits) {
  EVP_PKEY* key = EVP_RSA_gen(bits);
  X509_REQ* req = X509_REQ_new();
  X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_REQ_set_pubkey(req, key);
  X509_REQ_sign(req, key, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509_REQ(bio, req);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string pem(data, len);
  BIO_free(bio);
  X509_REQ_free(req);
  EVP_PKEY_free(key);
  return pem;
}

TEST(CertAuthorityTest, SignsARequestAsTheCaSaysNotAsTheRequestSays) {
  absl::StatusOr<CertAuthority> ca = CertAuthority::Create("ca");
  ASSERT_TRUE(ca.ok());
  absl::StatusOr<CertificateRequest> req = NewCertificateRequest("controller");  // asks for more than it gets
  ASSERT_TRUE(req.ok());
  absl::StatusOr<std::string> cert = ca->SignRequest(req->csr_pem, "agent:node-a", {"node-a"}, {}, absl::Minutes(5));
  ASSERT_TRUE(cert.ok()) << cert.status();
  absl::StatusOr<CertificateInfo> info = ReadCertificateInfo(*cert);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->common_name, "agent:node-a");
  EXPECT_LE(info->not_after, absl::Now() + absl::Minutes(5) + absl::Seconds(2));
  TlsMaterial tls{*cert, req->key_pem, ca->ca_pem(), ""};
  const std::string dir = testing::MakeTempDir("signed");
  absl::StatusOr<TlsFiles> files = CertAuthority::WriteFiles(tls, dir, "node");
  ASSERT_TRUE(files.ok());
  EXPECT_TRUE(LoadTlsMaterial(*files).ok()) << "the key made with the request matches the certificate";
}

TEST(CertAuthorityTest, RefusesGarbageWeakKeysAndTamperedRequests) {
  absl::StatusOr<CertAuthority> ca = CertAuthority::Create("ca");
  ASSERT_TRUE(ca.ok());
  EXPECT_EQ(ca->SignRequest("hello", "agent:a", {}, {}, absl::Hours(1)).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status weak = ca->SignRequest(RsaRequest("x", 1024), "agent:a", {}, {}, absl::Hours(1)).status();
  EXPECT_NE(weak.message().find("key must be EC"), std::string::npos) << weak;
  EXPECT_TRUE(ca->SignRequest(RsaRequest("x", 2048), "agent:a", {}, {}, absl::Hours(1)).ok());
  // Another request's key under this one's signature.
  absl::StatusOr<CertificateRequest> a = NewCertificateRequest("a");
  ASSERT_TRUE(a.ok());
  std::string tampered = a->csr_pem;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(ca->SignRequest(tampered, "agent:a", {}, {}, absl::Hours(1)).ok());
  EXPECT_EQ(CertAuthority::Load("/nonexistent/ca.crt", "/nonexistent/ca.key").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(ParsePeerIdentityTest, AcceptsRoleAndOptionalNode) {
  EXPECT_EQ(ParsePeerIdentity("controller")->role, "controller");
  EXPECT_EQ(ParsePeerIdentity("agent:n1")->node, "n1");
  EXPECT_FALSE(ParsePeerIdentity("agent:").ok());
  EXPECT_FALSE(ParsePeerIdentity(":n1").ok());
}

}  // namespace
}  // namespace rpci
