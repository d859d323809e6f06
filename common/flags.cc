#include "common/flags.h"


#include <iostream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace rpci {

FlagSet::FlagSet(std::string usage, std::string description)
    : usage_(std::move(usage)), description_(std::move(description)) {}

void FlagSet::Add(const std::string& name, Kind kind, void* target, const std::string& help,
                  std::string default_text) {
  Flag f;
  f.kind = kind;
  f.target = target;
  f.help = help;
  f.default_text = std::move(default_text);
  flags_[name] = std::move(f);
}

void FlagSet::String(const std::string& name, std::string* target, const std::string& help) {
  Add(name, Kind::kString, target, help, "\"" + *target + "\"");
}

void FlagSet::Bool(const std::string& name, bool* target, const std::string& help) {
  Add(name, Kind::kBool, target, help, *target ? "true" : "false");
}

void FlagSet::Int(const std::string& name, int64_t* target, const std::string& help) {
  Add(name, Kind::kInt, target, help, absl::StrCat(*target));
}

absl::StatusOr<std::vector<std::string>> FlagSet::Parse(int argc, const char* const* argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return Parse(args);
}

absl::StatusOr<std::vector<std::string>> FlagSet::Parse(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + i + 1, args.end());
      break;
    }
    if (arg.size() < 3 || arg.compare(0, 2, "--") != 0) {
      positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    if (name == "help" || name == "h") {
      help_requested_ = true;
      continue;
    }
    auto it = flags_.find(name);
    bool negated = false;
    if (it == flags_.end() && name.compare(0, 3, "no-") == 0) {
      it = flags_.find(name.substr(3));
      negated = it != flags_.end() && it->second.kind == Kind::kBool && !has_value;
      if (!negated) it = flags_.end();
    }
    if (it == flags_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name, " (see --help)"));
    }
    Flag& f = it->second;
    if (f.kind == Kind::kBool) {
      if (negated) {
        f.bool_value = false;
      } else if (!has_value || value == "true" || value == "1") {
        f.bool_value = true;
      } else if (value == "false" || value == "0") {
        f.bool_value = false;
      } else {
        return absl::InvalidArgumentError(
            absl::StrCat("flag --", name, ": expected true or false, got \"", value, "\""));
      }
      f.set = true;
      continue;
    }
    if (!has_value) {
      if (i + 1 >= args.size()) {
        return absl::InvalidArgumentError(absl::StrCat("flag --", name, ": missing value"));
      }
      value = args[++i];
    }
    if (f.kind == Kind::kInt && !absl::SimpleAtoi(value, &f.int_value)) {
      return absl::InvalidArgumentError(
          absl::StrCat("flag --", name, ": expected integer, got \"", value, "\""));
    }
    f.string_value = value;
    f.set = true;
  }
  return positional;
}

void FlagSet::Apply() {
  for (auto& [name, f] : flags_) {
    if (!f.set) continue;
    switch (f.kind) {
      case Kind::kString:
        *static_cast<std::string*>(f.target) = f.string_value;
        break;
      case Kind::kBool:
        *static_cast<bool*>(f.target) = f.bool_value;
        break;
      case Kind::kInt:
        *static_cast<int64_t*>(f.target) = f.int_value;
        break;
    }
  }
}

std::optional<int> FlagSet::ParseOrExit(const std::vector<std::string>& args, std::ostream& out,
                                        std::ostream& err, std::vector<std::string>* positional) {
  absl::StatusOr<std::vector<std::string>> parsed = Parse(args);
  if (!parsed.ok()) {
    err << parsed.status().message() << "\n\n" << Help();
    return 2;
  }
  if (help_requested_) {
    out << Help();
    return 0;
  }
  if (positional == nullptr && !parsed->empty()) {
    err << "unexpected argument \"" << parsed->front() << "\" (this command takes flags only)\n\n" << Help();
    return 2;
  }
  Apply();
  for (const auto& [holds, message] : requirements_) {
    if (!holds()) {
      err << message << "\n";
      return 2;
    }
  }
  if (positional != nullptr) *positional = *std::move(parsed);
  return std::nullopt;
}

void FlagSet::Require(std::function<bool()> holds, std::string message) {
  requirements_.emplace_back(std::move(holds), std::move(message));
}

std::optional<int> FlagSet::ParseOrExit(int argc, const char* const* argv, std::vector<std::string>* positional) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return ParseOrExit(args, std::cout, std::cerr, positional);
}

bool FlagSet::IsSet(const std::string& name) const {
  auto it = flags_.find(name);
  return it != flags_.end() && it->second.set;
}

std::string FlagSet::Help() const {
  std::string out = absl::StrCat("usage: ", usage_, "\n\n", description_, "\n\nflags:\n");
  for (const auto& [name, f] : flags_) {
    absl::StrAppend(&out, "  --", name, "\n      ", f.help, " (default ", f.default_text, ")\n");
  }
  absl::StrAppend(&out, "  --help\n      print this help and exit\n");
  return out;
}

}  // namespace rpci
