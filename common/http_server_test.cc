#include "common/http_server.h"

#include "common/testing/exposition_format.h"
#include "gtest/gtest.h"
#include "httplib.h"

namespace rpci {
namespace {

TEST(HealthServerTest, ServesHealthReadinessAndMetricsOnAnEphemeralPort) {
  MetricsRegistry registry;
  registry.AddCounter("rpci_test_total", "t").Get().Increment(7);
  bool ready = false;
  HealthServer server(&registry, [&]() -> absl::StatusOr<std::string> {
    if (!ready) return absl::UnavailableError("not leader: lease held by controller-b");
    return std::string("leader");
  });
  absl::StatusOr<int> port = server.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok()) << port.status();
  ASSERT_GT(*port, 0);

  httplib::Client client("127.0.0.1", *port);
  auto health = client.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);

  auto not_ready = client.Get("/readyz");
  ASSERT_TRUE(not_ready);
  EXPECT_EQ(not_ready->status, 503);
  EXPECT_NE(not_ready->body.find("lease held by controller-b"), std::string::npos);
  ready = true;
  auto now_ready = client.Get("/readyz");
  ASSERT_TRUE(now_ready);
  EXPECT_EQ(now_ready->status, 200);
  EXPECT_EQ(now_ready->body, "leader\n");

  auto metrics = client.Get("/metrics");
  ASSERT_TRUE(metrics);
  EXPECT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->get_header_value("Content-Type").find("version=0.0.4"), std::string::npos);
  auto parsed = testing::CheckExpositionFormat(metrics->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed->Value("rpci_test_total"), 7);

  EXPECT_EQ(client.Get("/nope")->status, 404);
  server.Stop();
  EXPECT_FALSE(client.Get("/healthz"));
}

TEST(HealthServerTest, PortInUseIsUnavailable) {
  MetricsRegistry registry;
  HealthServer a(&registry, nullptr), b(&registry, nullptr);
  absl::StatusOr<int> port = a.Start("127.0.0.1", 0);
  ASSERT_TRUE(port.ok());
  absl::StatusOr<int> second = b.Start("127.0.0.1", *port);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
}

TEST(HealthServerTest, StartsOnAHostPortAddressAndRefusesGarbage) {
  MetricsRegistry registry;
  HealthServer server(&registry, nullptr);
  absl::StatusOr<int> bad = server.Start("nohost");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("nohost"), std::string::npos) << bad.status();
  absl::StatusOr<int> port = server.Start("127.0.0.1:0");
  ASSERT_TRUE(port.ok()) << port.status();
  EXPECT_GT(*port, 0);
}

TEST(ParseHostPortTest, AcceptsHostPortAndRejectsGarbage) {
  std::string host;
  int port = 0;
  ASSERT_TRUE(ParseHostPort("127.0.0.1:8080", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 8080);
  ASSERT_TRUE(ParseHostPort("[::1]:9", &host, &port).ok());
  EXPECT_EQ(host, "::1");
  ASSERT_TRUE(ParseHostPort(":9090", &host, &port).ok());
  EXPECT_EQ(host, "0.0.0.0");
  EXPECT_FALSE(ParseHostPort("nohost", &host, &port).ok());
  EXPECT_FALSE(ParseHostPort("h:99999", &host, &port).ok());
  EXPECT_FALSE(ParseHostPort("h:x", &host, &port).ok());
}

}  // namespace
}  // namespace rpci
