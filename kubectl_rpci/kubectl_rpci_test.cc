#include "kubectl_rpci/kubectl_rpci.h"

#include <sys/stat.h>

#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "controller/controller_app.h"
#include "controller/kube_store.h"
#include "controller/testing/kube_options.h"
#include "controller/testing/registrations.h"
#include "grpcpp/grpcpp.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/rpci/v1/controller.grpc.pb.h"
#include "tests/kube/api_server.h"

namespace rpci::kubectl {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using nlohmann::json;
using rpci::controller::testing::WaitFor;
using rpci::controller::testing::AgentWith;
using rpci::controller::testing::ClaimOf;
using rpci::controller::testing::KubeStoreOptions;
using rpci::controller::testing::MakeTempDir;
using rpci::controller::testing::NodeWith;

constexpr char kToken[] = "s3cret-token";
constexpr char kAttached[] = "dev-a-0000-3b-00-0";

std::string WriteKubeconfig(const std::string& dir, const std::string& server, const std::string& token) {
  const std::string path = dir + "/config";
  std::ofstream(path) << "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
                      << "contexts:\n- name: test\n  context: {cluster: c, user: u}\n"
                      << "- name: other\n  context: {cluster: elsewhere, user: u}\n"
                      << "clusters:\n- name: c\n  cluster: {server: \"" << server << "\"}\n"
                      << "- name: elsewhere\n  cluster: {server: \"http://127.0.0.1:9\"}\n"
                      << "users:\n- name: u\n  user: {token: \"" << token << "\"}\n";
  return path;
}

struct Result {
  int code = -1;
  std::string out, err;
};

// A cluster: the test API server, a real controller on it, one device server
// (dev-a, 2 emu devices), one compute node (cn-1) and a pod using one device.
class KubectlRpciTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kError);
    ASSERT_TRUE(api_.Start().ok());
    api_.RequireToken(kToken);
    api_.Put("/apis/rpci.io/v1alpha1/devicepools/emu",
             {{"apiVersion", "rpci.io/v1alpha1"},
              {"kind", "DevicePool"},
              {"metadata", {{"name", "emu"}, {"creationTimestamp", "2024-01-01T00:00:00Z"}}},
              {"spec", {{"sparesPerNode", 1}, {"idleReleaseSeconds", 600}}}});
    dir_ = MakeTempDir("kubectl");
    kubeconfig_ = WriteKubeconfig(dir_, api_.url(), kToken);

    controller::ControllerOptions o = KubeStoreOptions(api_.url());
    o.kube_config->token = kToken;
    o.identity = "ctrl";
    o.tls.insecure = true;
    o.retry_period = absl::Milliseconds(200);
    o.reconcile_interval = absl::Milliseconds(100);
    auto app = controller::ControllerApp::Create(o);
    ASSERT_TRUE(app.ok()) << app.status();
    app_ = *std::move(app);
    ASSERT_TRUE(app_->Start().ok());
    ASSERT_TRUE(WaitFor([&] { return app_->acting(); }));
    auto channel =
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", app_->grpc_port()), grpc::InsecureChannelCredentials());
    agents_ = rpci::v1::AgentRegistry::NewStub(channel);
    nodes_ = rpci::v1::NodeRegistry::NewStub(channel);
    {
      grpc::ClientContext ctx;
      rpci::v1::RegisterResponse resp;
      rpci::v1::RegisterAgentRequest req = AgentWith("dev-a", "emu", 2);
      rpci::v1::PcieFunction* f = req.mutable_devices(0)->mutable_function();
      f->set_vendor_id(0x1af4);
      f->set_device_id(0x10f0);
      f->set_vendor_name("Red Hat, Inc.");
      f->set_device_name("rpci-emu");
      ASSERT_TRUE(agents_->RegisterAgent(&ctx, req, &resp).ok());
    }
    {
      grpc::ClientContext ctx;
      rpci::v1::RegisterResponse resp;
      ASSERT_TRUE(nodes_->RegisterNode(&ctx, NodeWith("cn-1", "emu"), &resp).ok());
    }
    ASSERT_TRUE(WaitFor([&] { return app_->manager().GetDevice(kAttached)->assigned_node == "cn-1"; }));
    ASSERT_TRUE(Claim(kAttached).ok());
    // The controller has written the attachment and posted its events.
    ASSERT_TRUE(WaitFor([&] { return Status(kAttached).value("phase", "") == "Attached"; }));
    ASSERT_TRUE(WaitFor([&] { return Status("dev-a-0000-3b-00-1").value("phase", "") == "Assigned"; }))
        << "a new spare replaces the claimed one";
  }

  void TearDown() override {
    if (app_) app_->Stop();
  }

  grpc::Status Claim(const std::string& device) {
    grpc::ClientContext ctx;
    rpci::v1::ClaimResponse resp;
    grpc::Status s = nodes_->Claim(&ctx, ClaimOf("cn-1", device, "trainer", "team-a"), &resp);
    if (s.ok()) grant_ = resp.grant().grant_id();
    return s;
  }

  grpc::Status Release(const std::string& device) {
    grpc::ClientContext ctx;
    rpci::v1::ReleaseRequest req;
    req.set_node("cn-1");
    req.set_device_id(device);
    rpci::v1::ReleaseResponse resp;
    return nodes_->Release(&ctx, req, &resp);
  }

  json Status(const std::string& device) {
    absl::StatusOr<json> d = api_.Get(absl::StrCat(controller::KubeStore::kDevicesPath, "/", device));
    return d.ok() ? d->value("status", json::object()) : json::object();
  }

  Result Kubectl(std::vector<std::string> args) {
    args.push_back("--kubeconfig=" + kubeconfig_);
    return KubectlWithEnv(args, env_);
  }

  static Result KubectlWithEnv(const std::vector<std::string>& args, const CliEnv& env) {
    std::ostringstream out, err;
    Result r;
    r.code = kubectl::Run(args, out, err, env);
    r.out = out.str();
    r.err = err.str();
    return r;
  }

  // The row of `table` whose first cell is `first`, split on runs of spaces.
  static std::vector<std::string> Row(const std::string& table, const std::string& first) {
    for (absl::string_view line : absl::StrSplit(table, '\n')) {
      std::vector<std::string> cells = absl::StrSplit(line, "   ", absl::SkipEmpty());
      for (auto& c : cells) c = std::string(absl::StripAsciiWhitespace(c));
      if (!cells.empty() && cells[0] == first) return cells;
    }
    return {};
  }

  kubetest::ApiServer api_;
  std::string dir_, kubeconfig_, grant_;
  CliEnv env_{"", "", absl::Milliseconds(50)};
  std::unique_ptr<controller::ControllerApp> app_;
  std::unique_ptr<rpci::v1::AgentRegistry::Stub> agents_;
  std::unique_ptr<rpci::v1::NodeRegistry::Stub> nodes_;
};

TEST_F(KubectlRpciTest, DevicesTableShowsWhereEachDeviceIsAndWhoUsesIt) {
  Result r = Kubectl({"devices"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u) << r.out;
  EXPECT_EQ(Row(r.out, "NAME"), (std::vector<std::string>{"NAME", "NODE", "BDF", "DEVICE", "POOL", "PHASE", "HEALTH",
                                                          "ASSIGNED", "POD", "AGE"}));
  std::vector<std::string> row = Row(r.out, kAttached);
  ASSERT_EQ(row.size(), 10u) << r.out;
  EXPECT_EQ(row[1], "dev-a");
  EXPECT_EQ(row[2], "0000:3b:00.0");
  EXPECT_EQ(row[3], "Red Hat, Inc. rpci-emu");
  EXPECT_EQ(row[4], "emu");
  EXPECT_EQ(row[5], "Attached");
  EXPECT_EQ(row[6], "Healthy");
  EXPECT_EQ(row[7], "cn-1");
  EXPECT_EQ(row[8], "team-a/trainer");
  // Aligned: every column starts at the same offset on every line.
  const size_t pool_col = lines[0].find("POOL");
  for (const std::string& l : lines) {
    EXPECT_TRUE(l.compare(pool_col, 4, "POOL") == 0 || l.compare(pool_col, 4, "emu ") == 0) << l;
    EXPECT_EQ(l[pool_col - 1], ' ') << l;
  }
  std::vector<std::string> spare = Row(r.out, "dev-a-0000-3b-00-1");
  ASSERT_EQ(spare.size(), 10u);
  EXPECT_EQ(spare[3], "0000:0000") << "unnamed: vendor:device ids";
  EXPECT_EQ(spare[5], "Assigned");
  EXPECT_EQ(spare[8], "<none>");
}

TEST_F(KubectlRpciTest, PoolsTableCountsDevicesByPhase) {
  Result r = Kubectl({"pools"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Row(r.out, "emu"), (std::vector<std::string>{"emu", "rpci.io/emu", "1", "unlimited", "600s", "none",
                                                         "2", "0", "1", "1", "0", Row(r.out, "emu").back()}));
}

TEST_F(KubectlRpciTest, AttachmentsTableShowsThePodsSessions) {
  Result r = Kubectl({"attachments"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Row(r.out, "NAME"), (std::vector<std::string>{"NAME", "DEVICE", "NODE", "POD", "CONTAINER", "STATE",
                                                          "SESSION", "WRITES", "BYTES-IN", "BYTES-OUT", "AGE"}));
  std::vector<std::string> row = Row(r.out, grant_);
  ASSERT_GE(row.size(), 6u) << r.out;
  EXPECT_EQ(row[1], kAttached);
  EXPECT_EQ(row[2], "cn-1");
  EXPECT_EQ(row[3], "team-a/trainer");
  EXPECT_EQ(row[4], "main");
  EXPECT_EQ(row[5], "Attached");
  Result other = Kubectl({"attachments", "--namespace=team-b"});
  ASSERT_EQ(other.code, 0);
  EXPECT_TRUE(Row(other.out, grant_).empty()) << other.out;
}

// A read-only viewer: no Secrets (where grant tokens are) is all it takes
// for every command to work; without deviceattachments the devices table
// leaves the POD column out and says so.
TEST_F(KubectlRpciTest, ViewersWithoutSecretOrAttachmentAccessGetAWorkingCommand) {
  api_.Forbid("/secrets");
  for (const char* command : {"devices", "pools", "attachments"}) {
    Result r = Kubectl({command});
    EXPECT_EQ(r.code, 0) << command << ": " << r.err;
  }
  EXPECT_EQ(Kubectl({"describe", kAttached}).code, 0);
  api_.Forbid("/deviceattachments");
  Result r = Kubectl({"devices"});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(Row(r.out, "NAME"), (std::vector<std::string>{"NAME", "NODE", "BDF", "DEVICE", "POOL", "PHASE", "HEALTH",
                                                          "ASSIGNED", "AGE"}));
  EXPECT_EQ(Row(r.out, kAttached).size(), 9u) << r.out;
  EXPECT_THAT(r.err, HasSubstr("POD column left out"));
  Result describe = Kubectl({"describe", kAttached});
  EXPECT_EQ(describe.code, 0) << describe.err;
  EXPECT_THAT(describe.err, HasSubstr("left out"));
}

TEST_F(KubectlRpciTest, DescribeShowsSpecStatusConditionsAndEvents) {
  ASSERT_TRUE(WaitFor([&] { return Kubectl({"describe", kAttached}).out.find("Claimed") != std::string::npos; }))
      << "the attach event never showed up";
  Result r = Kubectl({"describe", kAttached});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Name:"));
  EXPECT_EQ(Row(r.out, "Phase:"), (std::vector<std::string>{"Phase:", "Attached"})) << r.out;
  EXPECT_EQ(Row(r.out, "BDF:"), (std::vector<std::string>{"BDF:", "0000:3b:00.0"}));
  EXPECT_EQ(Row(r.out, "Device:"), (std::vector<std::string>{"Device:", "Red Hat, Inc. rpci-emu [1af4:10f0]"}));
  EXPECT_EQ(Row(r.out, "Assigned node:"), (std::vector<std::string>{"Assigned node:", "cn-1"}));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat(grant_, " (pod team-a/trainer, container main")));
  std::vector<std::string> healthy = Row(r.out, "Healthy");
  ASSERT_GE(healthy.size(), 2u) << r.out;
  EXPECT_EQ(healthy[1], "True");
  EXPECT_THAT(r.out, HasSubstr("Events:"));
  EXPECT_THAT(r.out, HasSubstr("Spare"));  // the assign event's reason
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("attach ", kAttached, " node cn-1")));
  EXPECT_THAT(r.out, Not(HasSubstr("dev-a-0000-3b-00-1 node"))) << "another device's events";
}

TEST_F(KubectlRpciTest, DrainWaitsForTheDetachThenReportsDrained) {
  Result r;
  std::thread drain([&] { r = Kubectl({"drain", kAttached, "--timeout=20s"}); });
  // The controller honours the request while the pod still holds the device.
  ASSERT_TRUE(WaitFor([&] { return Status(kAttached).value("phase", "") == "Draining"; }));
  EXPECT_EQ(Status(kAttached).value("attachment", ""), grant_);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE(Release(kAttached).ok());  // the plugin detaches
  drain.join();
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("marked for draining"));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("waiting for the pod to let go: attachment ", grant_, " on node cn-1")));
  EXPECT_THAT(r.out, HasSubstr(absl::StrCat("device ", kAttached, " drained")));
  EXPECT_EQ(Status(kAttached).value("assignedNode", "x"), "");
  // Nobody gets it while drained; undrain puts it back.
  EXPECT_EQ(Claim(kAttached).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  Result undo = Kubectl({"undrain", kAttached});
  ASSERT_EQ(undo.code, 0) << undo.err;
  EXPECT_TRUE(WaitFor([&] { return Status(kAttached).value("phase", "") != "Draining"; }));
}

TEST_F(KubectlRpciTest, DrainTimesOutNamingWhatHoldsTheDevice) {
  Result r = Kubectl({"drain", kAttached, "--timeout=1s"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("not drained after 1s"));
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("attachment ", grant_)));
  EXPECT_THAT(r.err, HasSubstr("kubectl rpci undrain"));
}

TEST_F(KubectlRpciTest, UnknownDeviceIsAClearError) {
  for (const char* command : {"describe", "drain", "undrain"}) {
    Result r = Kubectl({command, "no-such-device"});
    EXPECT_EQ(r.code, 1) << command;
    EXPECT_THAT(r.err, HasSubstr("device \"no-such-device\" not found")) << command;
  }
}

TEST_F(KubectlRpciTest, ForbiddenIsReportedWithTheRbacHint) {
  api_.Forbid("/pciedevices");
  Result r = Kubectl({"devices"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("forbidden"));
  EXPECT_THAT(r.err, HasSubstr("HTTP 403"));
  EXPECT_THAT(r.err, HasSubstr("pciedevices"));
  Result drain = Kubectl({"drain", kAttached});
  EXPECT_EQ(drain.code, 1);
  EXPECT_THAT(drain.err, HasSubstr("HTTP 403"));
}

TEST_F(KubectlRpciTest, WrongTokenIsUnauthorized) {
  const std::string bad = WriteKubeconfig(MakeTempDir("badtoken"), api_.url(), "wrong");
  Result r = KubectlWithEnv({"pools", "--kubeconfig=" + bad}, env_);
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("unauthorized"));
}

TEST_F(KubectlRpciTest, KubeconfigComesFromKubeconfigEnvThenHomeAndContextPicksTheCluster) {
  CliEnv env = env_;
  env.kubeconfig_env = "/nonexistent/a:" + kubeconfig_;
  EXPECT_EQ(KubectlWithEnv({"devices"}, env).code, 0);
  // --context=other points at a closed port.
  Result other = KubectlWithEnv({"devices", "--context=other"}, env);
  EXPECT_EQ(other.code, 1);
  EXPECT_THAT(other.err, HasSubstr("cannot reach the API server at http://127.0.0.1:9"));
  const std::string home = MakeTempDir("home");
  ASSERT_EQ(mkdir((home + "/.kube").c_str(), 0700), 0);
  WriteKubeconfig(home + "/.kube", api_.url(), kToken);
  EXPECT_EQ(KubectlWithEnv({"pools"}, CliEnv{"", home, absl::Milliseconds(50)}).code, 0);
  Result none = KubectlWithEnv({"pools"}, CliEnv{"/nonexistent/x", "/nonexistent-home", absl::Milliseconds(50)});
  EXPECT_EQ(none.code, 1);
  EXPECT_THAT(none.err, HasSubstr("/nonexistent/x, /nonexistent-home/.kube/config"));
}

TEST(KubectlRpciUsageTest, BadUsageIsExitTwoAndHelpIsExitZero) {
  CliEnv env;
  std::ostringstream out, err;
  EXPECT_EQ(kubectl::Run({"--help"}, out, err, env), 0);
  EXPECT_THAT(out.str(), HasSubstr("drain <device>"));
  EXPECT_EQ(kubectl::Run({}, out, err, env), 2);
  EXPECT_EQ(kubectl::Run({"frobnicate"}, out, err, env), 2);
  EXPECT_EQ(kubectl::Run({"describe"}, out, err, env), 2);
  EXPECT_EQ(kubectl::Run({"devices", "extra"}, out, err, env), 2);
  EXPECT_EQ(kubectl::Run({"drain", "d", "--timeout=soon"}, out, err, env), 2);
  EXPECT_EQ(kubectl::Run({"devices", "--no-such-flag"}, out, err, env), 2);
}

TEST(KubectlRpciFormatTest, AgeReadsLikeKubectl) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  auto ago = [&](absl::Duration d) { return controller::FormatKubeTime(now - d); };
  EXPECT_EQ(Age(ago(absl::Seconds(45)), now), "45s");
  EXPECT_EQ(Age(ago(absl::Minutes(12)), now), "12m");
  EXPECT_EQ(Age(ago(absl::Hours(5)), now), "5h");
  EXPECT_EQ(Age(ago(absl::Hours(24 * 3)), now), "3d");
  EXPECT_EQ(Age("", now), "<unknown>");
  EXPECT_EQ(Age("yesterday", now), "<unknown>");
}

}  // namespace
}  // namespace rpci::kubectl
