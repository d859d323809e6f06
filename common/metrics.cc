#include "common/metrics.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace rpci {
namespace {

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return absl::StrCat(static_cast<int64_t>(v));
  return absl::StrCat(v);
}

std::string EscapeLabelValue(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(const std::string& s) {
  std::string out;
  for (char c : s) {
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

// {a="x",b="y"} with an optional extra label (le for histogram buckets).
std::string LabelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      const std::string& extra_name = "", const std::string& extra_value = "") {
  std::vector<std::string> parts;
  for (size_t i = 0; i < names.size(); ++i) {
    parts.push_back(absl::StrCat(names[i], "=\"", EscapeLabelValue(values[i]), "\""));
  }
  if (!extra_name.empty()) parts.push_back(absl::StrCat(extra_name, "=\"", extra_value, "\""));
  if (parts.empty()) return "";
  std::string out = "{";
  for (size_t i = 0; i < parts.size(); ++i) absl::StrAppend(&out, i ? "," : "", parts[i]);
  return out + "}";
}

void Header(std::string* out, const std::string& name, const std::string& help, const char* type) {
  absl::StrAppend(out, "# HELP ", name, " ", EscapeHelp(help), "\n# TYPE ", name, " ", type, "\n");
}

template <typename F, typename... Args>
F& AddFamily(std::mutex& mu, std::map<std::string, std::unique_ptr<F>>& families,
             const std::string& name, Args&&... args) {
  std::lock_guard<std::mutex> lock(mu);
  auto& slot = families[name];
  if (!slot) slot = std::make_unique<F>(name, std::forward<Args>(args)...);
  return *slot;
}

}  // namespace

void Counter::Inc(double by) {
  std::lock_guard<std::mutex> lock(mu_);
  value_ += by;
}
double Counter::value() const {
  std::lock_guard<std::mutex> lock(mu_);
  return value_;
}

void Gauge::Set(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  value_ = v;
}
void Gauge::Add(double by) {
  std::lock_guard<std::mutex> lock(mu_);
  value_ += by;
}
double Gauge::value() const {
  std::lock_guard<std::mutex> lock(mu_);
  return value_;
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)) {
  std::sort(bounds_.begin(), bounds_.end());
  buckets_.assign(bounds_.size() + 1, 0);
}

void Histogram::Observe(double v) {
  std::lock_guard<std::mutex> lock(mu_);
  size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  ++buckets_[i];
  sum_ += v;
  ++count_;
}

Histogram::Snapshot Histogram::snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  Snapshot s;
  s.bounds = bounds_;
  uint64_t running = 0;
  for (uint64_t b : buckets_) {
    running += b;
    s.cumulative.push_back(running);
  }
  s.sum = sum_;
  s.count = count_;
  return s;
}

CounterFamily& MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                           std::vector<std::string> label_names) {
  return AddFamily(mu_, counters_, name, help, std::move(label_names));
}

GaugeFamily& MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                       std::vector<std::string> label_names) {
  return AddFamily(mu_, gauges_, name, help, std::move(label_names));
}

HistogramFamily& MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                               std::vector<double> bounds,
                                               std::vector<std::string> label_names) {
  return AddFamily(mu_, histograms_, name, help, std::move(label_names), std::move(bounds));
}

std::string MetricsRegistry::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [name, family] : counters_) {
    Header(&out, name, family->help(), "counter");
    for (const auto& [labels, c] : family->Series()) {
      absl::StrAppend(&out, name, LabelText(family->label_names(), labels), " ",
                      FormatValue(c->value()), "\n");
    }
  }
  for (const auto& [name, family] : gauges_) {
    Header(&out, name, family->help(), "gauge");
    for (const auto& [labels, g] : family->Series()) {
      absl::StrAppend(&out, name, LabelText(family->label_names(), labels), " ",
                      FormatValue(g->value()), "\n");
    }
  }
  for (const auto& [name, family] : histograms_) {
    Header(&out, name, family->help(), "histogram");
    for (const auto& [labels, h] : family->Series()) {
      Histogram::Snapshot s = h->snapshot();
      for (size_t i = 0; i <= s.bounds.size(); ++i) {
        std::string le = i < s.bounds.size() ? FormatValue(s.bounds[i]) : "+Inf";
        absl::StrAppend(&out, name, "_bucket", LabelText(family->label_names(), labels, "le", le),
                        " ", s.cumulative[i], "\n");
      }
      std::string l = LabelText(family->label_names(), labels);
      absl::StrAppend(&out, name, "_sum", l, " ", FormatValue(s.sum), "\n");
      absl::StrAppend(&out, name, "_count", l, " ", s.count, "\n");
    }
  }
  return out;
}

}  // namespace rpci
