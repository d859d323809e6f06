// For c_api_test.c: a loopback agent exporting two test devices, described
// in this process's environment as the plugin would.
#include <stdlib.h>

#include "agent/session/testing/test_device.h"
#include "librpci/testing/loopback_agent.h"

extern "C" int rpci_test_setup_env(void) {
  static auto* dev0 = new rpci::agent::testing::TestDevice(1 << 20);
  static auto* dev1 = new rpci::agent::testing::TestDevice(1 << 16);
  static std::unique_ptr<rpci::lib::testing::LoopbackAgent> agent;
  auto a = rpci::lib::testing::LoopbackAgent::Start({{"dev0", dev0}, {"dev1", dev1}});
  if (!a.ok()) return -1;
  agent = std::move(*a);
  auto env = agent->ReserveEnv({"dev0", "dev1"});
  if (!env.ok()) return -1;
  for (const auto& [k, v] : *env) setenv(k.c_str(), v.c_str(), 1);
  return 0;
}

// The register offsets of agent/session/testing/test_device.h.
extern "C" const unsigned long long rpci_test_reg_src = rpci::agent::testing::TestDevice::kSrc;
extern "C" const unsigned long long rpci_test_reg_dst = rpci::agent::testing::TestDevice::kDst;
extern "C" const unsigned long long rpci_test_reg_len = rpci::agent::testing::TestDevice::kLen;
extern "C" const unsigned long long rpci_test_reg_doorbell = rpci::agent::testing::TestDevice::kDoorbell;
extern "C" const unsigned long long rpci_test_reg_status = rpci::agent::testing::TestDevice::kStatus;
