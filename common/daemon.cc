#include "common/daemon.h"

namespace rpci {

int CannotStart(const Logger& log, const absl::Status& s) {
  log.Error("cannot start", {{"error", s.ToString()}});
  return s.code() == absl::StatusCode::kInvalidArgument ? 2 : 1;
}

}  // namespace rpci
