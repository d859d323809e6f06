#include "client/session_client.h"

#include <atomic>
#include <cstring>

#include "absl/strings/str_format.h"
#include "proto/rpci/v1/session.grpc.pb.h"
#include "session/bounds.h"

namespace rpci::client {

using session::FrameType;
using session::RegionDesc;
using session::RegionKind;

namespace {

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), what + ": " + s.error_message());
}

std::unique_ptr<rpci::v1::SessionControl::Stub> Stub(const std::string& endpoint,
                                                      std::shared_ptr<grpc::ChannelCredentials> creds) {
  if (!creds) creds = grpc::InsecureChannelCredentials();
  return rpci::v1::SessionControl::NewStub(grpc::CreateChannel(endpoint, creds));
}

std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration timeout) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + absl::ToChronoMilliseconds(timeout));
  return ctx;
}

bool Permanent(const absl::Status& s) {
  return s.code() == absl::StatusCode::kNotFound || s.code() == absl::StatusCode::kUnauthenticated ||
         s.code() == absl::StatusCode::kDataLoss || s.code() == absl::StatusCode::kInvalidArgument ||
         s.code() == absl::StatusCode::kPermissionDenied;
}

// The fabric says why a data-path operation failed (timed out, refused,
// reset); to the session any of them means the link is broken, which
// WithReconnect answers by reconnecting, as it does a shut-down endpoint.
absl::Status AsLinkFailure(const absl::Status& s) {
  if (s.ok() || s.code() == absl::StatusCode::kCancelled) return s;
  return absl::UnavailableError(s.message());
}

void AddRegion(rpci::v1::OpenSessionRequest& req, RegionKind kind, uint16_t index, const fabric::MemoryRegion& mr) {
  rpci::v1::Region* r = req.add_client_regions();
  r->set_kind(static_cast<rpci::v1::RegionKind>(kind));
  r->set_index(index);
  r->set_address(mr.remote().address);
  r->set_size(mr.size());
  r->set_key(mr.remote().key);
  r->set_writable(true);
}

}  // namespace

absl::StatusOr<SessionTicket> ReserveSession(const std::string& endpoint,
                                             std::shared_ptr<grpc::ChannelCredentials> creds,
                                             const std::string& grant_id, const std::string& token,
                                             const std::string& compute_node) {
  rpci::v1::OpenSessionRequest req;
  req.set_grant_id(grant_id);
  req.set_token(token);
  req.set_compute_node(compute_node);
  rpci::v1::OpenSessionResponse resp;
  grpc::Status st = Stub(endpoint, creds)->OpenSession(Ctx(absl::Seconds(10)).get(), req, &resp);
  if (!st.ok()) return FromGrpc(st, "open session on " + endpoint + " for grant " + grant_id);
  if (resp.protocol_version() != session::kProtocolVersion) {
    return absl::FailedPreconditionError(absl::StrFormat("agent %s speaks session protocol %u, this client %u",
                                                         endpoint, resp.protocol_version(), session::kProtocolVersion));
  }
  absl::StatusOr<session::SessionKey> key = session::SessionKey::FromBytes(resp.session_key());
  if (!key.ok()) return key.status();
  if (absl::StatusOr<uint64_t> id = session::ParseSessionId(resp.session_id()); !id.ok()) return id.status();
  return SessionTicket{endpoint, resp.session_id(), *key};
}

absl::Status CloseSession(const SessionTicket& ticket, std::shared_ptr<grpc::ChannelCredentials> creds, bool detach) {
  rpci::v1::CloseSessionRequest req;
  req.set_session_id(ticket.session_id);
  req.set_session_key(ticket.key.Bytes());
  req.set_detach(detach);
  rpci::v1::CloseSessionResponse resp;
  grpc::Status st = Stub(ticket.endpoint, creds)->CloseSession(Ctx(absl::Seconds(10)).get(), req, &resp);
  if (!st.ok()) return FromGrpc(st, "close session " + ticket.session_id);
  return absl::OkStatus();
}

SessionClient::SessionClient(SessionTicket ticket, ClientOptions options)
    : ticket_(std::move(ticket)), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<SessionClient>> SessionClient::Attach(const SessionTicket& ticket,
                                                                     const ClientOptions& options) {
  std::unique_ptr<SessionClient> c(new SessionClient(ticket, options));
  absl::StatusOr<std::unique_ptr<fabric::Fabric>> fabric = fabric::Fabric::Open(options.fabric);
  if (!fabric.ok()) return fabric.status();
  c->fabric_ = std::move(*fabric);
  {
    std::lock_guard<std::mutex> lock(c->mu_);
    if (absl::Status s = c->Connect(); !s.ok()) return s;
  }
  c->heartbeat_ = std::thread([p = c.get()] { p->HeartbeatLoop(); });
  return c;
}

SessionClient::~SessionClient() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_heartbeat_ = true;
  }
  hb_cv_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  std::lock_guard<std::mutex> lock(mu_);
  if (endpoint_) endpoint_->Shutdown();
  mirror_mr_.clear();
  dma_mr_.reset();
  comp_mr_.reset();
  stage_mr_.reset();
  endpoint_.reset();
}

absl::Status SessionClient::Connect() {
  auto stub = Stub(ticket_.endpoint, options_.creds);
  rpci::v1::OpenSessionRequest req;
  req.set_resume_session_id(ticket_.session_id);
  req.set_session_key(ticket_.key.Bytes());
  rpci::v1::OpenSessionResponse resp;
  if (bar_info_.empty()) {
    // Learn the device's shape before allocating mirrors.
    grpc::Status st = stub->OpenSession(Ctx(absl::Seconds(5)).get(), req, &resp);
    if (!st.ok()) return FromGrpc(st, "session " + ticket_.session_id);
    uint64_t dma_size = 0;
    for (const rpci::v1::Region& r : resp.agent_regions()) {
      if (r.kind() == rpci::v1::REGION_KIND_BAR) bar_info_.push_back({static_cast<uint16_t>(r.index()), r.size()});
      if (r.kind() == rpci::v1::REGION_KIND_DMA) dma_size = r.size();
    }
    if (dma_size == 0 || dma_size > (1ull << 34)) {
      return absl::FailedPreconditionError("session " + ticket_.session_id + ": agent did not describe a DMA space");
    }
    for (const BarInfo& b : bar_info_) mirrors_.emplace_back(b.size, 0);
    dma_.assign(dma_size, 0);
    comp_.assign(session::RingRegionSize(options_.completion_ring_capacity, session::kCompletionEntrySize), 0);
    session::EncodeRingHeader({options_.completion_ring_capacity, session::kCompletionEntrySize, 0, 0}, comp_.data());
    ring_stage_.assign(session::RingRegionSize(options_.mmio_ring_capacity, session::kMmioEntrySize), 0);
    resp.Clear();
  }
  // A fresh endpoint and fresh registrations: the old keys die with the old regions.
  if (endpoint_) endpoint_->Shutdown();
  mirror_mr_.clear();
  dma_mr_.reset();
  comp_mr_.reset();
  stage_mr_.reset();
  endpoint_.reset();
  absl::StatusOr<std::unique_ptr<fabric::Endpoint>> endpoint = fabric_->OpenEndpoint();
  if (!endpoint.ok()) return AsLinkFailure(endpoint.status());
  endpoint_ = std::move(*endpoint);
  for (size_t i = 0; i < mirrors_.size(); ++i) {
    auto mr = endpoint_->RegisterMemory(mirrors_[i].data(), mirrors_[i].size(), fabric::kRemoteWrite);
    if (!mr.ok()) return mr.status();
    mirror_mr_.push_back(std::move(*mr));
    AddRegion(req, RegionKind::kBar, bar_info_[i].index, *mirror_mr_.back());
  }
  auto dma_mr = endpoint_->RegisterMemory(dma_.data(), dma_.size(), fabric::kRemoteWrite | fabric::kRemoteRead);
  if (!dma_mr.ok()) return dma_mr.status();
  dma_mr_ = std::move(*dma_mr);
  AddRegion(req, RegionKind::kDma, 0, *dma_mr_);
  auto comp_mr = endpoint_->RegisterMemory(comp_.data(), comp_.size(), fabric::kRemoteWrite);
  if (!comp_mr.ok()) return comp_mr.status();
  comp_mr_ = std::move(*comp_mr);
  AddRegion(req, RegionKind::kCompletionRing, 0, *comp_mr_);
  auto stage_mr = endpoint_->RegisterMemory(ring_stage_.data(), ring_stage_.size(), fabric::kLocalOnly);
  if (!stage_mr.ok()) return stage_mr.status();
  stage_mr_ = std::move(*stage_mr);

  req.set_client_fabric_address(endpoint_->address());
  req.set_last_acked_sequence(log_.acked());
  grpc::Status st = stub->OpenSession(Ctx(absl::Seconds(5)).get(), req, &resp);
  if (!st.ok()) return FromGrpc(st, "attach session " + ticket_.session_id);
  std::vector<RegionDesc> agent;
  for (const rpci::v1::Region& r : resp.agent_regions()) {
    RegionDesc d{static_cast<RegionKind>(r.kind()),
                 static_cast<uint8_t>(session::kAccessRead | (r.writable() ? session::kAccessWrite : 0)),
                 static_cast<uint16_t>(r.index()), r.address(), r.size(), r.key()};
    if (absl::Status v = session::ValidateRegion(d); !v.ok()) return v;
    agent.push_back(d);
  }
  for (RegionKind need : {RegionKind::kMmioRing, RegionKind::kDma}) {
    if (absl::StatusOr<RegionDesc> r = session::FindRegion(agent, need); !r.ok()) return r.status();
  }
  if (session::FindRegion(agent, RegionKind::kMmioRing)->size !=
      session::RingRegionSize(options_.mmio_ring_capacity, session::kMmioEntrySize)) {
    return absl::FailedPreconditionError("agent's MMIO ring capacity differs from this client's");
  }
  agent_ = std::move(agent);
  absl::StatusOr<fabric::PeerId> peer = endpoint_->InsertPeer(resp.agent_fabric_address());
  if (!peer.ok()) return peer.status();
  peer_ = *peer;
  // A process attaching to a session an earlier one used (a restarted
  // container): its writes continue the agent's sequence.
  if (log_.last() == 0 && consumed_ == 0) {
    log_ = session::WriteLog(resp.applied_sequence());
    consumed_ = resp.completions();
  }
  absl::StatusOr<std::vector<session::MmioWrite>> replay = log_.Resume(resp.applied_sequence());
  if (!replay.ok()) return replay.status();
  pushed_ = log_.acked();
  for (const auto& [off, len] : from_device_) {
    if (absl::Status s = SendFrameLocked(FrameType::kMapFromDevice, off, len); !s.ok()) return s;
  }
  if (!replay->empty()) {
    stats_.replayed_writes += replay->size();
    if (absl::Status s = PushWritesLocked(*replay); !s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status SessionClient::ReconnectLocked() {
  const absl::Time deadline = absl::Now() + options_.grace;
  absl::Duration backoff = options_.backoff_initial;
  absl::Status last;
  while (absl::Now() < deadline) {
    last = Connect();
    if (last.ok()) {
      ++stats_.reconnects;
      return absl::OkStatus();
    }
    if (Permanent(last)) break;
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, options_.backoff_max);
  }
  closed_ = true;
  dead_ = absl::FailedPreconditionError(
      absl::StrFormat("session %s torn down: %s", ticket_.session_id,
                      last.ok() ? "agent unreachable past grace" : std::string(last.message())));
  if (endpoint_) endpoint_->Shutdown();
  return dead_;
}

absl::Status SessionClient::EnsureLiveLocked() {
  if (closed_) return dead_.ok() ? absl::FailedPreconditionError("session " + ticket_.session_id + " is closed") : dead_;
  if (agent_error_.has_value()) {
    absl::Status e = *agent_error_;
    agent_error_.reset();
    return e;
  }
  return absl::OkStatus();
}

absl::Status SessionClient::WithReconnect(const std::function<absl::Status()>& op) {
  if (absl::Status s = EnsureLiveLocked(); !s.ok()) return s;
  absl::Status s = op();
  if (s.ok() || (s.code() != absl::StatusCode::kUnavailable && s.code() != absl::StatusCode::kCancelled)) return s;
  if (absl::Status r = ReconnectLocked(); !r.ok()) return r;
  return op();
}

std::string SessionClient::FrameLocked(FrameType type, uint64_t arg0, uint64_t arg1) const {
  session::Frame f;
  f.type = type;
  f.session_id = *session::ParseSessionId(ticket_.session_id);
  f.key = ticket_.key.bytes();
  f.arg0 = arg0;
  f.arg1 = arg1;
  return session::EncodeFrameMessage(f);
}

absl::Status SessionClient::SendFrameLocked(FrameType type, uint64_t arg0, uint64_t arg1) {
  return AsLinkFailure(endpoint_->Send(peer_, FrameLocked(type, arg0, arg1)));
}

absl::Status SessionClient::PushWritesLocked(const std::vector<session::MmioWrite>& writes) {
  if (writes.empty()) return absl::OkStatus();
  const RegionDesc ring = *session::FindRegion(agent_, RegionKind::kMmioRing);
  const uint32_t cap = options_.mmio_ring_capacity;
  std::vector<fabric::RmaOp> segs;
  for (const session::MmioWrite& w : writes) {
    const size_t slot = session::RingSlotOffset(w.seq, cap, session::kMmioEntrySize);
    session::EncodeMmioWrite(w, ring_stage_.data() + slot);
    if (!segs.empty() && segs.back().local_offset + segs.back().length == slot) {
      segs.back().length += session::kMmioEntrySize;
    } else {
      segs.push_back({stage_mr_.get(), slot, session::kMmioEntrySize, ring.address + slot, ring.key});
    }
  }
  const uint64_t tail = writes.back().seq;
  session::EncodeRingHeader({cap, session::kMmioEntrySize, log_.acked(), tail}, ring_stage_.data());
  segs.push_back({stage_mr_.get(), session::kRingTailOffset, 8, ring.address + session::kRingTailOffset, ring.key});
  // The kick names the new tail; the entries and tail word land first.
  const std::string kick = FrameLocked(FrameType::kKick, tail, consumed_);
  if (absl::Status s = endpoint_->WriteAndSend(peer_, segs, kick); !s.ok()) return AsLinkFailure(s);
  pushed_ = tail;
  return absl::OkStatus();
}

absl::Status SessionClient::PumpLocked(absl::Duration timeout) {
  absl::StatusOr<std::string> msg = endpoint_->Recv(timeout);
  if (!msg.ok()) return msg.status();
  absl::StatusOr<session::Frame> f =
      session::DecodeFrame(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(msg->data()), msg->size()));
  if (!f.ok() || f->session_id != *session::ParseSessionId(ticket_.session_id) || !ticket_.key.Matches(f->key)) {
    return absl::OkStatus();  // not from our agent: ignored
  }
  std::atomic_thread_fence(std::memory_order_acquire);
  switch (f->type) {
    case FrameType::kEvent:
      if (absl::Status s = log_.Ack(f->arg0); !s.ok()) {
        closed_ = true;
        dead_ = s;
      }
      break;
    case FrameType::kRefreshed:
      refresh_done_ = std::max(refresh_done_, f->arg0);
      if (f->arg1 <= log_.last()) log_.Ack(f->arg1).IgnoreError();
      break;
    case FrameType::kError:
      ++stats_.refused;
      agent_error_ = absl::PermissionDeniedError(
          absl::StrFormat("session %s: agent refused %u: %s", ticket_.session_id, f->arg1,
                          session::ErrorCodeName(static_cast<session::ErrorCode>(f->arg0))));
      break;
    case FrameType::kClose:
      closed_ = true;
      dead_ = absl::FailedPreconditionError("session " + ticket_.session_id + " closed by the agent");
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

template <typename Pred>
absl::Status SessionClient::WaitLocked(absl::Duration timeout, Pred done) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (closed_) return EnsureLiveLocked();
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("session " + ticket_.session_id + ": timed out");
    absl::Status s = PumpLocked(std::min(left, absl::Milliseconds(200)));
    if (!s.ok() && s.code() != absl::StatusCode::kDeadlineExceeded) return s;
  }
  return absl::OkStatus();
}

std::vector<SessionClient::BarInfo> SessionClient::bars() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bar_info_;
}

absl::StatusOr<const uint8_t*> SessionClient::mirror(uint16_t bar) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < bar_info_.size(); ++i) {
    if (bar_info_[i].index == bar) return mirrors_[i].data();
  }
  return absl::NotFoundError(absl::StrFormat("session %s: no BAR %u", ticket_.session_id, bar));
}

absl::Status SessionClient::Write(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = EnsureLiveLocked(); !s.ok()) return s;
  if (width != 4 && width != 8) return absl::InvalidArgumentError("register writes are 4 or 8 bytes");
  if (offset % width != 0) return absl::InvalidArgumentError(absl::StrFormat("offset 0x%x not aligned", offset));
  if (width == 4 && (value >> 32) != 0) return absl::InvalidArgumentError("value does not fit 32 bits");
  const BarInfo* info = nullptr;
  for (const BarInfo& b : bar_info_) {
    if (b.index == bar) info = &b;
  }
  if (info == nullptr || offset >= info->size || width > info->size - offset) {
    return absl::OutOfRangeError(absl::StrFormat("session %s: write of %u bytes at bar %u + 0x%x is outside the BAR",
                                                 ticket_.session_id, width, bar, offset));
  }
  log_.Append({0, static_cast<uint8_t>(bar), width, offset, value});
  if (log_.last() - pushed_ >= options_.mmio_ring_capacity / 4) return FlushLocked();
  return absl::OkStatus();
}

absl::Status SessionClient::FlushLocked() {
  return WithReconnect([&]() -> absl::Status {
    std::vector<session::MmioWrite> writes = log_.From(pushed_ + 1);
    if (writes.empty()) return absl::OkStatus();
    // Never more unacknowledged writes than ring slots on the agent.
    if (absl::Status s = WaitLocked(options_.grace,
                                    [&] { return writes.back().seq - log_.acked() <= options_.mmio_ring_capacity; });
        !s.ok()) {
      return s;
    }
    return PushWritesLocked(writes);
  });
}

absl::Status SessionClient::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  return FlushLocked();
}

absl::Status SessionClient::Sync(absl::Duration timeout) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = FlushLocked(); !s.ok()) return s;
  return WithReconnect([&] { return WaitLocked(timeout, [&] { return log_.acked() >= log_.last(); }); });
}

absl::StatusOr<uint64_t> SessionClient::Read(uint16_t bar, uint64_t offset, uint8_t width) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = EnsureLiveLocked(); !s.ok()) return s;
  if (width != 4 && width != 8) return absl::InvalidArgumentError("register reads are 4 or 8 bytes");
  for (size_t i = 0; i < bar_info_.size(); ++i) {
    if (bar_info_[i].index != bar) continue;
    if (offset % width != 0 || offset >= bar_info_[i].size || width > bar_info_[i].size - offset) {
      return absl::OutOfRangeError(absl::StrFormat("read of %u bytes at bar %u + 0x%x is outside the mirror", width,
                                                   bar, offset));
    }
    uint64_t v = 0;
    std::memcpy(&v, mirrors_[i].data() + offset, width);
    return v;
  }
  return absl::OutOfRangeError(absl::StrFormat("no BAR %u in session %s", bar, ticket_.session_id));
}

absl::Status SessionClient::Refresh(absl::Duration timeout) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = FlushLocked(); !s.ok()) return s;
  return WithReconnect([&]() -> absl::Status {
    const uint64_t id = ++refresh_sent_;
    if (absl::Status s = SendFrameLocked(FrameType::kRefresh, id, 0); !s.ok()) return s;
    return WaitLocked(timeout, [&] { return refresh_done_ >= id; });
  });
}

absl::Status SessionClient::FlushDma(uint64_t offset, uint64_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  RegionDesc local{RegionKind::kDma, session::kAccessWrite, 0, 0, dma_.size(), 0};
  if (absl::Status s = session::CheckAccess(local, offset, len, true); !s.ok()) return s;
  return WithReconnect([&] {
    const RegionDesc remote = *session::FindRegion(agent_, RegionKind::kDma);
    return AsLinkFailure(endpoint_->Write(peer_, {dma_mr_.get(), offset, len, remote.address + offset, remote.key}));
  });
}

absl::Status SessionClient::InvalidateDma(uint64_t offset, uint64_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  RegionDesc local{RegionKind::kDma, session::kAccessRead, 0, 0, dma_.size(), 0};
  if (absl::Status s = session::CheckAccess(local, offset, len, false); !s.ok()) return s;
  // Writes posted before this read must be applied first (MMIO ordering).
  if (absl::Status s = FlushLocked(); !s.ok()) return s;
  return WithReconnect([&]() -> absl::Status {
    if (absl::Status s = WaitLocked(options_.grace, [&] { return log_.acked() >= log_.last(); }); !s.ok()) return s;
    const RegionDesc remote = *session::FindRegion(agent_, RegionKind::kDma);
    return AsLinkFailure(endpoint_->Read(peer_, {dma_mr_.get(), offset, len, remote.address + offset, remote.key}));
  });
}

absl::Status SessionClient::MapFromDevice(uint64_t offset, uint64_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  RegionDesc local{RegionKind::kDma, session::kAccessWrite, 0, 0, dma_.size(), 0};
  if (absl::Status s = session::CheckAccess(local, offset, len, true); !s.ok()) return s;
  from_device_[offset] = len;
  return WithReconnect([&] { return SendFrameLocked(FrameType::kMapFromDevice, offset, len); });
}

absl::Status SessionClient::Unmap(uint64_t offset) {
  std::lock_guard<std::mutex> lock(mu_);
  from_device_.erase(offset);
  return WithReconnect([&] { return SendFrameLocked(FrameType::kUnmap, offset, 0); });
}

absl::StatusOr<session::Completion> SessionClient::WaitCompletion(absl::Duration timeout) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = FlushLocked(); !s.ok()) return s;
  auto tail = [&] {
    std::atomic_thread_fence(std::memory_order_acquire);
    uint64_t t = 0;
    std::memcpy(&t, comp_.data() + session::kRingTailOffset, 8);  // little-endian host
    return t;
  };
  absl::Status s = WithReconnect([&] { return WaitLocked(timeout, [&] { return tail() > consumed_; }); });
  if (!s.ok()) return s;
  const uint64_t seq = consumed_ + 1;
  const size_t slot = session::RingSlotOffset(seq, options_.completion_ring_capacity, session::kCompletionEntrySize);
  absl::StatusOr<session::Completion> c =
      session::DecodeCompletion(absl::MakeConstSpan(comp_.data() + slot, session::kCompletionEntrySize));
  if (!c.ok()) return c.status();
  if (c->seq != seq) {
    return absl::DataLossError(absl::StrFormat("completion ring slot holds %u, expected %u", c->seq, seq));
  }
  consumed_ = seq;
  return *c;
}

absl::Status SessionClient::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) return absl::OkStatus();
  if (absl::Status s = FlushLocked(); !s.ok() && !closed_) return s;
  closed_ = true;
  dead_ = absl::FailedPreconditionError("session " + ticket_.session_id + " is closed");
  absl::Status s = CloseSession(ticket_, options_.creds, /*detach=*/true);
  if (endpoint_) endpoint_->Shutdown();
  return s;
}

void SessionClient::HeartbeatLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_heartbeat_) {
    hb_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.heartbeat));
    if (stop_heartbeat_ || closed_) continue;
    // A failed heartbeat is how an idle client notices the agent is gone.
    WithReconnect([&] { return SendFrameLocked(FrameType::kHeartbeat, absl::ToUnixMillis(absl::Now()), 0); })
        .IgnoreError();
  }
}

ClientStats SessionClient::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

uint64_t SessionClient::acked_seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_.acked();
}

uint64_t SessionClient::posted_seq() const {
  std::lock_guard<std::mutex> lock(mu_);
  return log_.last();
}

void SessionClient::BreakLinkForTesting() {
  std::lock_guard<std::mutex> lock(mu_);
  if (endpoint_) endpoint_->Shutdown();
}

}  // namespace rpci::client
