#include "common/metrics.h"

#include "common/testing/exposition_format.h"
#include "gtest/gtest.h"

namespace rpci {
namespace {

TEST(MetricsRegistryTest, RenderedTextParsesBackToTheSameValues) {
  MetricsRegistry registry;
  CounterFamily& refused = registry.AddCounter("rpci_session_refused_total",
                                               "Remote accesses refused.", {"reason"});
  refused.Labels({"bad_key"}).Inc();
  refused.Labels({"out_of_bounds"}).Inc(2);
  refused.Labels({"quote\"back\\slash\nnewline"}).Inc();
  registry.AddGauge("rpci_sessions", "Live sessions.").Get().Set(3);
  HistogramFamily& latency =
      registry.AddHistogram("rpci_allocate_seconds", "Allocate latency.", {0.01, 0.1, 1});
  latency.Get().Observe(0.005);
  latency.Get().Observe(0.05);
  latency.Get().Observe(5);

  absl::StatusOr<testing::Exposition> parsed = testing::CheckExpositionFormat(registry.Render());
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << registry.Render();
  EXPECT_EQ(parsed->types.at("rpci_session_refused_total"), "counter");
  EXPECT_EQ(parsed->types.at("rpci_sessions"), "gauge");
  EXPECT_EQ(parsed->types.at("rpci_allocate_seconds"), "histogram");
  EXPECT_EQ(*parsed->Value("rpci_session_refused_total", {{"reason", "out_of_bounds"}}), 2);
  EXPECT_EQ(*parsed->Value("rpci_session_refused_total", {{"reason", "quote\"back\\slash\nnewline"}}), 1);
  EXPECT_EQ(*parsed->Value("rpci_sessions"), 3);
  EXPECT_EQ(*parsed->Value("rpci_allocate_seconds_bucket", {{"le", "0.01"}}), 1);
  EXPECT_EQ(*parsed->Value("rpci_allocate_seconds_bucket", {{"le", "0.1"}}), 2);
  EXPECT_EQ(*parsed->Value("rpci_allocate_seconds_bucket", {{"le", "1"}}), 2);
  EXPECT_EQ(*parsed->Value("rpci_allocate_seconds_bucket", {{"le", "+Inf"}}), 3);
  EXPECT_EQ(*parsed->Value("rpci_allocate_seconds_count"), 3);
  EXPECT_DOUBLE_EQ(*parsed->Value("rpci_allocate_seconds_sum"), 5.055);
}

TEST(MetricsRegistryTest, AddingAFamilyTwiceReturnsTheSameOne) {
  MetricsRegistry registry;
  registry.AddCounter("c_total", "c").Get().Inc();
  registry.AddCounter("c_total", "c").Get().Inc();
  EXPECT_EQ(registry.AddCounter("c_total", "c").Get().value(), 2);
}

}  // namespace
}  // namespace rpci
