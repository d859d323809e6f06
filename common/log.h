#ifndef RPCI_COMMON_LOG_H_
#define RPCI_COMMON_LOG_H_

#include <cstdint>
#include <mutex>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
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

// For lines a peer can cause at will (a refused frame): lets one through per
// `interval` and counts the ones held back, so a flood of bad input is
// counted by metrics but cannot flood the log. Thread-safe.
class LogLimiter {
 public:
  explicit LogLimiter(absl::Duration interval) : interval_(interval) {}
  // True when a line may be written at `now`; then *suppressed is the number
  // of lines held back since the last one written (for a "suppressed" field).
  bool Allow(absl::Time now, uint64_t* suppressed);

 private:
  std::mutex mu_;
  const absl::Duration interval_;
  absl::Time next_ = absl::InfinitePast();
  uint64_t held_ = 0;
};

}  // namespace rpci

#endif  // RPCI_COMMON_LOG_H_
