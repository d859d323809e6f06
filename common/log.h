#ifndef RPCI_COMMON_LOG_H_
#define RPCI_COMMON_LOG_H_

#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"

namespace rpci {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Parses "debug", "info", "warn", "error"; false on anything else.
bool ParseLogLevel(std::string_view text, LogLevel* level);

// Sets the process-wide minimum level by name (a --log-level flag);
// INVALID_ARGUMENT naming the bad value.
absl::Status SetMinLogLevel(std::string_view name);

using LogFields = std::vector<std::pair<std::string, nlohmann::json>>;

// Structured logger: each call writes one JSON object on one line with
// time, level, component, msg, the logger's context fields (session id,
// request id ...) and the call's own fields. Thread-safe; lines never
// interleave.
class Logger {
 public:
  explicit Logger(std::string component);

  // A logger that adds `key: value` to every line, e.g. With("session", id).
  Logger With(std::string key, nlohmann::json value) const;

  void Debug(std::string_view msg, const LogFields& fields = {}) const;
  void Info(std::string_view msg, const LogFields& fields = {}) const;
  void Warn(std::string_view msg, const LogFields& fields = {}) const;
  void Error(std::string_view msg, const LogFields& fields = {}) const;
  void Log(LogLevel level, std::string_view msg, const LogFields& fields) const;

  const std::string& component() const { return component_; }

  // Process-wide settings. Defaults: stderr, info.
  static void SetSink(std::ostream* out);
  static void SetMinLevel(LogLevel level);

 private:
  std::string component_;
  LogFields context_;
};

}  // namespace rpci

#endif  // RPCI_COMMON_LOG_H_
