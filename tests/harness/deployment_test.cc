#include "tests/harness/deployment.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"

namespace rpci::testing {
namespace {

TEST(DeploymentDirTest, CreatesEveryDaemonsFolderAndKeepsEachProcesssOutput) {
  DeploymentDir deploy(MakeTempDir("deployment") + "/run");
  ASSERT_TRUE(deploy.Create().ok());
  for (const char* d : {"controller", "agent", "kubelet", "plugin-state", "container", "cdi", "logs"}) {
    EXPECT_TRUE(std::filesystem::is_directory(deploy.root() + "/" + d)) << d;
  }
  std::unique_ptr<Subprocess> p = deploy.Start("talker", {"sh", "-c", "echo out; echo err >&2"});
  ASSERT_EQ(p->Wait(absl::Seconds(10)), 0);
  EXPECT_EQ(ReadWholeFile(deploy.root() + "/logs/talker.out"), "out\n");
  EXPECT_EQ(deploy.Logs({"talker"}), "--- talker.err:\nerr\n");
  EXPECT_EQ(deploy.Logs(), "--- talker.err:\nerr\n--- talker.out:\nout\n");
}

TEST(DeploymentDirTest, DaemonsAreToldTheFoldersOfTheirDeployment) {
  DeploymentDir deploy("/run/x");
  std::vector<std::string> controller = deploy.LocalController("10.0.0.1:7460", "10.0.0.1:7461", "warn");
  EXPECT_EQ(controller[0], Runfile("controller/rpci-controller"));
  EXPECT_NE(std::find(controller.begin(), controller.end(), "--state-dir=/run/x/controller"), controller.end());
  std::vector<std::string> plugin = deploy.Plugin("cn-1", "10.0.0.1:7460", "emu,edu", "info");
  for (const char* flag : {"--node=cn-1", "--pools=emu,edu", "--plugin-dir=/run/x/kubelet",
                           "--pod-resources-socket=/run/x/kubelet/pod-resources.sock", "--cdi-dir=/run/x/cdi"}) {
    EXPECT_NE(std::find(plugin.begin(), plugin.end(), flag), plugin.end()) << flag;
  }
  std::vector<std::string> kubelet = deploy.Kubelet("ns/pod", "rpci.io/emu", 30, {"/bin/job", "--rounds=2"});
  ASSERT_GE(kubelet.size(), 3u);
  EXPECT_EQ(std::vector<std::string>(kubelet.end() - 3, kubelet.end()),
            (std::vector<std::string>{"--", "/bin/job", "--rounds=2"}));
}

TEST(DeploymentDirTest, WaitingForTheKubeletEndsWhenItsSocketAppears) {
  DeploymentDir deploy(MakeTempDir("deployment"));
  ASSERT_TRUE(deploy.Create().ok());
  EXPECT_FALSE(deploy.WaitForKubelet(absl::Milliseconds(100)));
  std::thread later([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::ofstream(deploy.kubelet_dir() + "/kubelet.sock");
  });
  EXPECT_TRUE(deploy.WaitForKubelet(absl::Seconds(10)));
  later.join();
}

}  // namespace
}  // namespace rpci::testing
