#include "client/control_client.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/grpc_util.h"
#include "proto/rpci/v1/session.grpc.pb.h"
#include "session/wire.h"

namespace rpci::client {

std::string FormatBarList(const std::vector<BarMirror>& bars) {
  std::vector<std::string> parts;
  for (const BarMirror& b : bars) parts.push_back(absl::StrCat(b.index, ":", b.size));
  return absl::StrJoin(parts, ",");
}

absl::StatusOr<std::vector<BarMirror>> ParseBarList(const std::string& text) {
  std::vector<BarMirror> bars;
  for (absl::string_view entry : absl::StrSplit(text, ',')) {
    std::vector<absl::string_view> f = absl::StrSplit(entry, ':');
    uint32_t index = 0;
    uint64_t size = 0;
    if (f.size() != 2 || !absl::SimpleAtoi(f[0], &index) || !absl::SimpleAtoi(f[1], &size) || index > 5 ||
        size == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("BAR list \"", text, "\": entry \"", entry, "\" is not index:size (index 0-5, size > 0)"));
    }
    for (const BarMirror& b : bars) {
      if (b.index == index) return absl::InvalidArgumentError(absl::StrCat("BAR list \"", text, "\": BAR ", index, " twice"));
    }
    bars.push_back({static_cast<uint16_t>(index), size});
  }
  return bars;
}
absl::Status ReadShape(const rpci::v1::OpenSessionResponse& resp, SessionTicket* ticket) {
  ticket->bars.clear();
  ticket->dma_size = 0;
  for (const rpci::v1::Region& r : resp.agent_regions()) {
    if (r.kind() == rpci::v1::REGION_KIND_BAR) {
      if (r.index() > 5 || r.size() == 0) {
        return absl::InvalidArgumentError(absl::StrFormat("agent %s described BAR %u of %u bytes", ticket->endpoint,
                                                          r.index(), r.size()));
      }
      ticket->bars.push_back({static_cast<uint16_t>(r.index()), r.size()});
    }
    if (r.kind() == rpci::v1::REGION_KIND_DMA) ticket->dma_size = r.size();
  }
  if (ticket->dma_size == 0 || ticket->dma_size > (uint64_t{1} << 34)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("session %s: agent %s did not describe a DMA space", ticket->session_id.ToString(),
                        ticket->endpoint));
  }
  return absl::OkStatus();
}

ControlClient::ControlClient(ControlOptions options) : options_(std::move(options)) {}

std::shared_ptr<grpc::Channel> ControlClient::ChannelTo(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<grpc::Channel>& ch = channels_[endpoint];
  if (!ch) {
    grpc::ChannelArguments args;
    if (options_.quick_reconnect) {
      args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
      // gRPC's minimum connect timeout: one attempt (TCP and the TLS
      // handshake) may take this long. At 100 ms a TLS handshake on a slow
      // machine (the TCG test machine) never completed.
      args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 2000);
      args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    }
    ch = grpc::CreateCustomChannel(endpoint, options_.creds ? options_.creds : grpc::InsecureChannelCredentials(),
                                   args);
  }
  return ch;
}

void ControlClient::Prepare(const std::string& endpoint) { ChannelTo(endpoint)->GetState(/*try_to_connect=*/true); }

void ControlClient::Forget(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(mu_);
  channels_.erase(endpoint);
}

absl::StatusOr<SessionTicket> ControlClient::Reserve(const std::string& endpoint, const Reservation& reservation) {
  auto stub = rpci::v1::SessionControl::NewStub(ChannelTo(endpoint));
  rpci::v1::OpenSessionRequest req;
  req.set_grant_id(reservation.grant_id);
  req.set_token(reservation.token);
  req.set_compute_node(reservation.compute_node);
  rpci::v1::OpenSessionResponse resp;
  const std::string what = absl::StrCat("open session on agent ", endpoint, " for grant ", reservation.grant_id);
  const absl::Time give_up = absl::Now() + options_.grant_wait;
  // Usually the agent has the grant within a millisecond of the Claim:
  // retry soon, then back off to 20 ms.
  auto backoff = std::chrono::microseconds(500);
  while (true) {
    grpc::ClientContext ctx;
    ctx.set_deadline(In(options_.rpc_timeout));
    grpc::Status s = stub->OpenSession(&ctx, req, &resp);
    if (s.ok()) break;
    if (s.error_code() != grpc::StatusCode::PERMISSION_DENIED || absl::Now() >= give_up) return FromGrpc(s, what);
    std::this_thread::sleep_for(backoff);
    backoff = std::min<std::chrono::microseconds>(backoff * 2, std::chrono::milliseconds(20));
  }
  if (resp.protocol_version() != session::kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrFormat("%s: agent speaks session protocol %u, this client %u", what,
                                                         resp.protocol_version(), session::kProtocolVersion));
  }
  absl::StatusOr<session::SessionId> id = session::SessionId::Parse(resp.session_id());
  if (!id.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", id.status().message()));
  absl::StatusOr<session::SessionKey> key = session::SessionKey::FromBytes(resp.session_key());
  if (!key.ok()) return absl::InvalidArgumentError(absl::StrCat(what, ": ", key.status().message()));
  SessionTicket ticket{endpoint, *id, *key, resp.fabric_provider(), {}, 0};
  if (absl::Status s = ReadShape(resp, &ticket); !s.ok()) return s;
  return ticket;
}

absl::StatusOr<session::Nonce> ControlClient::Challenge(const SessionTicket& ticket, bool status_probe) {
  return StartChallenge(ticket, status_probe)->Finish();
}

std::unique_ptr<ControlClient::PendingChallenge> ControlClient::StartChallenge(const SessionTicket& ticket,
                                                                               bool status_probe) {
  std::unique_ptr<PendingChallenge> p(new PendingChallenge);
  p->what_ = "session " + ticket.session_id.ToString() + " on agent " + ticket.endpoint;
  rpci::v1::ChallengeRequest req;
  req.set_session_id(ticket.session_id.ToString());
  req.set_status_probe(status_probe);
  p->ctx_.set_deadline(In(options_.rpc_timeout));
  p->call_ = rpci::v1::SessionControl::NewStub(ChannelTo(ticket.endpoint))->AsyncChallenge(&p->ctx_, req, &p->cq_);
  p->call_->Finish(&p->resp_, &p->status_, p.get());
  return p;
}

absl::StatusOr<session::Nonce> ControlClient::PendingChallenge::Finish() {
  void* tag = nullptr;
  bool ok = false;
  if (!finished_) finished_ = cq_.Next(&tag, &ok);
  if (!finished_ || !ok) return absl::UnavailableError(what_ + ": challenge call lost");
  if (!status_.ok()) return FromGrpc(status_, what_);
  return session::NonceFromBytes(resp_.nonce());
}

ControlClient::PendingChallenge::~PendingChallenge() {
  if (!finished_) {
    ctx_.TryCancel();
    void* tag = nullptr;
    bool ok = false;
    cq_.Next(&tag, &ok);  // the call's completion, cancelled or not
  }
  cq_.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq_.Next(&tag, &ok)) {
  }
}

absl::Status ControlClient::Close(const SessionTicket& ticket, bool detach) {
  absl::StatusOr<session::Nonce> nonce = Challenge(ticket);
  if (!nonce.ok()) return nonce.status().code() == absl::StatusCode::kNotFound ? absl::OkStatus() : nonce.status();
  rpci::v1::CloseSessionRequest req;
  req.set_session_id(ticket.session_id.ToString());
  req.set_nonce(session::NonceBytes(*nonce));
  req.set_detach(detach);
  req.set_proof(session::Prove(ticket.key, detach ? session::ProofPurpose::kDetach : session::ProofPurpose::kClose,
                               *nonce, ticket.session_id, ""));
  rpci::v1::CloseSessionResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(In(options_.rpc_timeout));
  grpc::Status s = rpci::v1::SessionControl::NewStub(ChannelTo(ticket.endpoint))->CloseSession(&ctx, req, &resp);
  if (s.ok() || s.error_code() == grpc::StatusCode::NOT_FOUND) return absl::OkStatus();
  return FromGrpc(s, absl::StrCat("close session ", ticket.session_id.ToString(), " on agent ", ticket.endpoint));
}

absl::StatusOr<SessionState> ControlClient::Status(const SessionTicket& ticket) {
  absl::StatusOr<session::Nonce> nonce = Challenge(ticket, /*status_probe=*/true);
  if (!nonce.ok() && nonce.status().code() == absl::StatusCode::kNotFound) return SessionState{};
  rpci::v1::SessionStatusResponse resp;
  grpc::Status s = grpc::Status::OK;
  if (nonce.ok()) {
    rpci::v1::SessionStatusRequest req;
    req.set_session_id(ticket.session_id.ToString());
    req.set_nonce(session::NonceBytes(*nonce));
    req.set_proof(session::Prove(ticket.key, session::ProofPurpose::kStatus, *nonce, ticket.session_id, ""));
    grpc::ClientContext ctx;
    ctx.set_deadline(In(std::min(options_.rpc_timeout, absl::Seconds(2))));
    s = rpci::v1::SessionControl::NewStub(ChannelTo(ticket.endpoint))->SessionStatus(&ctx, req, &resp);
  }
  if (!nonce.ok() || !s.ok()) {
    return absl::UnavailableError(absl::StrCat("session ", ticket.session_id.ToString(), ": agent ", ticket.endpoint,
                                               " unreachable: ", nonce.ok() ? s.error_message() : nonce.status().message()));
  }
  return SessionState{resp.live(), resp.applied_sequence(), resp.completions()};
}

absl::Status ControlClient::Probe(const std::string& endpoint, absl::Duration timeout) {
  std::shared_ptr<grpc::Channel> ch = ChannelTo(endpoint);
  if (ch->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_READY || ch->WaitForConnected(In(timeout))) {
    return absl::OkStatus();
  }
  return absl::UnavailableError(absl::StrCat("agent ", endpoint, " unreachable"));
}

absl::StatusOr<ControlClient::Attached> ControlClient::Attach(const SessionTicket& ticket,
                                                              rpci::v1::OpenSessionRequest req) {
  absl::StatusOr<session::Nonce> nonce = Challenge(ticket);
  if (!nonce.ok()) return nonce.status();
  return Attach(ticket, *nonce, std::move(req));
}

absl::StatusOr<ControlClient::Attached> ControlClient::Attach(const SessionTicket& ticket, const session::Nonce& nonce,
                                                              rpci::v1::OpenSessionRequest req) {
  Attached out;
  out.nonce = nonce;
  req.set_resume_session_id(ticket.session_id.ToString());
  req.set_nonce(session::NonceBytes(nonce));
  req.set_proof(session::Prove(ticket.key, session::ProofPurpose::kAttach, nonce, ticket.session_id,
                               req.client_fabric_address()));
  grpc::ClientContext ctx;
  ctx.set_deadline(In(options_.rpc_timeout));
  grpc::Status s = rpci::v1::SessionControl::NewStub(ChannelTo(ticket.endpoint))->OpenSession(&ctx, req, &out.response);
  if (!s.ok()) return FromGrpc(s, "attach session " + ticket.session_id.ToString());
  if (out.response.protocol_version() != session::kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrFormat("agent %s speaks session protocol %u, this client %u",
                                                         ticket.endpoint, out.response.protocol_version(),
                                                         session::kProtocolVersion));
  }
  return out;
}

}  // namespace rpci::client
