#include "common/metrics.h"

#include "prometheus/text_serializer.h"

namespace rpci {
namespace {

// prometheus-cpp 1.0.1's TextSerializer writes HELP text as given, while the
// format requires backslash and line feed there escaped (as \\ and \n);
// escape once here. metrics_test compares the help text read back, so a
// library that starts escaping itself shows up there.
std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

MetricsRegistry::MetricsRegistry() : registry_(std::make_shared<prometheus::Registry>()) {}

template <typename T>
Family<T>& MetricsRegistry::Add(std::map<std::string, std::unique_ptr<Family<T>>>& families,
                                prometheus::detail::Builder<T> builder, const std::string& name,
                                const std::string& help, std::vector<std::string> label_names) {
  std::lock_guard<std::mutex> lock(mu_);
  std::unique_ptr<Family<T>>& family = families[name];
  if (family == nullptr) {
    family = std::make_unique<Family<T>>(&builder.Name(name).Help(EscapeHelp(help)).Register(*registry_), std::move(label_names));
  }
  return *family;
}

CounterFamily& MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                           std::vector<std::string> label_names) {
  return Add(counters_, prometheus::BuildCounter(), name, help, std::move(label_names));
}

GaugeFamily& MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                       std::vector<std::string> label_names) {
  return Add(gauges_, prometheus::BuildGauge(), name, help, std::move(label_names));
}

std::string MetricsRegistry::Render() const { return prometheus::TextSerializer().Serialize(registry_->Collect()); }

}  // namespace rpci
