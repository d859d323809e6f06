#include "plugin/session_opener.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "absl/strings/str_format.h"
#include "session/session_key.h"
#include "session/wire.h"

namespace rpci::plugin {
absl::Status FillShape(const rpci::v1::OpenSessionResponse& resp, AttachedSession* session) {
  session->bars.clear();
  session->dma_size = 0;
  for (const rpci::v1::Region& r : resp.agent_regions()) {
    if (r.kind() == rpci::v1::REGION_KIND_BAR) session->bars.push_back({r.index(), r.size()});
    if (r.kind() == rpci::v1::REGION_KIND_DMA) session->dma_size = r.size();
  }
  if (resp.agent_regions().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("device ", session->device_id, ": agent answered OpenSession without regions"));
  }
  return absl::OkStatus();
}

AgentSessionOpener::AgentSessionOpener(std::shared_ptr<grpc::ChannelCredentials> creds, std::string compute_node,
                                       absl::Duration grant_wait)
    : creds_(creds ? std::move(creds) : grpc::InsecureChannelCredentials()),
      compute_node_(std::move(compute_node)),
      grant_wait_(grant_wait) {}

std::shared_ptr<grpc::Channel> AgentSessionOpener::ChannelTo(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& ch = channels_[endpoint];
  if (!ch) {
    grpc::ChannelArguments args;
    // Health probes must see an agent come back quickly. gRPC also takes
    // the minimum backoff as the connect (and TLS handshake) timeout: 100 ms
    // failed every mTLS handshake with a busy agent in the test machine
    // ("Handshake timed out", //tests/vm:verbs_e2e_test); the first retry
    // still comes after 100 ms.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 5000);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    ch = grpc::CreateCustomChannel(endpoint, creds_, args);
  }
  return ch;
}

absl::StatusOr<AttachedSession> AgentSessionOpener::Open(const rpci::v1::SessionGrant& grant,
                                                         const std::string& agent_endpoint) {
  auto stub = rpci::v1::SessionControl::NewStub(ChannelTo(agent_endpoint));
  rpci::v1::OpenSessionRequest req;
  req.set_grant_id(grant.grant_id());
  req.set_token(grant.token());
  req.set_compute_node(compute_node_);
  const absl::Time give_up = absl::Now() + grant_wait_;
  rpci::v1::OpenSessionResponse resp;
  const std::string what = absl::StrCat("device ", grant.device_id(), ": open session on agent ", agent_endpoint);
  // The agent learns grants from the controller's watch, usually within a
  // millisecond of the Claim: retry soon, then back off to 20 ms.
  auto backoff = std::chrono::microseconds(500);
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(absl::Seconds(5)));
    grpc::Status s = stub->OpenSession(&ctx, req, &resp);
    if (s.ok()) break;
    // It may not have this grant yet.
    if (s.error_code() != grpc::StatusCode::PERMISSION_DENIED || absl::Now() >= give_up) return FromGrpc(s, what);
    std::this_thread::sleep_for(backoff);
    backoff = std::min<std::chrono::microseconds>(backoff * 2, std::chrono::milliseconds(20));
  }
  if (resp.protocol_version() != session::kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrFormat("%s: agent speaks session protocol %u, this plugin %u", what,
                                                         resp.protocol_version(), session::kProtocolVersion));
  }
  if (absl::StatusOr<uint64_t> id = session::ParseSessionId(resp.session_id()); !id.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", id.status().message()));
  }
  if (absl::StatusOr<session::SessionKey> key = session::SessionKey::FromBytes(resp.session_key()); !key.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", key.status().message()));
  }
  AttachedSession out;
  out.device_id = grant.device_id();
  out.grant_id = grant.grant_id();
  out.session_id = resp.session_id();
  out.endpoint = agent_endpoint;
  out.fabric_provider = resp.fabric_provider();
  out.key = resp.session_key();
  if (absl::Status s = FillShape(resp, &out); !s.ok()) return s;
  return out;
}

absl::Status AgentSessionOpener::Close(const AttachedSession& session) {
  auto stub = rpci::v1::SessionControl::NewStub(ChannelTo(session.endpoint));
  rpci::v1::CloseSessionRequest req;
  req.set_session_id(session.session_id);
  req.set_session_key(session.key);
  rpci::v1::CloseSessionResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(5)));
  grpc::Status s = stub->CloseSession(&ctx, req, &resp);
  if (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) return absl::OkStatus();
  return FromGrpc(s, absl::StrCat("device ", session.device_id, ": close session ", session.session_id));
}

absl::Status AgentSessionOpener::Check(const AttachedSession& session) {
  auto stub = rpci::v1::SessionControl::NewStub(ChannelTo(session.endpoint));
  rpci::v1::SessionStatusRequest req;
  req.set_session_id(session.session_id);
  req.set_session_key(session.key);
  rpci::v1::SessionStatusResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(absl::Seconds(2)));
  grpc::Status s = stub->SessionStatus(&ctx, req, &resp);
  const std::string what = absl::StrCat("device ", session.device_id, ": session ", session.session_id);
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat(what, ": agent ", session.endpoint, " unreachable: ", s.error_message()));
  }
  if (!resp.live()) return absl::NotFoundError(absl::StrCat(what, " is gone on agent ", session.endpoint));
  return absl::OkStatus();
}

absl::Status AgentSessionOpener::ProbeAgent(const std::string& agent_endpoint, absl::Duration timeout) {
  std::shared_ptr<grpc::Channel> ch = ChannelTo(agent_endpoint);
  if (ch->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY || ch->WaitForConnected(In(timeout))) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat("agent ", agent_endpoint, " unreachable"));
}

}  // namespace rpci::plugin
