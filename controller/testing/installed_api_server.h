#ifndef RPCI_CONTROLLER_TESTING_INSTALLED_API_SERVER_H_
#define RPCI_CONTROLLER_TESTING_INSTALLED_API_SERVER_H_

#include <memory>
#include <utility>

#include "common/log.h"
#include "controller/kube/client.h"
#include "gtest/gtest.h"
#include "tests/kube/api_server.h"

namespace rpci::controller::testing {

// The namespace the chart installs rpci into.
inline constexpr char kInstallNamespace[] = "rpci-system";

// A test against the test API server as rpci is installed into it: the
// CRDs of deploy/crds (the test's data needs //deploy:crds, validated as
// kube-apiserver would) and namespace kInstallNamespace exist, and client_
// talks to it over HTTP. Components log errors only.
class InstalledApiServerTest : public ::testing::Test {
 protected:
  static constexpr const char* kNs = kInstallNamespace;

  void SetUp() override {
    Logger::SetMinLevel(LogLevel::kError);
    ASSERT_TRUE(server_.Start().ok());
    ASSERT_TRUE(server_.InstallCrdsFrom("deploy/crds").ok());
    server_.CreateNamespace(kInstallNamespace);
    kube::KubeConfig config;
    config.server = server_.url();
    absl::StatusOr<std::unique_ptr<kube::KubeClient>> client = kube::KubeClient::Create(config);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
  }

  kubetest::ApiServer server_;
  std::unique_ptr<kube::KubeClient> client_;
};

}  // namespace rpci::controller::testing

#endif  // RPCI_CONTROLLER_TESTING_INSTALLED_API_SERVER_H_
