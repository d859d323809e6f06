#include "common/testing/exposition_format.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace rpci::testing {
namespace {

using Labels = std::map<std::string, std::string>;

bool IsNameStart(char c, bool colon) { return absl::ascii_isalpha(c) || c == '_' || (colon && c == ':'); }
bool IsName(absl::string_view s, bool colon) {
  if (s.empty() || !IsNameStart(s[0], colon)) return false;
  for (char c : s) {
    if (!IsNameStart(c, colon) && !absl::ascii_isdigit(c)) return false;
  }
  return true;
}
bool IsMetricName(absl::string_view s) { return IsName(s, true); }
bool IsLabelName(absl::string_view s) { return IsName(s, false) && s.substr(0, 2) != "__"; }
bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// Go's strconv.ParseFloat, which the format names: decimal or hex, or
// [+-]Inf / NaN in any case.
bool ParseGoFloat(absl::string_view t, double* out) {
  std::string lower = absl::AsciiStrToLower(t);
  absl::string_view unsigned_part = lower;
  if (!unsigned_part.empty() && (unsigned_part[0] == '+' || unsigned_part[0] == '-')) unsigned_part.remove_prefix(1);
  if (unsigned_part == "inf" || unsigned_part == "infinity") {
    *out = lower[0] == '-' ? -HUGE_VAL : HUGE_VAL;
    return true;
  }
  if (lower == "nan") {
    *out = NAN;
    return true;
  }
  if (t.empty() || IsBlank(t[0]) || unsigned_part.substr(0, 3) == "nan" || unsigned_part.substr(0, 3) == "inf") {
    return false;
  }
  std::string s(t);
  char* end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return end == s.c_str() + s.size();
}

struct Cursor {
  absl::string_view rest;
  void SkipBlanks() {
    while (!rest.empty() && IsBlank(rest[0])) rest.remove_prefix(1);
  }
  absl::string_view Token(bool (*ok)(char)) {
    size_t n = 0;
    while (n < rest.size() && ok(rest[n])) ++n;
    absl::string_view t = rest.substr(0, n);
    rest.remove_prefix(n);
    return t;
  }
  bool Eat(char c) {
    if (rest.empty() || rest[0] != c) return false;
    rest.remove_prefix(1);
    return true;
  }
};

bool NameChar(char c) { return absl::ascii_isalnum(c) || c == '_' || c == ':'; }
bool NotBlank(char c) { return !IsBlank(c); }

// Unescapes `text` allowing only the given escapes (besides \\ and \n).
bool Unescape(absl::string_view text, bool allow_quote, std::string* out) {
  out->clear();
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '\\') {
      out->push_back(text[i]);
      continue;
    }
    if (++i == text.size()) return false;
    if (text[i] == '\\') {
      out->push_back('\\');
    } else if (text[i] == 'n') {
      out->push_back('\n');
    } else if (text[i] == '"' && allow_quote) {
      out->push_back('"');
    } else {
      return false;
    }
  }
  return true;
}

class Checker {
 public:
  absl::Status Line(int n, absl::string_view line);
  absl::Status Finish();
  Exposition Take() { return std::move(out_); }

 private:
  absl::Status Err(const std::string& what) const { return absl::InvalidArgumentError(absl::StrCat("line ", n_, ": ", what)); }
  absl::Status Comment(absl::string_view line);
  absl::Status SampleLine(absl::string_view line);
  absl::Status ParseLabels(Cursor* c, Labels* labels);
  absl::Status Enter(const std::string& family);
  absl::Status CheckHistogram(const std::string& family) const;

  int n_ = 0;
  Exposition out_;
  std::string current_;
  std::set<std::string> closed_, sampled_;
  std::set<std::pair<std::string, Labels>> series_;
};

absl::Status Checker::Enter(const std::string& family) {
  if (family == current_) return absl::OkStatus();
  if (closed_.count(family)) return Err(absl::StrCat("lines of ", family, " are not one group"));
  if (!current_.empty()) closed_.insert(current_);
  current_ = family;
  return absl::OkStatus();
}

absl::Status Checker::Line(int n, absl::string_view line) {
  n_ = n;
  if (line.empty()) return absl::OkStatus();
  if (line[0] == '#') return Comment(line);
  return SampleLine(line);
}

absl::Status Checker::Comment(absl::string_view line) {
  Cursor c{line.substr(1)};
  c.SkipBlanks();
  absl::string_view keyword = c.Token(NotBlank);
  if (keyword != "HELP" && keyword != "TYPE") return absl::OkStatus();  // a plain comment
  c.SkipBlanks();
  std::string name(c.Token(NotBlank));
  if (!IsMetricName(name)) return Err(absl::StrCat(keyword, ": bad metric name \"", name, "\""));
  if (absl::Status s = Enter(name); !s.ok()) return s;
  if (keyword == "HELP") {
    if (out_.help.count(name)) return Err(absl::StrCat("second HELP for ", name));
    c.SkipBlanks();
    if (!Unescape(c.rest, /*allow_quote=*/false, &out_.help[name])) return Err("HELP: bad escape");
    return absl::OkStatus();
  }
  c.SkipBlanks();
  std::string type(c.Token(NotBlank));
  c.SkipBlanks();
  static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary", "untyped"};
  if (!kTypes.count(type) || !c.rest.empty()) return Err(absl::StrCat("TYPE: bad type \"", type, "\""));
  if (out_.types.count(name)) return Err(absl::StrCat("second TYPE for ", name));
  if (sampled_.count(name)) return Err(absl::StrCat("TYPE of ", name, " after its samples"));
  out_.types[name] = type;
  return absl::OkStatus();
}

absl::Status Checker::ParseLabels(Cursor* c, Labels* labels) {
  for (;;) {
    c->SkipBlanks();
    if (c->Eat('}')) return absl::OkStatus();
    std::string name(c->Token(NameChar));
    if (!IsLabelName(name)) return Err(absl::StrCat("bad label name \"", name, "\""));
    c->SkipBlanks();
    if (!c->Eat('=')) return Err(absl::StrCat("label ", name, ": expected '='"));
    c->SkipBlanks();
    if (!c->Eat('"')) return Err(absl::StrCat("label ", name, ": value not quoted"));
    size_t end = 0;
    while (end < c->rest.size() && c->rest[end] != '"') end += c->rest[end] == '\\' ? 2 : 1;
    if (end >= c->rest.size()) return Err(absl::StrCat("label ", name, ": unterminated value"));
    std::string value;
    if (!Unescape(c->rest.substr(0, end), /*allow_quote=*/true, &value)) {
      return Err(absl::StrCat("label ", name, ": bad escape"));
    }
    c->rest.remove_prefix(end + 1);
    if (!labels->emplace(name, value).second) return Err(absl::StrCat("label ", name, " twice"));
    c->SkipBlanks();
    if (c->Eat('}')) return absl::OkStatus();
    if (!c->Eat(',')) return Err("expected ',' or '}' after a label");
  }
}

absl::Status Checker::SampleLine(absl::string_view line) {
  Cursor c{line};
  Sample s;
  s.name = std::string(c.Token(NameChar));
  if (!IsMetricName(s.name)) return Err(absl::StrCat("bad metric name in \"", line, "\""));
  c.SkipBlanks();
  if (c.Eat('{')) {
    if (absl::Status st = ParseLabels(&c, &s.labels); !st.ok()) return st;
  }
  c.SkipBlanks();
  absl::string_view value = c.Token(NotBlank);
  if (!ParseGoFloat(value, &s.value)) return Err(absl::StrCat("bad value \"", value, "\""));
  c.SkipBlanks();
  absl::string_view timestamp = c.Token(NotBlank);
  int64_t ms = 0;
  if (!timestamp.empty() && !absl::SimpleAtoi(timestamp, &ms)) return Err("bad timestamp");
  c.SkipBlanks();
  if (!c.rest.empty()) return Err(absl::StrCat("text after the sample: \"", c.rest, "\""));
  std::string family = out_.FamilyOf(s.name);
  const std::string& type = out_.types.count(family) ? out_.types.at(family) : "";
  if (type == "histogram" && s.name == family) {
    return Err(absl::StrCat("histogram ", family, " has a sample without _bucket/_sum/_count"));
  }
  if (type == "histogram" && s.name == family + "_bucket" && !s.labels.count("le")) {
    return Err(absl::StrCat(s.name, " without le"));
  }
  if (absl::Status st = Enter(family); !st.ok()) return st;
  if (!series_.emplace(s.name, s.labels).second) return Err(absl::StrCat("series ", s.name, " twice"));
  sampled_.insert(family);
  out_.samples.push_back(std::move(s));
  return absl::OkStatus();
}

absl::Status Checker::CheckHistogram(const std::string& family) const {
  std::map<Labels, std::map<double, double>> buckets;  // labels without le -> le -> count
  for (const Sample& s : out_.samples) {
    if (s.name != family + "_bucket") continue;
    Labels rest = s.labels;
    double le = 0;
    if (!ParseGoFloat(rest["le"], &le)) return absl::InvalidArgumentError(absl::StrCat(family, ": bad le"));
    rest.erase("le");
    buckets[rest][le] = s.value;
  }
  for (const auto& [labels, by_le] : buckets) {
    double last = 0;
    for (const auto& [le, count] : by_le) {
      if (count < last) return absl::InvalidArgumentError(absl::StrCat(family, ": bucket counts decrease"));
      last = count;
    }
    if (!std::isinf(by_le.rbegin()->first)) return absl::InvalidArgumentError(absl::StrCat(family, ": no +Inf bucket"));
    bool count_ok = false, sum_ok = false;
    for (const Sample& s : out_.samples) {
      if (s.labels != labels) continue;
      if (s.name == family + "_count") count_ok = s.value == last;
      if (s.name == family + "_sum") sum_ok = true;
    }
    if (!count_ok || !sum_ok) {
      return absl::InvalidArgumentError(absl::StrCat(family, ": _count missing or not the +Inf bucket, or no _sum"));
    }
  }
  return absl::OkStatus();
}

absl::Status Checker::Finish() {
  for (const auto& [family, type] : out_.types) {
    if (type != "histogram") continue;
    if (absl::Status s = CheckHistogram(family); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace

std::string Exposition::FamilyOf(const std::string& sample_name) const {
  if (types.count(sample_name)) return sample_name;
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    absl::string_view name = sample_name;
    if (!absl::EndsWith(name, suffix)) continue;
    std::string base(name.substr(0, name.size() - std::strlen(suffix)));
    auto type = types.find(base);
    if (type == types.end()) continue;
    if (type->second == "histogram" || (type->second == "summary" && std::string(suffix) != "_bucket")) return base;
  }
  return sample_name;
}

absl::StatusOr<double> Exposition::Value(const std::string& name, const Labels& labels) const {
  for (const Sample& s : samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return absl::NotFoundError(absl::StrCat("no sample ", name));
}

absl::StatusOr<Exposition> CheckExpositionFormat(const std::string& text) {
  if (!text.empty() && text.back() != '\n') return absl::InvalidArgumentError("last line does not end in \\n");
  Checker checker;
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::Status s = checker.Line(++n, line); !s.ok()) return s;
  }
  if (absl::Status s = checker.Finish(); !s.ok()) return s;
  return checker.Take();
}

}  // namespace rpci::testing
