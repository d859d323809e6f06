#ifndef RPCI_COMMON_FLAGS_H_
#define RPCI_COMMON_FLAGS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace rpci {

// Command-line flags of one binary: `--name=value`, `--name value`, and for
// booleans `--name` / `--no-name`. Parse() checks and stores; Apply() then
// writes the given flags into their targets, so a binary can load its config
// file between the two and let flags override it. `--help` is built in.
class FlagSet {
 public:
  // `usage` is the first line of --help, e.g. "rpci-agent serve [flags]".
  FlagSet(std::string usage, std::string description);

  // Targets must outlive the FlagSet; their current values are the defaults
  // shown in --help.
  void String(const std::string& name, std::string* target, const std::string& help);
  void Bool(const std::string& name, bool* target, const std::string& help);
  void Int(const std::string& name, int64_t* target, const std::string& help);

  // A condition the applied flags must meet (a flag given, a count
  // positive). ParseOrExit checks each after Apply, in the order given; at
  // the first that does not hold it prints `message` to `err` and returns 2.
  void Require(std::function<bool()> holds, std::string message);

  // INVALID_ARGUMENT naming the flag for unknown flags, missing values or bad
  // numbers. Returns the positional arguments.
  absl::StatusOr<std::vector<std::string>> Parse(int argc, const char* const* argv);
  absl::StatusOr<std::vector<std::string>> Parse(const std::vector<std::string>& args);

  // Writes every flag given on the command line into its target.
  void Apply();

  // What every main does with its command line: Parse; on an error print it
  // and the help to `err` and return 2; on --help print the help to `out` and
  // return 0; otherwise Apply, check every Require, and return nullopt (go
  // on) with the positional arguments in `positional`. Without `positional` the command takes flags
  // only: a positional word is an error (printed with the help, return 2).
  std::optional<int> ParseOrExit(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
                                 std::vector<std::string>* positional = nullptr);
  // The same over main's argv, printing to stdout/stderr.
  std::optional<int> ParseOrExit(int argc, const char* const* argv,
                                 std::vector<std::string>* positional = nullptr);

  bool help_requested() const { return help_requested_; }
  bool IsSet(const std::string& name) const;
  std::string Help() const;

 private:
  enum class Kind { kString, kBool, kInt };
  struct Flag {
    Kind kind;
    void* target;
    std::string help;
    std::string default_text;
    bool set = false;
    std::string string_value;
    bool bool_value = false;
    int64_t int_value = 0;
  };
  void Add(const std::string& name, Kind kind, void* target, const std::string& help,
           std::string default_text);

  std::string usage_;
  std::string description_;
  std::map<std::string, Flag> flags_;
  std::vector<std::pair<std::function<bool()>, std::string>> requirements_;
  bool help_requested_ = false;
};

}  // namespace rpci

#endif  // RPCI_COMMON_FLAGS_H_
