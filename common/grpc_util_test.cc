#include "common/grpc_util.h"

#include "gtest/gtest.h"

namespace rpci {
namespace {

TEST(GrpcUtilTest, EveryCodeKeepsItsNumberBothWays) {
  for (int code = 1; code <= 16; ++code) {
    absl::Status a(static_cast<absl::StatusCode>(code), "boom");
    grpc::Status g = ToGrpc(a);
    EXPECT_EQ(static_cast<int>(g.error_code()), code);
    EXPECT_EQ(g.error_message(), "boom");
    absl::Status back = FromGrpc(g);
    EXPECT_EQ(back, a);
  }
}

TEST(GrpcUtilTest, NamedGrpcCodesMapToTheAbseilCodeOfTheSameName) {
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "x")).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(FromGrpc(grpc::Status(grpc::StatusCode::UNAVAILABLE, "x")).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(ToGrpc(absl::FailedPreconditionError("x")).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(ToGrpc(absl::UnauthenticatedError("x")).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST(GrpcUtilTest, FromGrpcPrefixesWhatWasBeingDone) {
  absl::Status s = FromGrpc(grpc::Status(grpc::StatusCode::NOT_FOUND, "no such device"), "claim d1");
  EXPECT_EQ(s, absl::NotFoundError("claim d1: no such device"));
}

TEST(GrpcUtilTest, OkStaysOkWithoutAMessage) {
  EXPECT_TRUE(ToGrpc(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpc(grpc::Status::OK, "claim d1").ok());
  EXPECT_EQ(FromGrpc(grpc::Status::OK, "claim d1").message(), "");
}

TEST(GrpcUtilTest, ReplyFillsTheResponseOrReturnsTheErrorLeavingItUntouched) {
  std::string resp = "untouched";
  grpc::Status bad = Reply(absl::StatusOr<std::string>(absl::NotFoundError("device d1: gone")), &resp);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(bad.error_message(), "device d1: gone");
  EXPECT_EQ(resp, "untouched");
  EXPECT_TRUE(Reply(absl::StatusOr<std::string>("answer"), &resp).ok());
  EXPECT_EQ(resp, "answer");
}

TEST(GrpcUtilTest, InIsThatFarInTheFuture) {
  auto before = std::chrono::system_clock::now();
  auto deadline = In(absl::Seconds(5));
  EXPECT_GE(deadline - before, std::chrono::milliseconds(5000));
  EXPECT_LE(deadline - before, std::chrono::milliseconds(6000));
}

}  // namespace
}  // namespace rpci
