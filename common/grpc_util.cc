#include "common/grpc_util.h"

#include "absl/strings/str_cat.h"

namespace rpci {

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  std::string message = what.empty() ? s.error_message() : absl::StrCat(what, ": ", s.error_message());
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), message);
}

std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

}  // namespace rpci
