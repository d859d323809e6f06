#include "common/metrics.h"

#include <atomic>
#include <thread>

#include "common/testing/exposition_format.h"
#include "gtest/gtest.h"

namespace rpci {
namespace {

TEST(MetricsRegistryTest, RenderedTextPassesTheFormatCheckWithTheSameNamesHelpLabelsAndValues) {
  MetricsRegistry registry;
  CounterFamily& refused = registry.AddCounter("rpci_session_refused_total",
                                               "Frames refused, by reason\\with \"quotes\"\nand a newline", {"reason"});
  refused.Labels({"bad_key"}).Increment();
  refused.Labels({"out_of_bounds"}).Increment(2);
  refused.Labels({"quote\"back\\slash\nnewline"}).Increment();
  registry.AddGauge("rpci_sessions", "Live sessions.").Get().Set(3);
  registry.AddGauge("rpci_devices", "Devices.", {"pool", "phase"}).Labels({"gpu", "Available"}).Set(2.5);

  const std::string text = registry.Render();
  absl::StatusOr<testing::Exposition> parsed = testing::CheckExpositionFormat(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  EXPECT_EQ(parsed->types.at("rpci_session_refused_total"), "counter");
  EXPECT_EQ(parsed->help.at("rpci_session_refused_total"), "Frames refused, by reason\\with \"quotes\"\nand a newline");
  EXPECT_EQ(parsed->types.at("rpci_sessions"), "gauge");
  EXPECT_EQ(*parsed->Value("rpci_session_refused_total", {{"reason", "bad_key"}}), 1);
  EXPECT_EQ(*parsed->Value("rpci_session_refused_total", {{"reason", "out_of_bounds"}}), 2);
  EXPECT_EQ(*parsed->Value("rpci_session_refused_total", {{"reason", "quote\"back\\slash\nnewline"}}), 1);
  EXPECT_EQ(*parsed->Value("rpci_sessions"), 3);
  EXPECT_EQ(*parsed->Value("rpci_devices", {{"pool", "gpu"}, {"phase", "Available"}}), 2.5);
}

TEST(MetricsRegistryTest, AddingAFamilyTwiceReturnsTheSameOne) {
  MetricsRegistry registry;
  CounterFamily& first = registry.AddCounter("c_total", "c");
  first.Get().Increment();
  CounterFamily& second = registry.AddCounter("c_total", "c");
  second.Get().Increment();
  EXPECT_EQ(&first, &second);
  EXPECT_EQ(first.Get().Value(), 2);
}

TEST(MetricsRegistryTest, LabelValuesArePositionalAndSeriesListsThem) {
  MetricsRegistry registry;
  GaugeFamily& devices = registry.AddGauge("d", "d", {"pool", "phase"});
  devices.Labels({"gpu", "Available"}).Set(1);
  devices.Labels({"gpu"}).Set(4);  // the missing phase is empty
  EXPECT_EQ(&devices.Labels({"gpu", "Available"}), &devices.Labels({"gpu", "Available", "extra"}));
  std::vector<std::vector<std::string>> series = devices.Series();
  ASSERT_EQ(series.size(), 2u);
  EXPECT_EQ(series[0], (std::vector<std::string>{"gpu", ""}));
  EXPECT_EQ(series[1], (std::vector<std::string>{"gpu", "Available"}));
}

TEST(MetricsRegistryTest, AFamilyWithoutSeriesIsNotRendered) {
  MetricsRegistry registry;
  registry.AddCounter("rpci_store_errors_total", "Failed store commits.");
  EXPECT_EQ(registry.Render(), "");
}

TEST(MetricsRegistryTest, CountersAreAtomicAddsThatLoseNoIncrementUnderContention) {
  // prometheus::Counter holds a std::atomic<double>: no lock on the hot path.
  EXPECT_TRUE(std::atomic<double>{}.is_lock_free());
  MetricsRegistry registry;
  Counter& frames = registry.AddCounter("frames_total", "f").Get();
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&frames] {
      for (int i = 0; i < 100000; ++i) frames.Increment();
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(frames.Value(), 400000);
}

}  // namespace
}  // namespace rpci
