#ifndef RPCI_COMMON_CONFIG_H_
#define RPCI_COMMON_CONFIG_H_

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace rpci {

// Loads a config file. Files ending in .json are parsed as JSON, anything else
// as YAML (of which JSON is a subset). NOT_FOUND for a missing file,
// INVALID_ARGUMENT naming the file and line for a syntax error.
absl::StatusOr<nlohmann::json> LoadConfigFile(const std::string& path);

// Parses YAML (or JSON) text into JSON; `origin` names the source in errors.
// YAML scalars become booleans, integers, floats or strings as YAML 1.2's core
// schema reads them ("true", "42", "1.5"); quoted scalars stay strings.
absl::StatusOr<nlohmann::json> ParseConfigText(const std::string& text, const std::string& origin);

// Typed, checked access to a JSON config object. A getter leaves its output
// untouched when the key is absent, and records an error naming the full key
// path ("agent.yaml: fabric.provider: expected string, got number") when the
// value has the wrong type or range. Finish() on the top-level reader returns
// every error at once, plus every key no reader asked for, so typos are caught.
//
//   ConfigReader r(json, "agent.yaml");
//   r.String("sysfs_root", &cfg.sysfs_root);
//   ConfigReader fabric = r.Object("fabric");
//   fabric.Enum("provider", {"auto", "tcp"}, &cfg.provider);
//   absl::Status s = r.Finish();
//
// Readers are cheap handles; nested readers share their root's error list.
class ConfigReader {
 public:
  ConfigReader(const nlohmann::json& object, std::string origin);

  void String(const std::string& key, std::string* out);
  void Bool(const std::string& key, bool* out);
  void Int(const std::string& key, int64_t* out, int64_t min = std::numeric_limits<int64_t>::min(),
           int64_t max = std::numeric_limits<int64_t>::max());
  void Double(const std::string& key, double* out);
  void StringList(const std::string& key, std::vector<std::string>* out);
  // A string that must be one of `allowed`.
  void Enum(const std::string& key, const std::vector<std::string>& allowed, std::string* out);
  // Any JSON value, unchecked (for free-form maps such as labels).
  void Raw(const std::string& key, nlohmann::json* out);

  // A nested object; an absent key gives a reader of an empty object.
  ConfigReader Object(const std::string& key);
  // A list of objects, one reader each; path "rules[2].pool" in errors.
  std::vector<ConfigReader> ObjectList(const std::string& key);

  bool Has(const std::string& key) const;

  // Records an error of the caller's own (e.g. a cross-field rule) at `key`.
  void AddError(const std::string& key, const std::string& message);

  // OK, or INVALID_ARGUMENT listing every error and unknown key under this
  // reader (call it on the top-level reader).
  absl::Status Finish() const;

 private:
  struct Node;
  struct Shared;
  ConfigReader(std::shared_ptr<Node> node, std::shared_ptr<Shared> shared);
  const nlohmann::json* Lookup(const std::string& key);
  std::string PathOf(const std::string& key) const;

  std::shared_ptr<Node> node_;
  std::shared_ptr<Shared> shared_;
};

// The JSON type name of a value, for error messages ("string", "number" ...).
std::string JsonTypeName(const nlohmann::json& value);

}  // namespace rpci

#endif  // RPCI_COMMON_CONFIG_H_
