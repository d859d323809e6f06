// The vfio backend as the session server sees it, in the test machine
// (//agent/vfio:vfio_vm_test).
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "agent/vfio/testing/guest_util.h"
#include "agent/vfio/vfio_backend.h"
#include "gtest/gtest.h"

namespace rpci::agent::vfio {
namespace {

using guest::FindFunction;
using guest::WaitFd;

VfioBackendOptions BackendOptions(const std::string& bdf) {
  VfioBackendOptions o;
  o.vfio = guest::Options(bdf);
  o.dma_size = 1 << 20;
  return o;
}

class VfioBackendGuestTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { ASSERT_EQ(std::system("modprobe vfio-pci"), 0); }
};

TEST_F(VfioBackendGuestTest, TenantBAfterTenantASeesResetRegistersAndZeroedDma) {
  absl::StatusOr<std::unique_ptr<VfioBackend>> b = VfioBackend::Open(BackendOptions(FindFunction("0x1b36", "0x0010")));
  ASSERT_TRUE(b.ok()) << b.status();
  VfioBackend& nvme = **b;
  EXPECT_EQ(nvme.kind(), "vfio");
  // Tenant A: admin queues at device addresses 0x1000/0x2000, controller on,
  // data left in the DMA space.
  ASSERT_TRUE(nvme.WriteRegister(0, 0x24, 4, 0x000f000f).ok());
  ASSERT_TRUE(nvme.WriteRegister(0, 0x28, 8, 0x1000).ok());
  ASSERT_TRUE(nvme.WriteRegister(0, 0x30, 8, 0x2000).ok());
  ASSERT_TRUE(nvme.WriteRegister(0, 0x14, 4, 0x00460001).ok());
  ASSERT_TRUE(guest::WaitUntil([&] { return (*nvme.device().Read32(0, 0x1c) & 1) == 1; }));
  std::memset(nvme.dma_space() + 0x8000, 0xa5, 4096);
  ASSERT_TRUE(nvme.Reset().ok());
  EXPECT_TRUE(nvme.Health().ok());
  // Tenant B.
  std::vector<uint8_t> regs(0x40);
  ASSERT_TRUE(nvme.ReadBar(0, 0, regs.size(), regs.data()).ok());
  uint32_t cc, csts;
  std::memcpy(&cc, regs.data() + 0x14, 4);
  std::memcpy(&csts, regs.data() + 0x1c, 4);
  EXPECT_EQ(cc, 0u);
  EXPECT_EQ(csts & 1, 0u);
  std::vector<uint8_t> zero(nvme.dma_size(), 0);
  EXPECT_EQ(std::memcmp(nvme.dma_space(), zero.data(), zero.size()), 0);
}

TEST_F(VfioBackendGuestTest, MirrorShowsTheRegisterWindowAndHidesMsix) {
  absl::StatusOr<std::unique_ptr<VfioBackend>> b = VfioBackend::Open(BackendOptions(FindFunction("0x1b36", "0x0010")));
  ASSERT_TRUE(b.ok()) << b.status();
  VfioBackend& nvme = **b;
  ASSERT_FALSE(nvme.Bars().empty());
  const SessionDevice::Bar bar0 = nvme.Bars()[0];
  EXPECT_GE(bar0.size, 0x2000u);
  std::vector<uint8_t> all(bar0.size, 0xff);
  ASSERT_TRUE(nvme.ReadBar(0, 0, all.size(), all.data()).ok());
  uint32_t vs;
  std::memcpy(&vs, all.data() + 8, 4);
  EXPECT_EQ(vs, 0x00010400u);
  for (size_t i = 4096; i < all.size(); ++i) ASSERT_EQ(all[i], 0) << i;  // beyond the register window
  for (const VfioBar& vb : nvme.device().bars()) {
    for (const Range& h : vb.hidden) {
      EXPECT_EQ(nvme.WriteRegister(vb.index, h.offset, 4, 1).code(), absl::StatusCode::kPermissionDenied);
    }
  }
  EXPECT_EQ(nvme.WriteRegister(0, 0x14, 4, uint64_t{1} << 32).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(nvme.WriteRegister(0, 0x14, 2, 0).code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(VfioBackendGuestTest, EduInterruptIsTakenAsAVector) {
  absl::StatusOr<std::unique_ptr<VfioBackend>> b = VfioBackend::Open(BackendOptions(FindFunction("0x1234", "0x11e8")));
  ASSERT_TRUE(b.ok()) << b.status();
  VfioBackend& edu = **b;
  ASSERT_EQ(edu.interrupt_fds().size(), 1u);
  ASSERT_TRUE(edu.WriteRegister(0, 0x60, 4, 1).ok());
  ASSERT_TRUE(WaitFd(edu.interrupt_fd(), 10000));  // what the session server waits on
  std::vector<SessionDevice::Interrupt> irqs = edu.TakeInterrupts();
  ASSERT_EQ(irqs.size(), 1u);
  EXPECT_EQ(irqs[0].vector, 0);
  EXPECT_FALSE(WaitFd(edu.interrupt_fd(), 0));  // taken: no longer readable
  ASSERT_TRUE(edu.WriteRegister(0, 0x64, 4, 1).ok());
}

TEST_F(VfioBackendGuestTest, AFunctionWithoutResetIsNeverClean) {
  // The VGA function on the root bus has no FLR, no PM reset and no bus reset.
  absl::StatusOr<std::unique_ptr<VfioBackend>> b = VfioBackend::Open(BackendOptions(FindFunction("0x1234", "0x1111")));
  ASSERT_TRUE(b.ok()) << b.status();
  std::memset((*b)->dma_space(), 0x5a, 4096);
  absl::Status s = (*b)->Reset();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_FALSE((*b)->Health().ok());
  EXPECT_EQ((*b)->dma_space()[0], 0);  // scrubbed all the same
}

// The kernel asks for the function back (its removal through sysfs, which
// waits for the agent): the backend releases it at once and reports it
// Unhealthy; when the function comes back (rescan) it is opened again,
// Healthy, and interrupts work as before.
TEST_F(VfioBackendGuestTest, ARemovedFunctionIsReleasedUnhealthyAndRecoversWhenItComesBack) {
  const std::string bdf = FindFunction("0x1234", "0x11e8");
  ASSERT_FALSE(bdf.empty());
  absl::StatusOr<std::unique_ptr<VfioBackend>> b = VfioBackend::Open(BackendOptions(bdf));
  ASSERT_TRUE(b.ok()) << b.status();
  VfioBackend& edu = **b;
  ASSERT_GE(edu.device().request_fd(), 0) << "vfio-pci routes no device request";
  ASSERT_TRUE(edu.Health().ok());
  // The removal blocks in the kernel until the device is released.
  std::thread remove([&] { std::ofstream("/sys/bus/pci/devices/" + bdf + "/remove") << "1\n"; });
  const bool released = guest::WaitUntil([&] { return !edu.Health().ok(); }, absl::Seconds(30));
  remove.join();
  ASSERT_TRUE(released);
  EXPECT_FALSE(std::filesystem::exists("/sys/bus/pci/devices/" + bdf));
  absl::Status health = edu.Health();
  EXPECT_FALSE(health.ok());
  EXPECT_NE(health.message().find(bdf), std::string::npos) << health;
  EXPECT_EQ(edu.WriteRegister(0, 0x60, 4, 1).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(edu.TakeInterrupts().empty());

  std::ofstream("/sys/bus/pci/rescan") << "1\n";
  ASSERT_TRUE(guest::WaitUntil([&] { return edu.Health().ok(); }, absl::Seconds(30))) << edu.Health();
  uint32_t ident = 0;
  ASSERT_TRUE(edu.ReadBar(0, 0, 4, reinterpret_cast<uint8_t*>(&ident)).ok());
  EXPECT_EQ(ident & 0xff, 0xedu);
  ASSERT_TRUE(edu.WriteRegister(0, 0x60, 4, 1).ok());  // raise interrupt 1
  ASSERT_TRUE(WaitFd(edu.interrupt_fd(), 10000));
  EXPECT_EQ(edu.TakeInterrupts().size(), 1u);
  ASSERT_TRUE(edu.WriteRegister(0, 0x64, 4, 1).ok());
}

}  // namespace
}  // namespace rpci::agent::vfio
