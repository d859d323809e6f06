#include "common/daemon.h"

#include <cstdlib>
#include <iostream>

namespace rpci {

void AddNodeFlag(FlagSet& flags, std::string* node, const std::string& help) {
  if (const char* env = std::getenv("NODE_NAME"); env != nullptr && *env != '\0') *node = env;
  flags.String("node", node, help);
}

void AddLogLevelFlag(FlagSet& flags, std::string* level) {
  flags.String("log-level", level, "debug, info, warn or error");
}

std::optional<int> ApplyLogLevelFlag(const std::string& level) {
  if (absl::Status s = SetMinLogLevel(level); !s.ok()) {
    std::cerr << "--log-level: " << s.message() << "\n";
    return 2;
  }
  return std::nullopt;
}

int CannotStart(const Logger& log, const absl::Status& s) {
  log.Error("cannot start", {{"error", s.ToString()}});
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

}  // namespace rpci
