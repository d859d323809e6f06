#include "common/log.h"

#include <atomic>
#include <iostream>
#include <iterator>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rpci {
namespace {

std::mutex sink_mu;
std::ostream* sink = &std::cerr;
std::atomic<int> min_level{static_cast<int>(LogLevel::kInfo)};

// Each level's name, at the level's value (LogLevel counts from 0): one table
// for printing a level and for parsing --log-level.
constexpr const char* kLevelNames[] = {"debug", "info", "warn", "error"};

const char* LevelName(LogLevel level) {
  const size_t i = static_cast<size_t>(level);
  return i < std::size(kLevelNames) ? kLevelNames[i] : "info";
}

}  // namespace

bool ParseLogLevel(std::string_view text, LogLevel* level) {
  for (size_t i = 0; i < std::size(kLevelNames); ++i) {
    if (text == kLevelNames[i]) {
      *level = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

absl::Status SetMinLogLevel(std::string_view name) {
  LogLevel level;
  if (!ParseLogLevel(name, &level)) {
    return absl::InvalidArgumentError(
        absl::StrCat("log level \"", std::string(name), "\" is not one of debug, info, warn, error"));
  }
  Logger::SetMinLevel(level);
  return absl::OkStatus();
}

Logger::Logger(std::string component) : component_(std::move(component)) {}

Logger Logger::With(std::string key, nlohmann::json value) const {
  Logger copy = *this;
  copy.context_.emplace_back(std::move(key), std::move(value));
  return copy;
}

void Logger::Debug(std::string_view msg, const LogFields& fields) const {
  Log(LogLevel::kDebug, msg, fields);
}
void Logger::Info(std::string_view msg, const LogFields& fields) const {
  Log(LogLevel::kInfo, msg, fields);
}
void Logger::Warn(std::string_view msg, const LogFields& fields) const {
  Log(LogLevel::kWarn, msg, fields);
}
void Logger::Error(std::string_view msg, const LogFields& fields) const {
  Log(LogLevel::kError, msg, fields);
}

void Logger::Log(LogLevel level, std::string_view msg, const LogFields& fields) const {
  if (static_cast<int>(level) < min_level.load(std::memory_order_relaxed)) return;
  nlohmann::json line = nlohmann::json::object();
  line["time"] = absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  line["level"] = LevelName(level);
  line["component"] = component_;
  line["msg"] = std::string(msg);
  for (const auto& [k, v] : context_) line[k] = v;
  for (const auto& [k, v] : fields) line[k] = v;
  // Replace invalid UTF-8 (e.g. bytes from a malformed sysfs file) instead of throwing.
  std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::lock_guard<std::mutex> lock(sink_mu);
  *sink << text << '\n';
  sink->flush();
}

void Logger::SetSink(std::ostream* out) {
  std::lock_guard<std::mutex> lock(sink_mu);
  sink = out;
}

void Logger::SetMinLevel(LogLevel level) { min_level.store(static_cast<int>(level)); }

bool LogLimiter::Allow(absl::Time now, uint64_t* suppressed) {
  std::lock_guard<std::mutex> lock(mu_);
  if (now < next_) {
    ++held_;
    return false;
  }
  next_ = now + interval_;
  *suppressed = std::exchange(held_, 0);
  return true;
}

}  // namespace rpci
