#ifndef RPCI_COMMON_METRICS_H_
#define RPCI_COMMON_METRICS_H_

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace rpci {

// One time series' value. Thread-safe.
class Counter {
 public:
  void Inc(double by = 1);
  double value() const;

 private:
  mutable std::mutex mu_;
  double value_ = 0;
};

class Gauge {
 public:
  void Set(double v);
  void Add(double by);
  double value() const;

 private:
  mutable std::mutex mu_;
  double value_ = 0;
};

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const;

 private:
  mutable std::mutex mu_;
  std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;  // per bound, then +Inf; not cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

// A named metric with fixed label names; each combination of label values is
// one series, created on first use. References returned stay valid for the
// family's lifetime. Thread-safe.
template <typename T>
class Family {
 public:
  Family(std::string name, std::string help, std::vector<std::string> label_names,
         std::vector<double> bounds = {})
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        bounds_(std::move(bounds)) {}

  // REQUIRES: values.size() == number of label names (extra values are
  // dropped, missing ones are empty).
  T& Labels(std::vector<std::string> values);
  T& Get() { return Labels({}); }

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Series in label-value order.
  std::vector<std::pair<std::vector<std::string>, const T*>> Series() const;

 private:
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  std::vector<double> bounds_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> series_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

// A set of metric families rendered in the Prometheus text exposition format
// (version 0.0.4). Names must match [a-zA-Z_:][a-zA-Z0-9_:]*; adding a name
// twice returns the existing family of that kind.
class MetricsRegistry {
 public:
  CounterFamily& AddCounter(const std::string& name, const std::string& help,
                            std::vector<std::string> label_names = {});
  GaugeFamily& AddGauge(const std::string& name, const std::string& help,
                        std::vector<std::string> label_names = {});
  HistogramFamily& AddHistogram(const std::string& name, const std::string& help,
                                std::vector<double> bounds, std::vector<std::string> label_names = {});

  std::string Render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<CounterFamily>> counters_;
  std::map<std::string, std::unique_ptr<GaugeFamily>> gauges_;
  std::map<std::string, std::unique_ptr<HistogramFamily>> histograms_;
};

template <typename T>
T& Family<T>::Labels(std::vector<std::string> values) {
  values.resize(label_names_.size());
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = series_[values];
  if (!slot) {
    if constexpr (std::is_same_v<T, Histogram>) {
      slot = std::make_unique<T>(bounds_);
    } else {
      slot = std::make_unique<T>();
    }
  }
  return *slot;
}

template <typename T>
std::vector<std::pair<std::vector<std::string>, const T*>> Family<T>::Series() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<std::vector<std::string>, const T*>> out;
  for (const auto& [labels, series] : series_) out.emplace_back(labels, series.get());
  return out;
}

}  // namespace rpci

#endif  // RPCI_COMMON_METRICS_H_
