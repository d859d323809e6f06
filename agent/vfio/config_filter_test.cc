#include "agent/vfio/config_filter.h"

#include <vector>

#include "gtest/gtest.h"

namespace rpci::agent::vfio {
namespace {

// A config space with PM at 0x40, MSI at 0x50, PCIe at 0x60, MSI-X at 0x70
// (16 vectors, table BAR0+0x2000, PBA BAR0+0x3000), vendor-specific at 0x90.
std::vector<uint8_t> Config() {
  std::vector<uint8_t> c(256, 0);
  c[0x06] = 0x10;  // Status: capability list
  c[0x34] = 0x40;
  auto cap = [&](uint8_t at, uint8_t id, uint8_t next) {
    c[at] = id;
    c[at + 1] = next;
  };
  cap(0x40, kCapPm, 0x50);
  cap(0x50, kCapMsi, 0x60);
  cap(0x60, kCapExpress, 0x70);
  cap(0x70, kCapMsix, 0x90);
  c[0x72] = 15;                 // table size - 1
  c[0x74] = 0x00, c[0x75] = 0x20;  // table offset 0x2000, BIR 0
  c[0x78] = 0x00, c[0x79] = 0x30;  // PBA offset 0x3000, BIR 0
  cap(0x90, kCapVendor, 0x00);
  c[0x92] = 8;  // length
  return c;
}

TEST(ConfigFilter, FindsTheCapabilityList) {
  std::vector<PciCapability> caps = ReadCapabilities(Config());
  ASSERT_EQ(caps.size(), 5u);
  EXPECT_EQ(caps[3].id, kCapMsix);
  EXPECT_EQ(caps[3].offset, 0x70);
}

TEST(ConfigFilter, CapabilityLoopEndsTheWalk) {
  std::vector<uint8_t> c = Config();
  c[0x91] = 0x40;  // vendor cap points back to PM
  EXPECT_EQ(ReadCapabilities(c).size(), 5u);
}

TEST(ConfigFilter, ReadsTheMsixTableAndPbaLayout) {
  MsixLayout m;
  ASSERT_TRUE(ReadMsix(Config(), &m));
  EXPECT_EQ(m.vectors, 16);
  EXPECT_EQ(m.table.bar, 0);
  EXPECT_EQ(m.table.offset, 0x2000u);
  EXPECT_EQ(m.table.size, 256u);
  EXPECT_EQ(m.pba.bar, 0);
  EXPECT_EQ(m.pba.offset, 0x3000u);
  EXPECT_EQ(m.pba.size, 8u);
}

TEST(ConfigFilter, TenantCannotMoveBarsOrTheRom) {
  for (uint16_t off = 0x10; off < 0x28; off += 4) {
    EXPECT_EQ(FilterTenantConfigWrite(Config(), off, 4, 0xfee00000).status().code(), absl::StatusCode::kPermissionDenied)
        << off;
  }
  EXPECT_EQ(FilterTenantConfigWrite(Config(), 0x30, 4, 1).status().code(), absl::StatusCode::kPermissionDenied);
}

TEST(ConfigFilter, CommandKeepsMemoryAndBusMasterOn) {
  absl::StatusOr<uint32_t> v = FilterTenantConfigWrite(Config(), kPciCommand, 2, 0);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, uint32_t{kCommandMemory | kCommandBusMaster});
  v = FilterTenantConfigWrite(Config(), kPciCommand, 4, 0xffff0400);  // with Status in the same dword
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0xffff0406u);
  v = FilterTenantConfigWrite(Config(), kPciCommand, 1, 0);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 6u);
}

TEST(ConfigFilter, InterruptAndPowerCapabilitiesBelongToTheAgent) {
  for (uint16_t off : {0x42, 0x44, 0x52, 0x54, 0x72, 0x74}) {
    absl::StatusOr<uint32_t> v = FilterTenantConfigWrite(Config(), off, 2, 0);
    EXPECT_EQ(v.status().code(), absl::StatusCode::kPermissionDenied) << off;
  }
  EXPECT_NE(FilterTenantConfigWrite(Config(), 0x72, 2, 0).status().message().find("MSI-X"), std::string::npos);
}

TEST(ConfigFilter, PcieDeviceControlWithoutFlr) {
  absl::StatusOr<uint32_t> v = FilterTenantConfigWrite(Config(), 0x68, 2, 0x8000 | 0x20);
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 0x20u);
  EXPECT_EQ(FilterTenantConfigWrite(Config(), 0x6c, 4, 0).status().code(), absl::StatusCode::kPermissionDenied);
}

TEST(ConfigFilter, VendorSpecificBodyAndLatencyAreTheTenants) {
  EXPECT_TRUE(FilterTenantConfigWrite(Config(), 0x94, 4, 0x12345678).ok());
  EXPECT_EQ(FilterTenantConfigWrite(Config(), 0x98, 4, 0).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(FilterTenantConfigWrite(Config(), 0x0d, 1, 0x40).ok());
}

TEST(ConfigFilter, ExtendedSpaceAndBadAccessesAreRefused) {
  EXPECT_EQ(FilterTenantConfigWrite(Config(), 0x100, 4, 0).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(FilterTenantConfigWrite(Config(), 0x05, 2, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(FilterTenantConfigWrite(Config(), 0x04, 3, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace rpci::agent::vfio
