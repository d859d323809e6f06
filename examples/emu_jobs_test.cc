// The example workload end to end on loopback: a real session server
// exporting rpci-emu, a session reserved as the plugin does, and the
// emu_jobs binary started with the container environment the plugin gives.
#include <stdlib.h>

#include <filesystem>

#include "agent/backends/emu_backend.h"
#include "agent/session/testing/test_device.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "librpci/testing/loopback_agent.h"
#include "nlohmann/json.hpp"
#include "tests/harness/subprocess.h"

namespace rpci {
namespace {

class EmuJobsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("rpci-ex", testing::TempDirUse::kSockets);
    auto backend = agent::EmuBackend::Create(4 << 20);
    ASSERT_TRUE(backend.ok()) << backend.status();
    emu_ = std::move(*backend);
    auto a = lib::testing::LoopbackAgent::Start({{"emu0", emu_.get()}, {"plain0", &plain_}});
    ASSERT_TRUE(a.ok()) << a.status();
    agent_ = std::move(*a);
  }
  void TearDown() override {
    agent_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  int RunExample(const std::map<std::string, std::string>& env, const std::vector<std::string>& args = {}) {
    std::vector<std::string> argv = {"examples/emu_jobs"};
    argv.insert(argv.end(), args.begin(), args.end());
    testing::Subprocess p(argv, dir_ + "/out", dir_ + "/err", env);
    const int rc = p.Wait(absl::Seconds(60));
    out_ = p.out();
    err_ = p.err();
    return rc;
  }

  std::string dir_, out_, err_;
  std::unique_ptr<agent::EmuBackend> emu_;
  agent::testing::TestDevice plain_;
  std::unique_ptr<lib::testing::LoopbackAgent> agent_;
};

TEST_F(EmuJobsTest, CopyAndCrc32cJobsOnEmuMatchLocalResults) {
  auto env = agent_->ReserveEnv({"emu0"});
  ASSERT_TRUE(env.ok()) << env.status();
  ASSERT_EQ(RunExample(*env, {"--rounds=4"}), 0) << err_;
  nlohmann::json summary = nlohmann::json::parse(out_, nullptr, false);
  ASSERT_FALSE(summary.is_discarded()) << out_;
  EXPECT_TRUE(summary["ok"].get<bool>());
  EXPECT_EQ(summary["device"], "emu0");
  EXPECT_EQ(summary["jobs"].get<int>(), 12);
  EXPECT_GT(summary["mb_per_s"].get<double>(), 0);
  EXPECT_EQ(summary["bytes"].get<uint64_t>(), 2u * (4096 + 12345 + 65536 + (1 << 20)));
  // The example's close detaches: the session belongs to the pod's
  // allocation, and a second run (a restarted container) attaches again.
  EXPECT_EQ(agent_->server().live_sessions(), 1u);
  ASSERT_EQ(RunExample(*env, {"--rounds=2"}), 0) << err_;
  EXPECT_EQ(agent_->server().live_sessions(), 1u);
}

TEST_F(EmuJobsTest, ADeviceThatIsNotEmuIsReportedAndFails) {
  auto env = agent_->ReserveEnv({"plain0"});
  ASSERT_TRUE(env.ok()) << env.status();
  EXPECT_EQ(RunExample(*env), 1);
  EXPECT_NE(err_.find("not an rpci-emu device"), std::string::npos) << err_;
}

TEST_F(EmuJobsTest, WithoutAnAttachedDeviceTheExampleNamesWhatIsMissing) {
  EXPECT_EQ(RunExample({{"RPCI_DEVICE_COUNT", "1"}}), 1);
  EXPECT_NE(err_.find("RPCI_0_SESSION_ENDPOINT"), std::string::npos) << err_;
}

}  // namespace
}  // namespace rpci
