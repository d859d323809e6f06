#ifndef RPCI_COMMON_GRPC_UTIL_H_
#define RPCI_COMMON_GRPC_UTIL_H_

// Conversions between Abseil and gRPC at the RPC boundary: statuses (the two
// libraries number their codes the same, so the code is kept as is) and
// deadlines.

#include <chrono>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace rpci {

// The status a gRPC handler returns for `s`: same code, same message.
grpc::Status ToGrpc(const absl::Status& s);

// A handler's answer from `r`: its value in `*out` and OK, or its error as
// ToGrpc gives it (`*out` untouched).
template <typename T>
grpc::Status Reply(absl::StatusOr<T> r, T* out) {
  if (!r.ok()) return ToGrpc(r.status());
  *out = *std::move(r);
  return grpc::Status::OK;
}

// A call's status as an absl::Status with the same code; the message is
// "<what>: <gRPC message>", or the gRPC message alone when `what` is empty.
absl::Status FromGrpc(const grpc::Status& s, const std::string& what = "");

// A gRPC deadline `d` from now.
std::chrono::system_clock::time_point In(absl::Duration d);

// One unary call `method` of `stub` with a deadline `timeout` from now: the
// response, or the call's status as FromGrpc(status, what) gives it.
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> UnaryCall(Stub& stub,
                                   grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&, Response*),
                                   const Request& req, absl::Duration timeout, const std::string& what) {
  grpc::ClientContext ctx;
  ctx.set_deadline(In(timeout));
  Response resp;
  grpc::Status s = (stub.*method)(&ctx, req, &resp);
  if (!s.ok()) return FromGrpc(s, what);
  return resp;
}

}  // namespace rpci

#endif  // RPCI_COMMON_GRPC_UTIL_H_
