#ifndef RPCI_PLUGIN_GRPC_UTIL_H_
#define RPCI_PLUGIN_GRPC_UTIL_H_

// Status and deadline conversions shared by the plugin's gRPC clients and
// servers (absl and gRPC status codes are the same numbers).

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace rpci::plugin {

// A gRPC deadline `d` from now.
inline std::chrono::system_clock::time_point In(absl::Duration d) {
  return std::chrono::system_clock::now() + absl::ToChronoMilliseconds(d);
}

inline grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

// The call's status as an absl::Status whose message starts with `what`.
inline absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), absl::StrCat(what, ": ", s.error_message()));
}

}  // namespace rpci::plugin

#endif  // RPCI_PLUGIN_GRPC_UTIL_H_
