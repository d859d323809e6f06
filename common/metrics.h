#ifndef RPCI_COMMON_METRICS_H_
#define RPCI_COMMON_METRICS_H_

// Metrics on prometheus-cpp's core library. Series are prometheus::Counter and
// prometheus::Gauge (an atomic add or store, no lock). Each daemon has one
// MetricsRegistry, served on /metrics by common/http_server.h.

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/map_keys.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"

namespace rpci {

using Counter = prometheus::Counter;
using Gauge = prometheus::Gauge;

// A prometheus-cpp family whose label names are fixed when it is added, so
// callers give label values in that order: refused.Labels({"bad_key"}).
// Thread-safe; references returned stay valid for the registry's lifetime.
template <typename T>
class Family {
 public:
  Family(prometheus::Family<T>* family, std::vector<std::string> label_names)
      : family_(family), label_names_(std::move(label_names)) {}

  // The series with these label values, created on first use (extra values
  // are dropped, missing ones are empty). Takes the family's lock: on a hot
  // path keep the reference instead of calling this per event.
  T& Labels(std::vector<std::string> values);
  T& Get() { return Labels({}); }

  // The label values of every series created so far, in order.
  std::vector<std::vector<std::string>> Series() const;

 private:
  prometheus::Family<T>* family_;
  std::vector<std::string> label_names_;
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, T*> series_;
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;

// The process's metrics: one prometheus::Registry. Adding a name twice returns
// the family added first.
class MetricsRegistry {
 public:
  MetricsRegistry();

  CounterFamily& AddCounter(const std::string& name, const std::string& help,
                            std::vector<std::string> label_names = {});
  GaugeFamily& AddGauge(const std::string& name, const std::string& help,
                        std::vector<std::string> label_names = {});

  // Every family in the Prometheus text format 0.0.4, by prometheus-cpp's
  // TextSerializer.
  std::string Render() const;

 private:
  template <typename T>
  Family<T>& Add(std::map<std::string, std::unique_ptr<Family<T>>>& families, prometheus::detail::Builder<T> builder,
                 const std::string& name, const std::string& help, std::vector<std::string> label_names);

  std::shared_ptr<prometheus::Registry> registry_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<CounterFamily>> counters_;
  std::map<std::string, std::unique_ptr<GaugeFamily>> gauges_;
};

template <typename T>
T& Family<T>::Labels(std::vector<std::string> values) {
  values.resize(label_names_.size());
  std::lock_guard<std::mutex> lock(mu_);
  T*& series = series_[values];
  if (series == nullptr) {
    prometheus::Labels labels;
    for (size_t i = 0; i < values.size(); ++i) labels.emplace(label_names_[i], values[i]);
    series = &family_->Add(labels);
  }
  return *series;
}

template <typename T>
std::vector<std::vector<std::string>> Family<T>::Series() const {
  std::lock_guard<std::mutex> lock(mu_);
  return KeysOf(series_);
}

}  // namespace rpci

#endif  // RPCI_COMMON_METRICS_H_
