#include "client/session_client.h"

#include <sys/mman.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <future>
#include <system_error>

#include "absl/strings/str_format.h"
#include "session/bounds.h"

namespace rpci::client {

using session::FrameType;
using session::RegionDesc;
using session::RegionKind;

namespace {

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

// INVALID_ARGUMENT/OUT_OF_RANGE unless [offset, offset+len) lies in a DMA
// space of `dma_size` bytes.
absl::Status CheckDmaRange(size_t dma_size, uint64_t offset, uint64_t len, bool write) {
  RegionDesc local{RegionKind::kDma, write ? session::kAccessWrite : session::kAccessRead, 0, 0, dma_size, 0};
  return session::CheckAccess(local, offset, len, write);
}

// The transfer of [offset, offset+len) between the local DMA space and the
// agent's copy of it.
fabric::RmaOp DmaTransfer(const fabric::MemoryRegion* local, const std::vector<RegionDesc>& agent, uint64_t offset,
                          uint64_t len) {
  const RegionDesc remote = *session::FindRegion(agent, RegionKind::kDma);
  return {local, offset, len, remote.address + offset, remote.key};
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

// One fabric and domain per configuration for the whole process: the
// provider's initialisation and fi_fabric/fi_domain are paid by the first
// attach only; later attaches (and re-attaches) open just an endpoint, and
// that one was opened ahead, off their path, once an attach had its own. The
// sessions of one process belong to one workload; the endpoint opened ahead
// has carried nothing and has no registrations, so the attach that takes it
// starts as fresh as with one it opened itself.
class ProcessFabric {
 public:
  static absl::StatusOr<std::shared_ptr<ProcessFabric>> For(const fabric::FabricConfig& config);
  // The process's fabric for `config` if one is open, else null (opens nothing).
  static std::shared_ptr<ProcessFabric> Find(const fabric::FabricConfig& config);
  explicit ProcessFabric(std::unique_ptr<fabric::Fabric> fabric) : fabric_(std::move(fabric)) {}

  // The endpoint opened ahead (waiting for it if it is being opened: it is
  // further along than a new one would be), else a new one; `ahead` says which.
  absl::StatusOr<std::unique_ptr<fabric::Endpoint>> TakeEndpoint(bool* ahead) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !opening_; });
      *ahead = spare_ != nullptr;
      if (spare_ != nullptr) return std::move(spare_);
    }
    return fabric_->OpenEndpoint();
  }

  absl::StatusOr<std::unique_ptr<fabric::Endpoint>> OpenEndpoint() { return fabric_->OpenEndpoint(); }

  // Opens the next attach's endpoint unless one is open or being opened.
  // Called off an attach's path (the client's heartbeat thread).
  void OpenAhead() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (opening_ || spare_ != nullptr || closed_) return;
      opening_ = true;
    }
    absl::StatusOr<std::unique_ptr<fabric::Endpoint>> ep = fabric_->OpenEndpoint();
    std::lock_guard<std::mutex> lock(mu_);
    opening_ = false;
    if (ep.ok() && !closed_) spare_ = std::move(*ep);  // a failure: the next attach opens its own
    cv_.notify_all();
  }

  // At exit, before libfabric's own clean-up: the endpoint opened ahead and
  // its progress thread go first.
  void CloseAhead() {
    std::unique_ptr<fabric::Endpoint> spare;
    {
      std::unique_lock<std::mutex> lock(mu_);
      closed_ = true;
      cv_.wait(lock, [&] { return !opening_; });
      spare = std::move(spare_);
    }
  }

 private:
  const std::unique_ptr<fabric::Fabric> fabric_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool opening_ = false, closed_ = false;
  std::unique_ptr<fabric::Endpoint> spare_;
};

namespace {

std::mutex& ProcessFabricsMu() {
  static std::mutex* mu = new std::mutex;
  return *mu;
}

std::map<std::string, std::shared_ptr<ProcessFabric>>& ProcessFabrics() {
  static auto* fabrics = new std::map<std::string, std::shared_ptr<ProcessFabric>>;
  return *fabrics;
}

void CloseEndpointsAhead() {
  std::lock_guard<std::mutex> lock(ProcessFabricsMu());
  for (auto& [key, f] : ProcessFabrics()) f->CloseAhead();
}

std::string ProcessFabricKey(const fabric::FabricConfig& config) {
  return absl::StrFormat("%s|%s|%s|%d|%u|%u|%u|%d|%d", config.provider, config.node, config.service,
                         absl::ToInt64Microseconds(config.op_timeout), config.max_message, config.recv_depth,
                         config.universe_size, absl::ToInt64Microseconds(config.connect_timeout),
                         absl::ToInt64Microseconds(config.busy_poll));
}

}  // namespace

std::shared_ptr<ProcessFabric> ProcessFabric::Find(const fabric::FabricConfig& config) {
  const std::string key = ProcessFabricKey(config);
  std::lock_guard<std::mutex> lock(ProcessFabricsMu());
  auto it = ProcessFabrics().find(key);
  return it == ProcessFabrics().end() ? nullptr : it->second;
}

absl::StatusOr<std::shared_ptr<ProcessFabric>> ProcessFabric::For(const fabric::FabricConfig& config) {
  const std::string key = ProcessFabricKey(config);
  std::lock_guard<std::mutex> lock(ProcessFabricsMu());
  auto it = ProcessFabrics().find(key);
  if (it != ProcessFabrics().end()) return it->second;
  absl::StatusOr<std::unique_ptr<fabric::Fabric>> opened = fabric::Fabric::Open(config);
  if (!opened.ok()) return opened.status();
  // Registered after libfabric's initialisation, so it runs before its clean-up.
  static const bool at_exit = std::atexit(CloseEndpointsAhead) == 0;
  (void)at_exit;
  auto f = std::make_shared<ProcessFabric>(std::move(*opened));
  ProcessFabrics()[key] = f;
  return f;
}

namespace {

// A session's endpoint carries frames only (bulk data moves by RMA): its
// buffers are sized for the largest frame. A workload registers host memory
// only, so the provider's probe for device-memory registration
// (fabric::HiddenKernelSymbols, ~100 ms of a fresh process's first attach)
// is skipped. It was off for a morning while verbs cut-wire failures
// correlated with it; their cause was two completion-queue readers
// reordering frames under load (docs/verbs.md, "Frames reordered under
// load"), fixed in common/fabric.
ClientOptions ForFrames(ClientOptions options) {
  options.fabric.max_message = session::kMaxFrameBytes;
  options.fabric.host_memory_only = true;
  return options;
}

// OpenSSL's first use in the process (1.7-2.8 ms of CPU in the first proof,
// docs/benchmarks.md), paid by the process's first attach on its fabric
// side's thread (SessionClient::OpenFabricSide) while the attach's own thread
// makes the agent's channel. A proof that comes first initialises OpenSSL
// itself (thread-safe). Later calls return at once.
void WarmUpCryptoOnce() {
  static std::atomic<bool> started{false};
  if (!started.exchange(true)) session::WarmUpCrypto();
}

}  // namespace

ZeroPages::~ZeroPages() {
  if (data_ != nullptr) munmap(data_, size_);
}

absl::Status ZeroPages::Allocate(size_t size) {
  if (data_ != nullptr) munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
  if (size == 0) return absl::OkStatus();
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return absl::ResourceExhaustedError(absl::StrFormat("cannot map %u bytes of DMA space", size));
  data_ = static_cast<uint8_t*>(p);
  size_ = size;
  return absl::OkStatus();
}

SessionClient::SessionClient(SessionTicket ticket, ClientOptions options)
    : ticket_(std::move(ticket)),
      options_(ForFrames(std::move(options))),
      control_(ControlOptions{options_.creds, absl::ZeroDuration(), absl::Seconds(5)}) {}

// The fabric side of a configuration's first attach in the process, opened
// on a thread of its own: the process's fabric (libfabric's provider
// initialisation, paid once) and the attach's endpoint.
struct SessionClient::FabricSide {
  std::shared_ptr<ProcessFabric> fabric;  // null: opening it failed (`endpoint` says why)
  absl::StatusOr<std::unique_ptr<fabric::Endpoint>> endpoint;  // after `fabric`: destroyed first
  bool ahead = false;
  absl::Duration fabric_time, endpoint_time;
};

std::future<SessionClient::FabricSide> SessionClient::OpenFabricSide(const fabric::FabricConfig& config,
                                                                     bool endpoint_ahead) {
  auto open = [config, endpoint_ahead] {  // copies only: it may outlive nothing but itself
    FabricSide side;
    WarmUpCryptoOnce();  // the first proof's OpenSSL, while the other thread starts gRPC
    const absl::Time start = absl::Now();
    absl::StatusOr<std::shared_ptr<ProcessFabric>> f = ProcessFabric::For(config);
    side.fabric_time = absl::Now() - start;
    if (!f.ok()) {
      side.endpoint = f.status();
      return side;
    }
    side.fabric = std::move(*f);
    side.endpoint = endpoint_ahead ? side.fabric->TakeEndpoint(&side.ahead) : side.fabric->OpenEndpoint();
    side.endpoint_time = absl::Now() - start - side.fabric_time;
    return side;
  };
  try {
    return std::async(std::launch::async, open);
  } catch (const std::system_error&) {
    return std::async(std::launch::deferred, open);  // no thread to be had: opened when awaited
  }
}

absl::StatusOr<std::unique_ptr<SessionClient>> SessionClient::Attach(const SessionTicket& ticket,
                                                                     const ClientOptions& options) {
  const absl::Time start = absl::Now();
  std::unique_ptr<SessionClient> c(new SessionClient(ticket, options));
  // A configuration's first attach in this process warms OpenSSL and opens
  // the process's fabric and its endpoint on another thread while this one
  // makes the agent's channel (gRPC's start in a fresh process), learns the
  // session's shape and sends the challenge: the first attach waits for the
  // longer side, not their sum, when a core is free (2-9 ms less for a
  // fresh process below load 3 on 2 cores, a wash above: docs/benchmarks.md).
  // Only the attach RPC needs the endpoint (its address is in the proof).
  // Declared after `c`: every return waits for the other thread first.
  std::future<FabricSide> first;
  if (ProcessFabric::Find(c->options_.fabric) == nullptr) {
    // libfabric's environment is set here, before the other thread starts:
    // its setenv beside this thread's gRPC start (getenv) crashed a workload
    // (fabric::PrepareEnvironment). An unknown provider is the fabric side's
    // to report.
    fabric::PrepareEnvironment(c->options_.fabric).IgnoreError();
    first = OpenFabricSide(c->options_.fabric, c->options_.endpoint_ahead);
  }
  c->control_.Prepare(ticket.endpoint);
  const absl::Time prepared = absl::Now();
  absl::Duration fabric_time;
  if (!first.valid()) {
    absl::StatusOr<std::shared_ptr<ProcessFabric>> fabric = ProcessFabric::For(c->options_.fabric);
    fabric_time = absl::Now() - prepared;
    if (!fabric.ok()) return fabric.status();
    c->fabric_ = std::move(*fabric);
  }
  {
    std::lock_guard<std::mutex> lock(c->mu_);
    if (absl::Status s = c->Connect(first.valid() ? &first : nullptr); !s.ok()) return s;
    c->stats_.last_attach.channel = prepared - start;
    if (!c->stats_.last_attach.fabric_overlapped) c->stats_.last_attach.fabric = fabric_time;
    c->stats_.last_attach.total = absl::Now() - start;
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
  DropRegions();
}

void SessionClient::DropRegions() {
  if (endpoint_) endpoint_->Shutdown();
  mirror_mr_.clear();
  dma_mr_.reset();
  comp_mr_.reset();
  stage_mr_.reset();
  anchor_mr_.reset();
  endpoint_.reset();
}

absl::Status SessionClient::LearnShape() {
  // A ticket from Reserve knows the shape already; one without it asks.
  if (ticket_.bars.empty() || ticket_.dma_size == 0) {
    stats_.last_attach.shape_asked = true;
    absl::StatusOr<ControlClient::Attached> shape = control_.Attach(ticket_, {});
    if (!shape.ok()) return shape.status();
    if (absl::Status s = ReadShape(shape->response, &ticket_); !s.ok()) return s;
  }
  for (const BarMirror& b : ticket_.bars) mirrors_.emplace_back(b.size, 0);
  if (absl::Status s = dma_.Allocate(ticket_.dma_size); !s.ok()) return s;
  comp_.assign(session::RingRegionSize(options_.completion_ring_capacity, session::kCompletionEntrySize), 0);
  session::EncodeRingHeader({options_.completion_ring_capacity, session::kCompletionEntrySize, 0, 0}, comp_.data());
  ring_stage_.assign(session::RingRegionSize(options_.mmio_ring_capacity, session::kMmioEntrySize), 0);
  anchor_.assign(session::kAnchorRegionSize, 0);
  return absl::OkStatus();
}

absl::Status SessionClient::TakeEndpoint(std::future<FabricSide>* first) {
  bool ahead = false;
  absl::StatusOr<std::unique_ptr<fabric::Endpoint>> endpoint = absl::UnknownError("no endpoint");
  if (first != nullptr) {
    FabricSide side = first->get();
    AttachSteps& steps = stats_.last_attach;
    steps.fabric_overlapped = true;
    steps.fabric = side.fabric_time;
    steps.endpoint_open = side.endpoint_time;
    if (side.fabric == nullptr) return side.endpoint.status();
    fabric_ = std::move(side.fabric);
    endpoint = std::move(side.endpoint);
    ahead = side.ahead;
  } else {
    endpoint = options_.endpoint_ahead ? fabric_->TakeEndpoint(&ahead) : fabric_->OpenEndpoint();
  }
  if (!endpoint.ok()) return AsLinkFailure(endpoint.status());
  endpoint_ = std::move(*endpoint);
  stats_.last_attach.endpoint_ahead = ahead;
  return absl::OkStatus();
}

absl::Status SessionClient::RegisterRegions(rpci::v1::OpenSessionRequest* req, std::future<FabricSide>* first) {
  // A fresh endpoint and fresh registrations: the old keys die with the old regions.
  DropRegions();
  if (absl::Status s = TakeEndpoint(first); !s.ok()) return s;
  open_ahead_ = options_.endpoint_ahead;  // the heartbeat thread opens the next one
  auto reg = [&](auto& buf, uint64_t access, std::unique_ptr<fabric::MemoryRegion>* mr) {
    absl::StatusOr<std::unique_ptr<fabric::MemoryRegion>> r = endpoint_->RegisterMemory(buf.data(), buf.size(), access);
    if (!r.ok()) return r.status();
    *mr = std::move(*r);
    return absl::OkStatus();
  };
  for (size_t i = 0; i < mirrors_.size(); ++i) {
    std::unique_ptr<fabric::MemoryRegion> mr;
    if (absl::Status s = reg(mirrors_[i], fabric::kRemoteWrite, &mr); !s.ok()) return s;
    mirror_mr_.push_back(std::move(mr));
    AddRegion(*req, RegionKind::kBar, ticket_.bars[i].index, *mirror_mr_.back());
  }
  if (absl::Status s = reg(dma_, fabric::kRemoteWrite | fabric::kRemoteRead, &dma_mr_); !s.ok()) return s;
  AddRegion(*req, RegionKind::kDma, 0, *dma_mr_);
  if (absl::Status s = reg(comp_, fabric::kRemoteWrite, &comp_mr_); !s.ok()) return s;
  AddRegion(*req, RegionKind::kCompletionRing, 0, *comp_mr_);
  if (absl::Status s = reg(ring_stage_, fabric::kLocalOnly, &stage_mr_); !s.ok()) return s;
  // The agent writes its anchor record here with the attach's mirrors: the
  // attach then takes it without an RMA read (ReadAnchor). Cleared first, so
  // that only this attach's record decodes.
  std::fill(anchor_.begin(), anchor_.end(), 0);
  if (absl::Status s = reg(anchor_, fabric::kRemoteWrite, &anchor_mr_); !s.ok()) return s;
  AddRegion(*req, RegionKind::kAnchor, 0, *anchor_mr_);
  req->set_client_fabric_address(endpoint_->address());
  req->set_last_acked_sequence(log_.acked());
  req->set_consumed_completions(consumed_);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> SessionClient::ReadAnchor(const rpci::v1::OpenSessionResponse& resp) {
  // The answer names only the anchor; the anchor record names the rest. How
  // far the agent has applied is in the answer (the MMIO ring's header, which
  // the agent wrote in the same step, says the same; one RMA round trip less).
  const rpci::v1::Region* where = nullptr;
  for (const rpci::v1::Region& r : resp.agent_regions()) {
    if (r.kind() == rpci::v1::REGION_KIND_ANCHOR) where = &r;
  }
  if (where == nullptr || where->size() < session::kAnchorHeaderSize || where->size() > anchor_.size()) {
    return absl::FailedPreconditionError("session " + ticket_.session_id.ToString() + ": agent named no anchor");
  }
  const size_t n = where->size();
  // The record the agent pushed with the mirrors (delivered before its
  // answer), if it did; else read it. The read was a process's first RMA
  // operation on the connection, where ofi_rxm grows the endpoint's RMA
  // buffer pool (1024 bounce-buffer-sized entries, ~1.8 MB, page-faulted):
  // 1-1.5 ms of a first attach (docs/benchmarks.md).
  absl::StatusOr<session::Anchor> anchor = session::DecodeAnchor(absl::MakeConstSpan(anchor_.data(), n));
  stats_.last_attach.anchor_pushed = anchor.ok() && anchor->session_id == ticket_.session_id;
  if (!stats_.last_attach.anchor_pushed) {
    if (absl::Status s = endpoint_->Read(peer_, {anchor_mr_.get(), 0, n, where->address(), where->key()}); !s.ok()) {
      return AsLinkFailure(s);
    }
    anchor = session::DecodeAnchor(absl::MakeConstSpan(anchor_.data(), n));
  }
  if (!anchor.ok()) return anchor.status();
  if (anchor->session_id != ticket_.session_id) {
    return absl::DataLossError("session " + ticket_.session_id.ToString() + ": the agent's anchor names session " +
                               anchor->session_id.ToString());
  }
  for (RegionKind need : {RegionKind::kMmioRing, RegionKind::kDma}) {
    if (absl::StatusOr<RegionDesc> r = session::FindRegion(anchor->regions, need); !r.ok()) return r.status();
  }
  const RegionDesc ring = *session::FindRegion(anchor->regions, RegionKind::kMmioRing);
  if (ring.size != session::RingRegionSize(options_.mmio_ring_capacity, session::kMmioEntrySize)) {
    return absl::FailedPreconditionError("agent's MMIO ring capacity differs from this client's");
  }
  agent_ = std::move(anchor->regions);
  return resp.applied_sequence();
}

std::optional<fabric::PeerId> SessionClient::DialAhead(const std::string& agent_address) {
  // Best effort: a failure here leaves the connection to the agent's push,
  // as without the early address. tcp only: the agent's push can come before
  // the agent has taken the dial's connection request (two connections cross;
  // every tcp test and bench attach succeeds); on verbs crossed connections
  // are what the resumed attach avoids (SessionServer::Attach), and no test
  // here runs verbs.
  if (!options_.dial_ahead || agent_address.empty() || endpoint_->provider() != fabric::kTcp) return std::nullopt;
  absl::StatusOr<fabric::PeerId> peer = endpoint_->InsertPeer(agent_address);
  if (!peer.ok()) return std::nullopt;
  if (!endpoint_->Dial(*peer).ok()) {
    endpoint_->RemovePeer(*peer).IgnoreError();
    return std::nullopt;
  }
  return *peer;
}

absl::Status SessionClient::SetPeer(const std::string& agent_address, const std::string& dialled_address,
                                    std::optional<fabric::PeerId> dialled) {
  if (dialled.has_value() && agent_address == dialled_address) {
    peer_ = *dialled;
    stats_.last_attach.dialled = true;
    return absl::OkStatus();
  }
  // Another endpoint answered (an attach in between used the dialled one).
  if (dialled.has_value()) endpoint_->RemovePeer(*dialled).IgnoreError();
  absl::StatusOr<fabric::PeerId> peer = endpoint_->InsertPeer(agent_address);
  if (!peer.ok()) return peer.status();
  peer_ = *peer;
  return absl::OkStatus();
}

absl::Status SessionClient::Connect(std::future<FabricSide>* first) {
  AttachSteps& steps = stats_.last_attach;
  steps = {};
  absl::Time mark = absl::Now();
  const absl::Time start = mark;
  auto step = [&mark](absl::Duration* d) {
    const absl::Time now = absl::Now();
    *d = now - mark;
    mark = now;
  };
  if (dma_.empty()) {
    if (absl::Status s = LearnShape(); !s.ok()) return s;
  }
  step(&steps.shape);
  // The challenge travels while the endpoint opens (its proof needs the
  // endpoint's address, its nonce does not).
  std::unique_ptr<ControlClient::PendingChallenge> challenge = control_.StartChallenge(ticket_);
  rpci::v1::OpenSessionRequest req;
  if (absl::Status s = RegisterRegions(&req, first); !s.ok()) return s;
  step(&steps.endpoint);
  absl::StatusOr<session::Nonce> nonce = challenge->Finish();
  if (!nonce.ok()) return nonce.status();
  const std::optional<fabric::PeerId> dialled = DialAhead(challenge->agent_fabric_address());
  step(&steps.challenge);
  absl::StatusOr<ControlClient::Attached> attached = control_.Attach(ticket_, *nonce, std::move(req));
  if (!attached.ok()) return attached.status();
  step(&steps.open_rpc);
  absl::StatusOr<session::FrameChannel> frames =
      session::FrameChannel::Create(ticket_.key, attached->nonce, ticket_.session_id, session::FrameChannel::Side::kClient);
  if (!frames.ok()) return frames.status();
  frames_ = *std::move(frames);
  if (absl::Status s = SetPeer(attached->response.agent_fabric_address(), challenge->agent_fabric_address(), dialled);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<uint64_t> applied = ReadAnchor(attached->response);
  if (!applied.ok()) return applied.status();
  step(&steps.anchor);
  // A process attaching to a session an earlier one used (a restarted
  // container): its writes continue the agent's sequence.
  if (log_.last() == 0 && consumed_ == 0) {
    log_ = session::WriteLog(*applied);
    consumed_ = attached->response.completions();
    inline_tail_ = std::max(inline_tail_, consumed_);  // the next completion continues from there
  }
  last_heard_ = absl::Now();
  absl::StatusOr<std::vector<session::MmioWrite>> replay = log_.Resume(*applied);
  if (!replay.ok()) return replay.status();
  pushed_ = log_.acked();
  for (const auto& [off, len] : from_device_) {
    if (absl::Status s = SendFrameLocked(FrameType::kMapFromDevice, off, len); !s.ok()) return s;
  }
  if (!replay->empty()) {
    stats_.replayed_writes += replay->size();
    // What fits the ring now; the next flush pushes the rest as it drains.
    if (replay->size() > FlushChunk()) replay->resize(FlushChunk());
    if (absl::Status s = PushWritesLocked(*replay); !s.ok()) return s;
  }
  // The agent pushes a resuming client's mirrors and missed completions after
  // its first frame of the attach, over this side's connection.
  absl::Status sent = SendFrameLocked(FrameType::kHeartbeat, absl::ToUnixMillis(absl::Now()), 0);
  step(&steps.first_frame);
  steps.total = mark - start;
  return sent;
}

absl::Status SessionClient::ReconnectLocked() {
  const absl::Time deadline = absl::Now() + options_.grace;
  absl::Duration backoff = options_.backoff_initial;
  absl::Status last;
  while (absl::Now() < deadline) {
    control_.Forget(ticket_.endpoint);
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
      absl::StrFormat("session %s torn down: %s", ticket_.session_id.ToString(),
                      last.ok() ? "agent unreachable past grace" : std::string(last.message())));
  if (endpoint_) endpoint_->Shutdown();
  return dead_;
}

absl::Status SessionClient::EnsureLiveLocked() {
  if (closed_) return dead_.ok() ? absl::FailedPreconditionError("session " + ticket_.session_id.ToString() + " is closed") : dead_;
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
  // The agent's close frame, read during op: the session is over, nothing to
  // reconnect to (and its reason stays the one reported).
  if (!s.ok() && closed_) return dead_;
  if (s.ok() || (s.code() != absl::StatusCode::kUnavailable && s.code() != absl::StatusCode::kCancelled)) return s;
  if (absl::Status r = ReconnectLocked(); !r.ok()) return r;
  return op();
}

std::string SessionClient::FrameLocked(FrameType type, uint64_t arg0, uint64_t arg1) {
  last_frame_ = frames_->Seal(type, arg0, arg1);
  return last_frame_;
}

absl::Status SessionClient::SendFrameLocked(FrameType type, uint64_t arg0, uint64_t arg1) {
  return AsLinkFailure(endpoint_->Send(peer_, FrameLocked(type, arg0, arg1)));
}

absl::Status SessionClient::KickInlineLocked(const std::vector<session::MmioWrite>& writes) {
  const std::string kick = frames_->Seal(FrameType::kKick, writes.back().seq, consumed_, session::EncodeMmioEntries(writes));
  last_frame_ = kick;
  if (absl::Status s = endpoint_->Send(peer_, kick); !s.ok()) return AsLinkFailure(s);
  pushed_ = writes.back().seq;
  pushed_at_ = absl::Now();
  return absl::OkStatus();
}

absl::Status SessionClient::PushWritesLocked(const std::vector<session::MmioWrite>& writes) {
  if (writes.empty()) return absl::OkStatus();
  // A few writes travel in the kick itself (one message); more go through
  // the agent's ring by RMA, then the kick.
  if (writes.size() <= session::kMaxInlineWrites &&
      options_.fabric.max_message >= session::kFrameSize + writes.size() * session::kMmioEntrySize) {
    return KickInlineLocked(writes);
  }
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
  pushed_at_ = absl::Now();
  return absl::OkStatus();
}

absl::Status SessionClient::PumpLocked(absl::Duration timeout) {
  absl::StatusOr<std::string> msg = endpoint_->Recv(timeout);
  if (!msg.ok()) return msg.status();
  absl::StatusOr<session::Frame> f =
      session::DecodeFrame(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(msg->data()), msg->size()));
  if (!f.ok() || f->session_id != ticket_.session_id ||
      frames_->Check(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(msg->data()), msg->size()), *f) !=
          session::FrameChannel::Verdict::kOk) {
    ++stats_.dropped_frames;  // not from our agent (or a replay): ignored
    return absl::OkStatus();
  }
  last_heard_ = absl::Now();
  std::atomic_thread_fence(std::memory_order_acquire);
  switch (f->type) {
    case FrameType::kEvent:
      if (!f->payload.empty() && !ApplyEventPayloadLocked(f->payload)) {
        closed_ = true;
        dead_ = absl::DataLossError("session " + ticket_.session_id.ToString() +
                                    ": an event's completions do not continue the ring or its patches leave the mirror");
        break;
      }
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
      agent_error_ = absl::Status(
          static_cast<session::ErrorCode>(f->arg0) == session::ErrorCode::kOverLimit
              ? absl::StatusCode::kResourceExhausted
              : absl::StatusCode::kPermissionDenied,
          absl::StrFormat("session %s: agent refused %u: %s", ticket_.session_id.ToString(), f->arg1,
                          session::ErrorCodeName(static_cast<session::ErrorCode>(f->arg0))));
      break;
    case FrameType::kClose:
      closed_ = true;
      dead_ = absl::FailedPreconditionError("session " + ticket_.session_id.ToString() + " closed by the agent");
      break;
    default:
      break;
  }
  return absl::OkStatus();
}

uint64_t SessionClient::CompletionTailLocked() const {
  uint64_t t = 0;
  std::memcpy(&t, comp_.data() + session::kRingTailOffset, 8);  // little-endian host
  return std::max(t, inline_tail_);
}

bool SessionClient::ApplyEventPayloadLocked(const std::string& payload) {
  absl::StatusOr<session::EventPayload> p =
      session::DecodeEventPayload(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
  if (!p.ok()) return false;
  // Patches first: the mirror shows the device as of these completions.
  std::vector<uint8_t*> at;
  for (const session::MirrorPatch& patch : p->patches) {
    size_t i = 0;
    while (i < ticket_.bars.size() && ticket_.bars[i].index != patch.bar) ++i;
    if (i == ticket_.bars.size() || patch.offset > mirrors_[i].size() ||
        patch.bytes.size() > mirrors_[i].size() - patch.offset) {
      return false;
    }
    at.push_back(mirrors_[i].data() + patch.offset);
  }
  if (!at.empty()) {
    local_gen_.fetch_add(1, std::memory_order_acq_rel);  // odd: the patches are landing
    for (size_t k = 0; k < at.size(); ++k) std::memcpy(at[k], p->patches[k].bytes.data(), p->patches[k].bytes.size());
    local_gen_.fetch_add(1, std::memory_order_release);
  }
  const uint32_t cap = options_.completion_ring_capacity;
  for (const session::Completion& c : p->completions) {
    // The agent pushes again what it could not confirm: entries this
    // client has are skipped.
    if (c.seq <= CompletionTailLocked()) continue;
    if (c.seq != CompletionTailLocked() + 1 || c.seq - consumed_ > cap) return false;
    session::EncodeCompletion(c, comp_.data() + session::RingSlotOffset(c.seq, cap, session::kCompletionEntrySize));
    inline_tail_ = c.seq;
  }
  return true;
}

bool SessionClient::CopyMirror(size_t index, uint64_t offset, size_t len, uint8_t* out) const {
  const uint64_t* remote = reinterpret_cast<const uint64_t*>(comp_.data() + session::kRingMirrorGenOffset);
  const uint64_t r1 = __atomic_load_n(remote, __ATOMIC_ACQUIRE);
  const uint64_t l1 = local_gen_.load(std::memory_order_acquire);
  if ((r1 & 1) != 0 || (l1 & 1) != 0) return false;
  std::memcpy(out, mirrors_[index].data() + offset, len);
  std::atomic_thread_fence(std::memory_order_acquire);
  return __atomic_load_n(remote, __ATOMIC_RELAXED) == r1 && local_gen_.load(std::memory_order_relaxed) == l1;
}

absl::Status SessionClient::ReadMirror(uint16_t bar, uint64_t offset, absl::Span<uint8_t> out) const {
  size_t i = 0;
  while (i < ticket_.bars.size() && ticket_.bars[i].index != bar) ++i;
  if (i == ticket_.bars.size() || offset > mirrors_[i].size() || out.size() > mirrors_[i].size() - offset) {
    return absl::OutOfRangeError(absl::StrFormat("session %s: %u bytes at bar %u + 0x%x are outside the mirror",
                                                 ticket_.session_id.ToString(), out.size(), bar, offset));
  }
  const absl::Time give_up = absl::Now() + absl::Seconds(1);
  for (int tries = 0; !CopyMirror(i, offset, out.size(), out.data()); ++tries) {
    if (tries % 64 == 63) {
      if (absl::Now() > give_up) {
        return absl::UnavailableError("session " + ticket_.session_id.ToString() + ": a mirror push did not finish landing");
      }
      std::this_thread::yield();
    }
  }
  return absl::OkStatus();
}

template <typename Pred>
absl::Status SessionClient::WaitLocked(absl::Duration timeout, Pred done) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (closed_) return EnsureLiveLocked();
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return absl::DeadlineExceededError("session " + ticket_.session_id.ToString() + ": timed out");
    absl::Status s = PumpLocked(std::min(left, absl::Milliseconds(200)));
    if (s.ok()) continue;
    if (s.code() != absl::StatusCode::kDeadlineExceeded) return s;
    if (absl::Status p = ProbeIfSilentLocked(); !p.ok()) return p;
    if (absl::Status r = ResendIfUnackedLocked(); !r.ok()) return r;
  }
  return absl::OkStatus();
}

absl::Status SessionClient::ResendIfUnackedLocked() {
  // A kick the agent never acted on is lost for good: its endpoint dropped
  // it (this client's share of the agent's inbox was full), which is not
  // answered. The link is alive (the probe says so), so the writes go again
  // in a new kick; the agent applies each sequence once and skips the ones
  // it already has.
  if (log_.acked() >= pushed_ || absl::Now() - pushed_at_ < options_.fabric.op_timeout) return absl::OkStatus();
  std::vector<session::MmioWrite> writes = log_.From(log_.acked() + 1);
  while (!writes.empty() && writes.back().seq > pushed_) writes.pop_back();
  if (writes.size() > FlushChunk()) writes.resize(FlushChunk());
  if (writes.empty()) return absl::OkStatus();
  ++stats_.resent_kicks;
  const uint64_t pushed = pushed_;
  absl::Status s = PushWritesLocked(writes);
  pushed_ = std::max(pushed_, pushed);
  return s;
}

absl::Status SessionClient::ProbeIfSilentLocked() {
  // A frame's send completes once the provider has it, not when the agent
  // does (ofi_rxm's eager messages): silence for an operation timeout is
  // checked with an RMA the agent must answer.
  if (absl::Now() - last_heard_ < options_.fabric.op_timeout) return absl::OkStatus();
  if (absl::Status p = ProbeLinkLocked(); !p.ok()) return p;
  last_heard_ = absl::Now();
  return absl::OkStatus();
}

absl::Status SessionClient::ProbeLinkLocked() {
  absl::StatusOr<RegionDesc> ring = session::FindRegion(agent_, RegionKind::kMmioRing);
  if (!ring.ok()) return absl::OkStatus();
  return AsLinkFailure(
      endpoint_->Read(peer_, {anchor_mr_.get(), 0, session::kRingHeaderSize, ring->address, ring->key}));
}

std::vector<BarMirror> SessionClient::bars() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ticket_.bars;
}

absl::StatusOr<const uint8_t*> SessionClient::mirror(uint16_t bar) const {
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < ticket_.bars.size(); ++i) {
    if (ticket_.bars[i].index == bar) return mirrors_[i].data();
  }
  return absl::NotFoundError(absl::StrFormat("session %s: no BAR %u", ticket_.session_id.ToString(), bar));
}

absl::Status SessionClient::Write(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = EnsureLiveLocked(); !s.ok()) return s;
  if (width != 4 && width != 8) return absl::InvalidArgumentError("register writes are 4 or 8 bytes");
  if (offset % width != 0) return absl::InvalidArgumentError(absl::StrFormat("offset 0x%x not aligned", offset));
  if (width == 4 && (value >> 32) != 0) return absl::InvalidArgumentError("value does not fit 32 bits");
  const BarMirror* info = nullptr;
  for (const BarMirror& b : ticket_.bars) {
    if (b.index == bar) info = &b;
  }
  if (info == nullptr || offset >= info->size || width > info->size - offset) {
    return absl::OutOfRangeError(absl::StrFormat("session %s: write of %u bytes at bar %u + 0x%x is outside the BAR",
                                                 ticket_.session_id.ToString(), width, bar, offset));
  }
  log_.Append({0, static_cast<uint8_t>(bar), width, offset, value});
  if (log_.last() - pushed_ >= options_.mmio_ring_capacity / 4) return FlushLocked();
  return absl::OkStatus();
}

absl::Status SessionClient::FlushLocked() {
  return WithReconnect([&]() -> absl::Status {
    // In chunks: more posted writes than the ring holds (kicks complete
    // locally, so a partition lets them pile up) never overwrite slots the
    // agent has not applied.
    while (pushed_ < log_.last()) {
      std::vector<session::MmioWrite> writes = log_.From(pushed_ + 1);
      if (writes.size() > FlushChunk()) writes.resize(FlushChunk());
      // Never more unacknowledged writes than ring slots on the agent.
      if (absl::Status s = WaitLocked(
              options_.grace, [&] { return writes.back().seq - log_.acked() <= options_.mmio_ring_capacity; });
          !s.ok()) {
        return s;
      }
      if (absl::Status s = PushWritesLocked(writes); !s.ok()) return s;
    }
    return absl::OkStatus();
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
  for (size_t i = 0; i < ticket_.bars.size(); ++i) {
    if (ticket_.bars[i].index != bar) continue;
    if (offset % width != 0 || offset >= ticket_.bars[i].size || width > ticket_.bars[i].size - offset) {
      return absl::OutOfRangeError(absl::StrFormat("read of %u bytes at bar %u + 0x%x is outside the mirror", width,
                                                   bar, offset));
    }
    uint64_t v = 0;
    if (absl::Status s = ReadMirror(bar, offset, absl::MakeSpan(reinterpret_cast<uint8_t*>(&v), width)); !s.ok()) {
      return s;
    }
    return v;
  }
  return absl::OutOfRangeError(absl::StrFormat("no BAR %u in session %s", bar, ticket_.session_id.ToString()));
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
  if (absl::Status s = CheckDmaRange(dma_.size(), offset, len, true); !s.ok()) return s;
  return WithReconnect(
      [&] { return AsLinkFailure(endpoint_->Write(peer_, DmaTransfer(dma_mr_.get(), agent_, offset, len))); });
}

absl::Status SessionClient::InvalidateDma(uint64_t offset, uint64_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = CheckDmaRange(dma_.size(), offset, len, false); !s.ok()) return s;
  // Writes posted before this read must be applied first (MMIO ordering).
  if (absl::Status s = FlushLocked(); !s.ok()) return s;
  return WithReconnect([&]() -> absl::Status {
    if (absl::Status s = WaitLocked(options_.grace, [&] { return log_.acked() >= log_.last(); }); !s.ok()) return s;
    return AsLinkFailure(endpoint_->Read(peer_, DmaTransfer(dma_mr_.get(), agent_, offset, len)));
  });
}

absl::Status SessionClient::MapFromDevice(uint64_t offset, uint64_t len) {
  std::lock_guard<std::mutex> lock(mu_);
  if (absl::Status s = CheckDmaRange(dma_.size(), offset, len, true); !s.ok()) return s;
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
    return CompletionTailLocked();
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
  dead_ = absl::FailedPreconditionError("session " + ticket_.session_id.ToString() + " is closed");
  absl::Status s = control_.Close(ticket_, /*detach=*/true);
  if (endpoint_) endpoint_->Shutdown();
  return s;
}

void SessionClient::HeartbeatLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (open_ahead_) {
      // The endpoint of this process's next attach (or this one's
      // re-attach), opened here, off their path; even when this session was
      // closed meanwhile (the destructor waits for it).
      open_ahead_ = false;
      lock.unlock();
      fabric_->OpenAhead();
      lock.lock();
      continue;
    }
    if (stop_heartbeat_) break;
    hb_cv_.wait_for(lock, absl::ToChronoMilliseconds(options_.heartbeat));
    if (stop_heartbeat_ || closed_) continue;
    // How a client that is not waiting notices the agent is gone: frames
    // that came meanwhile count as heard, a silent link is probed.
    WithReconnect([&]() -> absl::Status {
      while (PumpLocked(absl::ZeroDuration()).ok() && !closed_) {
      }
      if (closed_) return dead_;  // the agent closed it: nobody to beat for
      if (absl::Status p = ProbeIfSilentLocked(); !p.ok()) return p;
      return SendFrameLocked(FrameType::kHeartbeat, absl::ToUnixMillis(absl::Now()), 0);
    }).IgnoreError();
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

std::string SessionClient::LastFrameForTesting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return last_frame_;
}

std::vector<RegionDesc> SessionClient::agent_regions() const {
  std::lock_guard<std::mutex> lock(mu_);
  return agent_;
}

void SessionClient::BreakLinkForTesting() {
  std::lock_guard<std::mutex> lock(mu_);
  if (endpoint_) endpoint_->Shutdown();
}

}  // namespace rpci::client
