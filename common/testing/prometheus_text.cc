#include "common/testing/prometheus_text.h"

#include <cctype>
#include <cstdlib>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace rpci::testing {
namespace {

bool IsNameStart(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
bool IsNameChar(char c) { return IsNameStart(c) || std::isdigit(static_cast<unsigned char>(c)); }

absl::Status LineError(int line, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("line ", line, ": ", what));
}

bool ParseValue(const std::string& text, double* out) {
  if (text == "+Inf") {
    *out = HUGE_VAL;
    return true;
  }
  if (text == "-Inf") {
    *out = -HUGE_VAL;
    return true;
  }
  if (text == "NaN") {
    *out = NAN;
    return true;
  }
  char* end = nullptr;
  *out = std::strtod(text.c_str(), &end);
  return !text.empty() && end == text.c_str() + text.size();
}

}  // namespace

absl::StatusOr<double> Exposition::Value(const std::string& name,
                                         const std::map<std::string, std::string>& labels) const {
  for (const Sample& s : samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return absl::NotFoundError(absl::StrCat("no sample ", name));
}

absl::StatusOr<Exposition> ParsePrometheusText(const std::string& text) {
  Exposition out;
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream words(line);
      std::string hash, kind, name, rest;
      words >> hash >> kind >> name;
      std::getline(words, rest);
      if (!rest.empty() && rest[0] == ' ') rest = rest.substr(1);
      if (kind == "TYPE") {
        if (rest != "counter" && rest != "gauge" && rest != "histogram" && rest != "summary" &&
            rest != "untyped") {
          return LineError(n, "unknown type " + rest);
        }
        out.types[name] = rest;
      } else if (kind == "HELP") {
        out.help[name] = rest;
      }
      continue;
    }
    Sample s;
    size_t i = 0;
    if (!IsNameStart(line[0])) return LineError(n, "bad metric name");
    while (i < line.size() && IsNameChar(line[i])) s.name += line[i++];
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        std::string key;
        while (i < line.size() && IsNameChar(line[i])) key += line[i++];
        if (key.empty() || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
          return LineError(n, "bad label");
        }
        i += 2;
        std::string value;
        while (i < line.size() && line[i] != '"') {
          if (line[i] == '\\' && i + 1 < line.size()) {
            char e = line[++i];
            value += e == 'n' ? '\n' : e;
          } else {
            value += line[i];
          }
          ++i;
        }
        if (i >= line.size()) return LineError(n, "unterminated label value");
        ++i;
        s.labels[key] = value;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (i >= line.size()) return LineError(n, "unterminated labels");
      ++i;
    }
    if (i >= line.size() || line[i] != ' ') return LineError(n, "missing value");
    std::string value_text = line.substr(i + 1);
    if (size_t sp = value_text.find(' '); sp != std::string::npos) value_text.resize(sp);
    if (!ParseValue(value_text, &s.value)) return LineError(n, "bad value \"" + value_text + "\"");
    out.samples.push_back(std::move(s));
  }
  return out;
}

}  // namespace rpci::testing
