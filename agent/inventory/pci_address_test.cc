#include "agent/inventory/pci_address.h"

#include "gtest/gtest.h"

namespace rpci::agent {
namespace {

TEST(PciAddressTest, ParsesSysfsFormAndPrintsCanonically) {
  absl::StatusOr<PciAddress> a = PciAddress::Parse("0000:3B:00.1");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->domain, 0u);
  EXPECT_EQ(a->bus, 0x3bu);
  EXPECT_EQ(a->device, 0u);
  EXPECT_EQ(a->function, 1u);
  EXPECT_EQ(a->ToString(), "0000:3b:00.1");
  EXPECT_EQ(a->ToDashed(), "0000-3b-00-1");
}

TEST(PciAddressTest, ShortFormMeansDomainZero) {
  absl::StatusOr<PciAddress> a = PciAddress::Parse("af:1f.7");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->ToString(), "0000:af:1f.7");
}

TEST(PciAddressTest, WideDomainsAreKept) {
  absl::StatusOr<PciAddress> a = PciAddress::Parse("10000:00:02.0");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->domain, 0x10000u);
  EXPECT_EQ(a->ToString(), "10000:00:02.0");
}

TEST(PciAddressTest, RejectsMalformedAddressesNamingThePart) {
  struct Case {
    const char* text;
    const char* part;
  };
  for (const Case& c : {Case{"", "separators"}, Case{"0000:3b:00", "'.'"},
                        Case{"0000:3b:20.0", "device"}, Case{"0000:3b:00.8", "function"},
                        Case{"0000:100:00.0", "bus"}, Case{"zz00:3b:00.0", "domain"},
                        Case{"0000:3b:00.0.1", "'.'"}, Case{"0:0:0:00.0", "separators"},
                        Case{"0000:3b:0x.0", "device"}, Case{"pci0000:00", "bus"},
                        // Signs and spaces, which a general hex parser would take.
                        Case{"0000:+3:00.0", "bus"}, Case{"0000: 3:00.0", "bus"}, Case{"0000:3b:00.-1", "function"}}) {
    absl::StatusOr<PciAddress> a = PciAddress::Parse(c.text);
    ASSERT_FALSE(a.ok()) << c.text;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(a.status().message().find(c.part), std::string::npos)
        << c.text << ": " << a.status();
    EXPECT_NE(a.status().message().find(c.text), std::string::npos) << a.status();
  }
}

TEST(PciAddressTest, OrdersByDomainBusDeviceFunction) {
  EXPECT_LT(*PciAddress::Parse("0000:00:1f.7"), *PciAddress::Parse("0000:01:00.0"));
  EXPECT_LT(*PciAddress::Parse("0000:ff:1f.7"), *PciAddress::Parse("0001:00:00.0"));
  EXPECT_EQ(*PciAddress::Parse("0000:3b:00.0"), *PciAddress::Parse("3b:00.0"));
}

}  // namespace
}  // namespace rpci::agent
