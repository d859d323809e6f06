// librpci against a real session server on loopback, attached from the
// environment the plugin gives a container.
#include "librpci/device.h"

#include <cstring>
#include <fstream>

#include "agent/session/testing/test_device.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "librpci/testing/loopback_agent.h"

namespace rpci::lib {
namespace {

using agent::testing::TestDevice;

class DeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto a = testing::LoopbackAgent::Start({{"dev0", &dev0_}, {"dev1", &dev1_}});
    ASSERT_TRUE(a.ok()) << a.status();
    agent_ = std::move(*a);
    auto env = agent_->ReserveEnv({"dev0", "dev1"});
    ASSERT_TRUE(env.ok()) << env.status();
    env_ = *env;
  }

  std::unique_ptr<Device> Open(int index = 0) {
    auto d = Device::OpenFromEnv(index, MapEnv(env_));
    EXPECT_TRUE(d.ok()) << d.status();
    return d.ok() ? std::move(*d) : nullptr;
  }

  TestDevice dev0_{1 << 20}, dev1_{1 << 16};
  std::unique_ptr<testing::LoopbackAgent> agent_;
  std::map<std::string, std::string> env_;
};

TEST_F(DeviceTest, OpensEachDeviceTheEnvironmentNames) {
  EXPECT_EQ(*DeviceCountFromEnv(MapEnv(env_)), 2);
  auto d0 = Open(0);
  auto d1 = Open(1);
  ASSERT_NE(d0, nullptr);
  ASSERT_NE(d1, nullptr);
  EXPECT_EQ(d0->device_id(), "dev0");
  EXPECT_EQ(d1->device_id(), "dev1");
  EXPECT_EQ(d0->dma_size(), 1u << 20);
  EXPECT_EQ(d1->dma_size(), 1u << 16);
  auto bar0 = d0->MapBar(0);
  ASSERT_TRUE(bar0.ok());
  EXPECT_EQ(bar0->size, 4096u);
  EXPECT_EQ(d0->MapBar(5).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(DeviceTest, MissingOrMalformedEnvironmentIsAClearError) {
  EXPECT_EQ(DeviceCountFromEnv(MapEnv({})).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DeviceCountFromEnv(MapEnv({{"RPCI_DEVICE_COUNT", "two"}})).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto no_index = ConfigFromEnv(7, MapEnv(env_));
  EXPECT_EQ(no_index.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(no_index.status().message().find("RPCI_7_SESSION_ENDPOINT"), std::string::npos) << no_index.status();

  auto bad_id = env_;
  bad_id["RPCI_1_SESSION_ID"] = "not-hex";
  EXPECT_EQ(ConfigFromEnv(1, MapEnv(bad_id)).status().code(), absl::StatusCode::kInvalidArgument);

  auto missing_key = env_;
  missing_key["RPCI_1_SESSION_KEY_FILE"] = "/nonexistent/key";
  EXPECT_EQ(ConfigFromEnv(1, MapEnv(missing_key)).status().code(), absl::StatusCode::kNotFound);

  const std::string short_key_file = ::rpci::testing::MakeTempDir("rpci-badkey") + "/key";
  std::ofstream(short_key_file) << "abcd\n";
  auto short_key = env_;
  short_key["RPCI_1_SESSION_KEY_FILE"] = short_key_file;
  EXPECT_EQ(ConfigFromEnv(1, MapEnv(short_key)).status().code(), absl::StatusCode::kInvalidArgument);
  unlink(short_key_file.c_str());
}

// The plugin names the session's shape (RPCI_<i>_BARS, RPCI_<i>_DMA_SIZE):
// the attach then asks the agent nothing before its challenge. Without it
// the attach learns the shape from the agent; a shape that is not the
// session's is refused at attach, a malformed one before it.
TEST_F(DeviceTest, TheShapeFromTheEnvironmentSavesTheAttachAskingTheAgent) {
  auto config = ConfigFromEnv(0, MapEnv(env_));
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->bars.size(), 2u);  // the test device's BARs 0 and 2
  EXPECT_EQ(config->bars[0].index, 0);
  EXPECT_EQ(config->bars[0].size, 4096u);
  EXPECT_EQ(config->bars[1].index, 2);
  EXPECT_EQ(config->dma_size, 1u << 20);
  {
    auto d = Device::Open(*config);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_FALSE((*d)->stats().last_attach.shape_asked);
    EXPECT_EQ((*d)->dma_size(), 1u << 20);
    ASSERT_TRUE((*d)->Close().ok());
  }
  auto without = env_;
  without.erase("RPCI_0_BARS");
  auto asks = ConfigFromEnv(0, MapEnv(without));
  ASSERT_TRUE(asks.ok()) << asks.status();
  EXPECT_TRUE(asks->bars.empty());
  {
    auto d = Device::Open(*asks);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_TRUE((*d)->stats().last_attach.shape_asked);
    EXPECT_EQ((*d)->dma_size(), 1u << 20);
    ASSERT_TRUE((*d)->Close().ok());
  }
  auto wrong = *config;
  wrong.dma_size = 1 << 16;
  absl::Status refused = Device::Open(wrong).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument) << refused;
  EXPECT_NE(refused.message().find("dma region"), std::string::npos) << refused;

  for (const char* bad : {"0:4096,0:4096", "0:0", "9:4096", "0-4096", "0:4096,", "x:1"}) {
    auto malformed = env_;
    malformed["RPCI_0_BARS"] = bad;
    absl::Status s = ConfigFromEnv(0, MapEnv(malformed)).status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("RPCI_0_BARS"), std::string::npos) << s;
  }
  auto bad_dma = env_;
  bad_dma["RPCI_0_DMA_SIZE"] = "lots";
  absl::Status s = ConfigFromEnv(0, MapEnv(bad_dma)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("RPCI_0_DMA_SIZE"), std::string::npos) << s;
}

TEST_F(DeviceTest, TheCaFileComesFromTheEnvironmentAndAMissingOneIsAClearError) {
  EXPECT_TRUE(ConfigFromEnv(0, MapEnv(env_))->ca_file.empty());  // plaintext agent
  auto with_ca = env_;
  with_ca["RPCI_CA_FILE"] = "/nonexistent/ca.crt";  // the plugin's unindexed name for device 0
  with_ca["RPCI_1_CA_FILE"] = "/nonexistent/ca1.crt";
  auto config = ConfigFromEnv(0, MapEnv(with_ca));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->ca_file, "/nonexistent/ca.crt");
  EXPECT_EQ(ConfigFromEnv(1, MapEnv(with_ca))->ca_file, "/nonexistent/ca1.crt");
  absl::Status s = Device::Open(*config).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
  EXPECT_NE(s.message().find("/nonexistent/ca.crt"), std::string::npos) << s;
}

TEST_F(DeviceTest, WrongKeyIsRefusedByTheAgent) {
  auto config = ConfigFromEnv(0, MapEnv(env_));
  ASSERT_TRUE(config.ok());
  config->key = *session::SessionKey::Generate();
  EXPECT_EQ(Device::Open(*config).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(DeviceTest, ReadAfterWriteSeesTheDeviceValueWithoutAnExplicitRefresh) {
  auto d = Open();
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(d->Write32(0, 0x40, 0xdeadbeef).ok());
  ASSERT_TRUE(d->Write64(0, 0x48, 0x0123456789abcdefull).ok());
  // A read never passes a posted write: both are applied before it returns.
  EXPECT_EQ(*d->Read32(0, 0x40), 0xdeadbeefu);
  EXPECT_EQ(*d->Read64(0, 0x48), 0x0123456789abcdefull);
  EXPECT_EQ(dev0_.reg(0x48), 0x0123456789abcdefull);
  auto applied = dev0_.applied();
  ASSERT_EQ(applied.size(), 2u);
  EXPECT_EQ(applied[0].first, 0x40u);
  EXPECT_EQ(applied[1].first, 0x48u);
  // The mirror mapping shows the same bytes.
  auto bar0 = d->MapBar(0);
  uint32_t v = 0;
  std::memcpy(&v, const_cast<const uint8_t*>(bar0->base) + 0x40, 4);
  EXPECT_EQ(v, 0xdeadbeefu);
}

TEST_F(DeviceTest, BadRegisterAccessesAreRefusedLocally) {
  auto d = Open();
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->Write32(0, 4096, 1).code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(d->Write64(0, 4, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d->Read32(9, 0).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(d->Read64(0, 4092).status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_TRUE(dev0_.applied().empty());
}

TEST_F(DeviceTest, CopyJobThroughDmaBuffersDoorbellAndCompletion) {
  auto d = Open();
  ASSERT_NE(d, nullptr);
  auto src = d->AllocDma(8192, 4096);
  auto dst = d->AllocDma(8192, 4096);
  ASSERT_TRUE(src.ok() && dst.ok());
  for (int i = 0; i < 8192; ++i) src->host[i] = static_cast<uint8_t>(i * 31 + 7);
  ASSERT_TRUE(d->FlushToDevice(*src, 0, 8192).ok());
  ASSERT_TRUE(d->MapFromDevice(*dst).ok());
  ASSERT_TRUE(d->Write64(0, TestDevice::kSrc, src->device_addr).ok());
  ASSERT_TRUE(d->Write64(0, TestDevice::kDst, dst->device_addr).ok());
  ASSERT_TRUE(d->Write64(0, TestDevice::kLen, 8192).ok());
  ASSERT_TRUE(d->RingDoorbell(0, TestDevice::kDoorbell, 42).ok());
  auto done = d->WaitCompletion(absl::Seconds(5));
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->data, 42u);
  EXPECT_EQ(0, std::memcmp(dst->host, src->host, 8192));
  EXPECT_EQ(*d->Read64(0, TestDevice::kStatus), 42u);
}

TEST_F(DeviceTest, SyncFromDevicePullsResultsOfUnmappedBuffers) {
  auto d = Open();
  ASSERT_NE(d, nullptr);
  auto src = *d->AllocDma(4096);
  auto dst = *d->AllocDma(4096);
  std::memset(src.host, 0x5a, 4096);
  ASSERT_TRUE(d->FlushToDevice(src, 0, 4096).ok());
  ASSERT_TRUE(d->Write64(0, TestDevice::kSrc, src.device_addr).ok());
  ASSERT_TRUE(d->Write64(0, TestDevice::kDst, dst.device_addr).ok());
  ASSERT_TRUE(d->Write64(0, TestDevice::kLen, 4096).ok());
  ASSERT_TRUE(d->RingDoorbell(0, TestDevice::kDoorbell, 1).ok());
  ASSERT_TRUE(d->WaitCompletion(absl::Seconds(5)).ok());
  EXPECT_EQ(dst.host[100], 0);  // not mapped from the device: still stale
  ASSERT_TRUE(d->SyncFromDevice(dst, 0, 4096).ok());
  EXPECT_EQ(dst.host[100], 0x5a);
  EXPECT_EQ(dst.host[4095], 0x5a);
}

TEST_F(DeviceTest, DmaSpaceExhaustionDoubleFreeAndForeignBuffersAreErrors) {
  auto d = Open(1);  // 64 KiB of DMA space
  ASSERT_NE(d, nullptr);
  auto all = d->AllocDma(1 << 16, 4096);
  ASSERT_TRUE(all.ok()) << all.status();
  EXPECT_EQ(d->AllocDma(64).status().code(), absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(d->FreeDma(*all).ok());
  EXPECT_EQ(d->FreeDma(*all).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(d->FlushToDevice(*all, 0, 16).code(), absl::StatusCode::kNotFound);
  auto b = *d->AllocDma(1024);
  EXPECT_EQ(d->FlushToDevice(b, 1000, 100).code(), absl::StatusCode::kOutOfRange);
  DmaBuffer forged = b;
  forged.size = 4096;
  EXPECT_EQ(d->FlushToDevice(forged, 0, 16).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(d->FreeDma(b).ok());
}

TEST_F(DeviceTest, WaitCompletionTimesOutWhenTheDeviceIsIdle) {
  auto d = Open();
  ASSERT_NE(d, nullptr);
  auto done = d->WaitCompletion(absl::Milliseconds(100));
  EXPECT_EQ(done.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(DeviceTest, CloseDetachesLaterCallsFailAndTheNextProcessOpensAgain) {
  auto d = Open();
  ASSERT_NE(d, nullptr);
  ASSERT_TRUE(d->Close().ok());
  EXPECT_EQ(d->Write32(0, 0, 1).code(), absl::StatusCode::kFailedPrecondition);
  // The session belongs to the pod's allocation: a restarted container opens it again.
  auto again = Device::OpenFromEnv(0, MapEnv(env_));
  ASSERT_TRUE(again.ok()) << again.status();
  ASSERT_TRUE((*again)->Write32(0, 0x40, 5).ok());
  EXPECT_EQ(*(*again)->Read32(0, 0x40), 5u);
}

}  // namespace
}  // namespace rpci::lib
