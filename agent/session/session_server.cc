#include "agent/session/session_server.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <future>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/grpc_util.h"
#include "common/tls.h"
#include "session/bounds.h"
#include "session/checkpoint.h"
#include "session/sequencing.h"
#include "session/wire.h"

namespace rpci::agent {

using session::ErrorCode;
using session::FrameType;
using session::RegionDesc;
using session::RegionKind;

namespace {

constexpr uint64_t kSeqMagic = 0x51455349435052ull;  // "RPCISEQ"
// Outstanding challenges per session, and how long one stays answerable.
constexpr size_t kMaxChallenges = 16;
constexpr absl::Duration kChallengeLifetime = absl::Seconds(60);
// Frames a session's endpoint keeps while its worker is busy; more are
// dropped and counted (a legitimate client waits for acknowledgements long
// before this).
constexpr size_t kInboxCapacity = 256;
// How long a worker waits on its endpoint before looking at its flags again
// (interrupts and stop wake it at once).
constexpr absl::Duration kWorkerPoll = absl::Milliseconds(200);
// How long an attach waits for the session's domain and endpoint, which its
// worker opens after the reservation (a few milliseconds).
constexpr absl::Duration kFabricWait = absl::Seconds(10);
constexpr absl::Duration kPushRetry = absl::Milliseconds(200);  // a failed completion push, again
// How long a teardown waits for its close frame to reach the client: a
// round trip is well under a millisecond on a LAN; a client that is gone is
// not waited for (EndDataPath).
constexpr absl::Duration kCloseNotice = absl::Milliseconds(250);

// A session endpoint's opening failed: most often the agent's fabric port
// range is full (tcp: every endpoint listens on a port of it).
absl::Status EndpointDidNotOpen(const session::SessionId& id, const absl::Status& error) {
  return absl::Status(error.code(),
                      absl::StrCat("session ", id.ToString(),
                                   ": its fabric endpoint did not open (each session needs a free port in the "
                                   "agent's fabric port range, FI_TCP_PORT_LOW_RANGE-FI_TCP_PORT_HIGH_RANGE): ",
                                   error.message()));
}

// Applied/completion sequence numbers in a MAP_SHARED file: a store is in the
// kernel's page cache at once, so it survives the agent being SIGKILLed
// without an fsync per write.
class SeqFile {
 public:
  ~SeqFile() {
    if (words_ != nullptr) munmap(words_, 4096);
  }
  static std::unique_ptr<SeqFile> Open(const std::string& path) {
    auto f = std::make_unique<SeqFile>();
    if (path.empty()) {
      f->words_ = static_cast<uint64_t*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    } else {
      int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
      if (fd < 0 || ftruncate(fd, 4096) != 0) {
        if (fd >= 0) ::close(fd);
        return nullptr;
      }
      f->words_ = static_cast<uint64_t*>(mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
      ::close(fd);
    }
    if (f->words_ == MAP_FAILED) {
      f->words_ = nullptr;
      return nullptr;
    }
    if (f->words_[0] != kSeqMagic) {
      f->words_[1] = 0;
      f->words_[2] = 0;
      f->words_[0] = kSeqMagic;
    }
    return f;
  }
  uint64_t applied() const { return words_[1]; }
  uint64_t completions() const { return words_[2]; }
  void set_applied(uint64_t v) { words_[1] = v; }
  void set_completions(uint64_t v) { words_[2] = v; }

 private:
  uint64_t* words_ = nullptr;
};

void ToProto(const RegionDesc& d, rpci::v1::Region* r) {
  r->set_kind(static_cast<rpci::v1::RegionKind>(d.kind));
  r->set_index(d.index);
  r->set_address(d.address);
  r->set_size(d.size);
  r->set_key(d.key);
  r->set_writable((d.access & session::kAccessWrite) != 0);
}

// Only the plugin of the compute node a reservation is for may make it.
absl::Status CheckReservingPeer(const grpc::ServerContext& ctx, const std::string& compute_node) {
  absl::StatusOr<PeerIdentity> peer = GetPeerIdentity(ctx);
  if (!peer.ok()) {
    return absl::Status(peer.status().code(),
                        absl::StrCat("reserving a session needs a plugin certificate: ", peer.status().message()));
  }
  if (peer->role != "plugin" || peer->node.empty() || peer->node != compute_node) {
    return absl::PermissionDeniedError(absl::StrCat("peer \"", peer->role, peer->node.empty() ? "" : ":", peer->node,
                                                    "\" may not reserve sessions for compute node \"", compute_node,
                                                    "\" (needs plugin:", compute_node, ")"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<RegionDesc> RegionFromProto(const rpci::v1::Region& r) {
  // Range-check before narrowing, so an out-of-range kind or index is refused
  // rather than read as another region.
  if (r.kind() < 1 || r.kind() > session::kMaxRegionKind) {
    return absl::InvalidArgumentError(absl::StrFormat("region kind %d is not a known kind", r.kind()));
  }
  if (r.index() > UINT16_MAX) {
    return absl::InvalidArgumentError(absl::StrFormat("region index %u is out of range", r.index()));
  }
  RegionDesc d;
  d.kind = static_cast<RegionKind>(r.kind());
  d.index = static_cast<uint16_t>(r.index());
  d.address = r.address();
  d.size = r.size();
  d.key = r.key();
  d.access = session::kAccessRead | (r.writable() ? session::kAccessWrite : 0);
  return d;
}

void GrantTable::Upsert(const Grant& grant) {
  std::lock_guard<std::mutex> lock(mu_);
  grants_[grant.grant_id] = grant;
}

void GrantTable::Revoke(const std::string& grant_id) {
  std::lock_guard<std::mutex> lock(mu_);
  grants_.erase(grant_id);
}

void GrantTable::MarkFullSetReceived() {
  std::lock_guard<std::mutex> lock(mu_);
  full_set_received_ = true;
}

bool GrantTable::FullSetReceived() const {
  std::lock_guard<std::mutex> lock(mu_);
  return full_set_received_;
}

bool GrantTable::Live(const std::string& grant_id, absl::Time now) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = grants_.find(grant_id);
  return it != grants_.end() && now < it->second.expires;
}

absl::StatusOr<Grant> GrantTable::Check(const std::string& grant_id, const std::string& token, absl::Time now) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = grants_.find(grant_id);
  const absl::Status denied = absl::PermissionDeniedError("grant " + grant_id + ": unknown, expired or wrong token");
  if (it == grants_.end() || now >= it->second.expires) return denied;
  const std::string& want = it->second.token;
  if (want.size() != token.size() ||
      !session::ConstantTimeEquals(reinterpret_cast<const uint8_t*>(want.data()),
                                   reinterpret_cast<const uint8_t*>(token.data()), want.size())) {
    return denied;
  }
  return it->second;
}

struct SessionServer::Session {
  std::mutex mu;
  session::SessionId id;
  session::SessionKey key;
  std::string grant_id, device_id, compute_node;
  SessionDevice* device = nullptr;
  std::vector<SessionDevice::Bar> bars;
  absl::Time opened, last_seen;
  // Written under mu; atomic so the interrupt poller may read it without mu.
  std::atomic<bool> attached{false};
  // Some client has attached once (recovered from the checkpoint, which
  // says; a format-1 checkpoint did not, read as yes): a reservation retried
  // for the grant no longer gets this session, and it is never orphaned.
  std::atomic<bool> ever_attached{false};
  // Taken back from the checkpoint at start (Orphaned waits for the grants).
  bool recovered = false;
  // Recovered after an agent restart with device state (applied writes or
  // delivered completions) on a device that lost it: never resumed.
  bool device_state_lost = false;
  // Outstanding, by issue time. Their own lock, held for nothing else: a
  // close or status request is answered while the worker holds mu, blocked
  // on a client that stopped answering.
  std::mutex challenges_mu;
  std::map<session::Nonce, absl::Time> challenges;
  bool closing = false;
  uint64_t mapped_bytes = 0;  // sum of from_device lengths

  // This session's own fabric domain: its regions are registered here only,
  // so no other session's peer can use their keys (with FI_MR_PROV_KEY
  // providers a key is only unique within a domain). The server's spare,
  // opened ahead of the reservation, or else opened by the worker right after
  // it (off the reservation's path); closed at teardown.
  std::unique_ptr<fabric::Fabric> fabric;
  // The session's endpoint in that domain; its frames arrive here and
  // nowhere else. One endpoint serves one attach: a re-attach gets a fresh
  // one (FreshEndpoint), so the previous client's connection dies with it.
  // Written with mu and frames_mu held; read under either.
  std::shared_ptr<fabric::Endpoint> endpoint;
  // An attach has used it (written under mu; a challenge reads it without:
  // while unused, its address is the next attach's and is told early).
  std::atomic<bool> endpoint_used{false};

  // This attach's control frames. Guarded by frames_mu (taken after mu,
  // never before), so a frame can be sealed while mu is held elsewhere.
  std::mutex frames_mu;
  std::optional<session::FrameChannel> frames;
  // Refused frames are counted each; logged at most once a second (a peer
  // can send them at will).
  LogLimiter refusal_log{absl::Seconds(1)};

  // The session's own worker thread receives on the endpoint and applies,
  // so one session's work never runs on a thread another session waits on.
  std::mutex signal_mu;
  std::condition_variable signal_cv;
  bool interrupt_pending = false;  // the device's interrupt_fd fired; the worker pushes
  bool stop_worker = false;
  std::optional<absl::Status> fabric_opened;  // the worker's last opening of the fabric (or failure)
  uint64_t fabric_attempts = 0;  // times the worker tried to open it
  // When the reservation made it (real time), and when the worker began and
  // ended its last opening of the fabric: the attach's log line reports them.
  absl::Time reserved_at = absl::Now(), fabric_open_from, fabric_open_to;
  bool reopen_wanted = false;    // an attach waits for another try (the worker's last failed)
  std::thread worker;

  // OK once the worker has opened the session's fabric; its error, or
  // UNAVAILABLE after `timeout`. When the last try failed (the port range
  // was full), the worker tries again now and this waits for that try: a
  // port freed since lets the attach through.
  absl::Status WaitFabric(absl::Duration timeout) {
    std::unique_lock<std::mutex> lock(signal_mu);
    const uint64_t seen = fabric_attempts;
    if (fabric_opened.has_value() && !fabric_opened->ok()) {
      reopen_wanted = true;
      signal_cv.notify_all();
    }
    if (!signal_cv.wait_for(lock, absl::ToChronoNanoseconds(timeout),
                            [&] {
                              return stop_worker ||
                                     (fabric_opened.has_value() && (fabric_opened->ok() || fabric_attempts > seen));
                            }) ||
        !fabric_opened.has_value()) {
      return absl::UnavailableError("session " + id.ToString() + ": its fabric endpoint is not open");
    }
    return *fabric_opened;
  }

  // Takes a fabric opened ahead of the reservation (the server's spare) as
  // the worker's first opening of it.
  void AdoptFabric(std::unique_ptr<fabric::Fabric> f, std::unique_ptr<fabric::Endpoint> ep) {
    {
      std::lock_guard<std::mutex> lock(mu);
      std::lock_guard<std::mutex> flock(frames_mu);
      fabric = std::move(f);
      endpoint = std::move(ep);
      endpoint_used = false;
    }
    std::lock_guard<std::mutex> lock(signal_mu);
    fabric_opened = absl::OkStatus();
    fabric_attempts = 1;
    fabric_open_from = fabric_open_to = absl::Now();
  }
  bool FabricOpen() {
    std::lock_guard<std::mutex> lock(signal_mu);
    return fabric_opened.has_value() && fabric_opened->ok();
  }

  std::shared_ptr<fabric::Endpoint> CurrentEndpoint() {
    std::lock_guard<std::mutex> lock(frames_mu);
    return endpoint;
  }
  // Gets the worker's attention (it may be waiting on the endpoint).
  void Signal(bool interrupt, bool stop) {
    {
      std::lock_guard<std::mutex> lock(signal_mu);
      interrupt_pending = interrupt_pending || interrupt;
      stop_worker = stop_worker || stop;
    }
    signal_cv.notify_all();
    if (std::shared_ptr<fabric::Endpoint> ep = CurrentEndpoint()) ep->Wake();
  }
  void StopWorker() {
    Signal(false, true);
    if (worker.joinable()) worker.join();
  }
  // Shuts the endpoint down and closes the domain once nothing uses them.
  void CloseFabric() {
    std::shared_ptr<fabric::Endpoint> ep;
    {
      std::lock_guard<std::mutex> lock(frames_mu);
      ep = std::move(endpoint);
    }
    if (ep) ep->Shutdown();
    ep.reset();
    fabric.reset();
  }
  fabric::PeerId peer = 0;
  std::unique_ptr<SeqFile> seq;
  session::ApplyGate gate;
  uint64_t completion_seq = 0;
  uint64_t client_consumed = 0;
  // The client says it took completions up to `consumed` (a kick's word, or
  // a resuming attach's): believed between what it had taken and what exists.
  void NoteConsumed(uint64_t consumed) {
    if (consumed > client_consumed && consumed <= completion_seq) client_consumed = consumed;
  }
  // An attaching client's completion ring of `capacity` entries. A client
  // resuming with the same ring keeps its entries: what it has not
  // acknowledged is pushed again after the mirrors (and the device-written
  // ranges it declared, kept for that; it declares them again). Another ring
  // shape starts at the agent's count (the old entries cannot be placed in
  // it). True when the client is resuming (it had writes acknowledged in
  // this session and keeps its ring).
  bool TakeRing(uint32_t capacity, uint64_t last_acked, uint64_t consumed) {
    const bool resuming = comp_capacity == capacity && last_acked > 0;
    if (comp_capacity != capacity) {
      client_consumed = completion_seq;
      from_device.clear();
      mapped_bytes = 0;
    } else {
      NoteConsumed(consumed);  // taken before the link failed, not yet said in a kick
    }
    delivered = client_consumed;
    comp_capacity = capacity;
    return resuming;
  }
  // Completions pushed to this attach's client; (delivered, completion_seq]
  // are pushed again (a failed push is retried, a re-attach replays them).
  uint64_t delivered = 0;
  // The last push failed: the worker retries it (atomic: read without mu).
  std::atomic<bool> push_failed{false};
  // A re-attach owes the client its mirrors (and an event) even when no
  // completion is undelivered; the worker pushes them.
  bool resync = false;
  // A resumed attach whose client has not sent a frame yet: nothing is
  // pushed to it before (the client opens the connection).
  bool await_frame = false;
  uint32_t comp_capacity = 0;
  std::map<uint64_t, uint64_t> from_device;  // dma offset -> len
  std::deque<session::Completion> backlog;   // waiting for completion ring space
  // Agent-side registered memory.
  std::vector<uint8_t> anchor_buf, ring_buf, comp_buf;
  std::vector<std::vector<uint8_t>> bar_buf;
  std::unique_ptr<fabric::MemoryRegion> anchor_mr, ring_mr, comp_mr, dma_mr;
  std::vector<std::unique_ptr<fabric::MemoryRegion>> bar_mr;
  std::vector<RegionDesc> local;   // what the client may touch, by their remote address
  std::vector<RegionDesc> client;  // the client's regions
  // The client's BAR mirrors equal bar_buf (pushed this attach, no failed
  // push since): events may then carry only what changed (InlineEvent).
  bool mirror_pushed = false;
  // Bytes pushed against the budget (SessionServerOptions::throttle),
  // whether the last push found it throttled (over budget while another
  // session asked for work), and the worker's nice value while throttled
  // (worker_base_nice: before).
  std::optional<ByteBudget> budget;
  bool throttled = false;
  std::thread::id worker_id;
  bool worker_niced = false;
  int worker_base_nice = 0;
  LogLimiter throttle_log{absl::Seconds(10)};
  uint64_t mirror_gen = 0;  // the mirror's seqlock word, last value written
  std::vector<std::vector<uint8_t>> bar_scratch;  // the BARs read now, to diff

  void Deregister() {
    mirror_pushed = false;
    anchor_mr.reset();
    ring_mr.reset();
    comp_mr.reset();
    dma_mr.reset();
    bar_mr.clear();
    {
      std::lock_guard<std::mutex> lock(frames_mu);
      frames.reset();
    }
    attached = false;
  }
};

SessionServer::SessionServer(SessionServerOptions options, GrantTable* grants,
                             std::map<std::string, SessionDevice*> devices)
    : options_(std::move(options)), grants_(grants), devices_(std::move(devices)) {
  MetricsRegistry& m = *options_.metrics;
  refused_ = &m.AddCounter("rpci_session_refused_total",
                           "Session messages and accesses refused, by reason (nothing was applied)", {"reason"});
  scrubs_ = &m.AddCounter("rpci_agent_device_scrubs_total",
                          "Device resets between tenants, by result (clean, failed)", {"result"});
  teardowns_ = &m.AddCounter("rpci_session_teardowns_total", "Sessions torn down, by reason", {"reason"});
  mmio_applied_ = &m.AddCounter("rpci_session_mmio_writes_applied_total", "MMIO writes applied to devices").Get();
  completions_ = &m.AddCounter("rpci_session_completions_total", "Completions delivered to clients").Get();
  push_failures_ = &m.AddCounter("rpci_session_completion_push_failures_total",
                                 "Completion pushes that failed (each is retried, and replayed on re-attach)").Get();
  throttles_ = &m.AddCounter("rpci_session_throttled_total",
                             "Times a session went over its byte budget while another session asked for work, and its worker was made nicer").Get();
  throttled_bytes_ = &m.AddCounter("rpci_session_throttled_bytes_total",
                                   "Bytes sessions pushed while throttled (over their byte budget while another session asked for work)").Get();
  open_gauge_ = &m.AddGauge("rpci_sessions_open", "Sessions currently open").Get();
}

absl::StatusOr<std::unique_ptr<SessionServer>> SessionServer::Create(SessionServerOptions options, GrantTable* grants,
                                                                     std::map<std::string, SessionDevice*> devices) {
  if (options.metrics == nullptr) return absl::InvalidArgumentError("session server: metrics registry is required");
  if (options.clock == nullptr) options.clock = Clock::Real();
  std::unique_ptr<SessionServer> server(new SessionServer(std::move(options), grants, std::move(devices)));
  if (absl::Status s = server->Start(); !s.ok()) return s;
  return server;
}

absl::Status SessionServer::Start() {
  // Sessions open their own domains and endpoints; this checks the provider
  // now (and pays libfabric's provider initialisation before any session).
  options_.fabric.service.clear();
  options_.fabric.max_queued = kInboxCapacity;
  // Session endpoints carry frames only; buffers sized for more cost every
  // endpoint's opening (page faults) and memory.
  options_.fabric.max_message = session::kMaxFrameBytes;
  absl::StatusOr<std::unique_ptr<fabric::Fabric>> fabric = fabric::Fabric::Open(options_.fabric);
  if (!fabric.ok()) return fabric.status();
  provider_ = (*fabric)->provider();
  // OpenSSL's first use, here rather than in the first attach's proof check.
  session::WarmUpCrypto();
  if (!options_.state_dir.empty()) {
    absl::StatusOr<std::vector<session::SessionRecord>> records =
        session::ReadCheckpoint(options_.state_dir + "/sessions.json");
    if (!records.ok()) return records.status();
    for (const session::SessionRecord& r : *records) {
      auto dev = devices_.find(r.device_id);
      if (dev == devices_.end()) {
        log_.Warn("checkpointed session's device is gone", {{"session", r.session_id.ToString()},
                                                              {"device", r.device_id}});
        continue;
      }
      auto s = std::make_shared<Session>();
      s->id = r.session_id;
      s->key = r.key;
      s->grant_id = r.grant_id;
      s->device_id = r.device_id;
      s->compute_node = r.compute_node;
      s->device = dev->second;
      s->bars = dev->second->Bars();
      s->opened = absl::FromUnixSeconds(r.opened_unix_seconds);
      s->last_seen = options_.clock->Now();
      s->seq = SeqFile::Open(options_.state_dir + "/" + r.session_id.ToString() + ".seq");
      if (s->seq == nullptr) return absl::UnavailableError("session server: cannot map sequence file");
      const uint64_t applied = std::max(r.applied_seq, s->seq->applied());
      s->gate = session::ApplyGate(applied);
      s->completion_seq = std::max(r.completion_seq, s->seq->completions());
      s->client_consumed = s->delivered = s->completion_seq;
      s->ever_attached = r.ever_attached;
      s->recovered = true;
      s->device_state_lost = (applied > 0 || s->completion_seq > 0) && !dev->second->keeps_state_across_agent_restart();
      if (s->device_state_lost) {
        log_.Warn("session's device state was lost in the agent restart; it will not be resumed",
                  {{"session", s->id.ToString()}, {"device", s->device_id}});
      }
      sessions_[s->id] = s;
      device_owner_[s->device_id] = s->id;
      StartWorker(*s);
      log_.Info("session recovered from checkpoint",
                {{"session", s->id.ToString()}, {"applied_seq", applied}});
    }
    open_gauge_->Set(static_cast<double>(sessions_.size()));
  }
  reaper_ = std::thread([this] { ReaperLoop(); });
  interrupts_ = std::thread([this] { InterruptLoop(); });
  if (options_.spare_fabric) spare_thread_ = std::thread([this] { SpareLoop(); });
  return absl::OkStatus();
}

void SessionServer::SpareLoop() {
  // Not niced: three alternated runs with the opening at nice 19 showed no
  // gain (docs/benchmarks.md, "Attach"), and the opening maps and touches
  // rxm's pools under the process's memory-map lock, which a preempted
  // nice-19 thread could hold while every other thread's page fault waits.
  absl::Duration pause = options_.endpoint_retry;
  std::unique_lock<std::mutex> lock(spare_mu_);
  while (!stopping_) {
    if (spare_.has_value()) {
      spare_cv_.wait(lock, [&] { return stopping_.load() || !spare_.has_value(); });
      continue;
    }
    lock.unlock();
    absl::StatusOr<std::unique_ptr<fabric::Fabric>> f = fabric::Fabric::Open(options_.fabric);
    absl::StatusOr<std::unique_ptr<fabric::Endpoint>> ep =
        f.ok() ? (*f)->OpenEndpoint() : absl::StatusOr<std::unique_ptr<fabric::Endpoint>>(f.status());
    lock.lock();
    if (ep.ok()) {
      spare_ = SpareFabric{std::move(*f), std::move(*ep)};
      pause = options_.endpoint_retry;
      continue;
    }
    // No free port in the range, or the provider failed: reservations open
    // their own meanwhile (and report why).
    spare_cv_.wait_for(lock, absl::ToChronoNanoseconds(pause), [&] { return stopping_.load(); });
    pause = std::min(pause * 2, options_.endpoint_retry_max);
  }
}

std::optional<SessionServer::SpareFabric> SessionServer::TakeSpare() {
  std::optional<SpareFabric> taken;
  {
    std::lock_guard<std::mutex> lock(spare_mu_);
    taken = std::exchange(spare_, std::nullopt);
  }
  if (taken.has_value()) spare_cv_.notify_all();
  return taken;
}

absl::StatusOr<std::string> SessionServer::spare_fabric_address() const {
  std::lock_guard<std::mutex> lock(spare_mu_);
  if (!spare_.has_value()) return absl::NotFoundError("no spare session fabric is open");
  return spare_->endpoint->address();
}

SessionServer::~SessionServer() { Stop(); }

void SessionServer::Stop() {
  if (stopping_.exchange(true)) return;
  if (reaper_.joinable()) reaper_.join();
  if (interrupts_.joinable()) interrupts_.join();
  {
    std::lock_guard<std::mutex> lock(spare_mu_);  // the spare thread sees stopping_ or is notified
  }
  spare_cv_.notify_all();
  if (spare_thread_.joinable()) spare_thread_.join();
  TakeSpare();
  if (checkpoint_stale_.exchange(false)) SaveCheckpoint();  // a first attach since the reaper's last pass
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [id, s] : sessions_) {
    EndDataPath(*s, /*notify=*/false);  // the client resumes with the next server
    std::lock_guard<std::mutex> slock(s->mu);
    s->Deregister();
    s->CloseFabric();
  }
}

absl::Status SessionServer::OpenSessionFabric(Session& s) {
  const absl::Time from = absl::Now();
  absl::StatusOr<std::unique_ptr<fabric::Fabric>> fabric = fabric::Fabric::Open(options_.fabric);
  absl::StatusOr<std::unique_ptr<fabric::Endpoint>> endpoint =
      fabric.ok() ? (*fabric)->OpenEndpoint() : absl::StatusOr<std::unique_ptr<fabric::Endpoint>>(fabric.status());
  if (!endpoint.ok()) endpoint = EndpointDidNotOpen(s.id, endpoint.status());
  const int port_taken = endpoint.ok() ? (*endpoint)->open_attempts() - 1 : 0;
  if (endpoint.ok()) {
    std::lock_guard<std::mutex> lock(s.mu);
    std::lock_guard<std::mutex> flock(s.frames_mu);
    s.fabric = std::move(*fabric);
    s.endpoint = std::move(*endpoint);
    s.endpoint_used = false;
  }
  uint64_t attempts = 0;  // this one included; only this worker counts them
  {
    std::lock_guard<std::mutex> lock(s.signal_mu);
    attempts = s.fabric_attempts + 1;
  }
  // Logged before an attach waiting for this attempt learns its outcome.
  if (!endpoint.ok()) {
    log_.Error("session fabric did not open; it is tried again at its next attach and after a pause",
               {{"session", s.id.ToString()}, {"attempt", attempts}, {"error", std::string(endpoint.status().message())}});
  } else if (attempts > 1 || port_taken > 0) {
    // port_taken: binds lost to another endpoint opening at the same moment.
    log_.Info("session fabric opened after retries",
              {{"session", s.id.ToString()}, {"attempt", attempts}, {"port_taken", port_taken}});
  }
  {
    std::lock_guard<std::mutex> lock(s.signal_mu);
    s.fabric_opened = endpoint.status();
    s.fabric_attempts = attempts;
    s.fabric_open_from = from;
    s.fabric_open_to = absl::Now();
  }
  s.signal_cv.notify_all();
  return endpoint.status();
}

bool SessionServer::OpenSessionFabricUntilOpen(Session& s) {
  absl::Duration pause = options_.endpoint_retry;
  while (!OpenSessionFabric(s).ok()) {
    std::unique_lock<std::mutex> lock(s.signal_mu);
    s.signal_cv.wait_for(lock, absl::ToChronoNanoseconds(pause), [&] { return s.stop_worker || s.reopen_wanted; });
    if (s.stop_worker) return false;
    s.reopen_wanted = false;
    pause = std::min(pause * 2, options_.endpoint_retry_max);
  }
  return true;
}

absl::Status SessionServer::FreshEndpoint(Session& s) {
  if (!s.endpoint_used) return absl::OkStatus();
  absl::StatusOr<std::unique_ptr<fabric::Endpoint>> endpoint = s.fabric->OpenEndpoint();
  if (!endpoint.ok()) return EndpointDidNotOpen(s.id, endpoint.status());
  if (const int taken = (*endpoint)->open_attempts() - 1; taken > 0) {
    log_.Info("session endpoint opened after retries", {{"session", s.id.ToString()}, {"port_taken", taken}});
  }
  std::shared_ptr<fabric::Endpoint> old;
  {
    std::lock_guard<std::mutex> lock(s.frames_mu);
    old = std::exchange(s.endpoint, std::move(*endpoint));
  }
  s.endpoint_used = false;
  // The worker waiting on it moves to the new one; the old client's
  // connection and anything it still sends end here.
  old->Shutdown();
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<fabric::Endpoint>> SessionServer::LiveEndpoint(session::SessionId id) const {
  std::shared_ptr<Session> s = Find(id);
  if (s == nullptr) return absl::NotFoundError("session " + id.ToString() + " is not live");
  std::shared_ptr<fabric::Endpoint> ep = s->CurrentEndpoint();
  if (ep == nullptr) return absl::NotFoundError("session " + id.ToString() + " has no endpoint");
  return ep;
}

absl::StatusOr<std::string> SessionServer::fabric_address(session::SessionId id) const {
  absl::StatusOr<std::shared_ptr<fabric::Endpoint>> ep = LiveEndpoint(id);
  if (!ep.ok()) return ep.status();
  return (*ep)->address();
}

absl::StatusOr<fabric::BulkPacing> SessionServer::bulk_pacing(session::SessionId id) const {
  absl::StatusOr<std::shared_ptr<fabric::Endpoint>> ep = LiveEndpoint(id);
  if (!ep.ok()) return ep.status();
  return (*ep)->bulk_pacing();
}

std::vector<rpci::v1::SessionReport> SessionServer::Reports() const {
  std::vector<std::shared_ptr<Session>> sessions;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, s] : sessions_) sessions.push_back(s);
  }
  std::vector<rpci::v1::SessionReport> out;
  for (const std::shared_ptr<Session>& s : sessions) {
    std::lock_guard<std::mutex> lock(s->mu);
    rpci::v1::SessionReport r;
    r.set_session_id(s->id.ToString());
    r.set_device_id(s->device_id);
    r.set_writes_applied(s->gate.applied());
    r.set_completions(s->completion_seq);
    out.push_back(std::move(r));
  }
  return out;
}

absl::Status SessionServer::DeviceClean(const std::string& device_id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = device_clean_.find(device_id);
  return it == device_clean_.end() ? absl::OkStatus() : it->second;
}

size_t SessionServer::live_sessions() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t n = 0;
  for (const auto& [id, s] : sessions_) n += s->closing ? 0 : 1;
  return n;
}

std::shared_ptr<SessionServer::Session> SessionServer::Find(session::SessionId id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  return it == sessions_.end() || it->second->closing ? nullptr : it->second;
}

void SessionServer::SaveCheckpoint() {
  if (options_.state_dir.empty()) return;
  std::vector<session::SessionRecord> records;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, s] : sessions_) {
      session::SessionRecord r;
      r.session_id = id;
      r.key = s->key;
      r.grant_id = s->grant_id;
      r.device_id = s->device_id;
      r.compute_node = s->compute_node;
      r.applied_seq = s->seq ? s->seq->applied() : 0;
      r.completion_seq = s->seq ? s->seq->completions() : 0;
      r.opened_unix_seconds = absl::ToUnixSeconds(s->opened);
      r.last_seen_unix_seconds = absl::ToUnixSeconds(s->last_seen);
      r.ever_attached = s->ever_attached;
      records.push_back(std::move(r));
    }
  }
  std::lock_guard<std::mutex> lock(checkpoint_mu_);
  if (absl::Status st = session::WriteCheckpoint(options_.state_dir + "/sessions.json", records); !st.ok()) {
    log_.Error("checkpoint write failed", {{"error", std::string(st.message())}});
  }
}

grpc::Status SessionServer::Challenge(grpc::ServerContext*, const rpci::v1::ChallengeRequest* req,
                                      rpci::v1::ChallengeResponse* resp) {
  absl::StatusOr<session::SessionId> id = session::SessionId::Parse(req->session_id());
  if (!id.ok()) return ToGrpc(id.status());
  std::shared_ptr<Session> s = Find(*id);
  if (s == nullptr) {
    // A status probe of a session that has ended (the plugin's health check
    // after a close or an agent restart) is not a refused request.
    refused_->Labels({req->status_probe() ? "probe_closed_session" : "stale_session"}).Increment();
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "session " + req->session_id() + " is not live");
  }
  absl::StatusOr<session::Nonce> nonce = session::NewNonce();
  if (!nonce.ok()) return ToGrpc(nonce.status());
  std::lock_guard<std::mutex> lock(s->challenges_mu);
  const absl::Time now = options_.clock->Now();
  for (auto it = s->challenges.begin(); it != s->challenges.end();) {
    it = now - it->second > kChallengeLifetime ? s->challenges.erase(it) : std::next(it);
  }
  // A bounded set: a flood of challenges evicts the oldest, never grows.
  if (s->challenges.size() >= kMaxChallenges) s->challenges.erase(s->challenges.begin());
  s->challenges[*nonce] = now;
  resp->set_nonce(session::NonceBytes(*nonce));
  // The endpoint the next attach will use, while no attach has used it (a
  // re-attach gets a fresh one, so its address is not known yet): the client
  // dials it while its attach is in flight and the agent's first push finds
  // the connection up. It grants nothing a port scan would not.
  if (std::shared_ptr<fabric::Endpoint> ep = s->CurrentEndpoint();
      ep != nullptr && !req->status_probe() && !s->endpoint_used.load()) {
    resp->set_agent_fabric_address(ep->address());
  }
  return grpc::Status::OK;
}

absl::StatusOr<std::shared_ptr<SessionServer::Session>> SessionServer::Authenticate(const ProofRequest& p,
                                                                                   session::Nonce* used) {
  absl::StatusOr<session::SessionId> id = session::SessionId::Parse(p.session_id);
  if (!id.ok()) return id.status();
  std::shared_ptr<Session> s = Find(*id);
  if (s == nullptr) {
    // A status probe of a session that has ended (the plugin's health check
    // after a close or an agent restart) is not a refused request.
    const char* reason = p.purpose == session::ProofPurpose::kStatus ? "probe_closed_session" : "stale_session";
    refused_->Labels({reason}).Increment();
    log_.Info("session request refused", {{"session", p.session_id}, {"reason", reason}, {"peer", p.peer}});
    return absl::NotFoundError("session " + p.session_id + " is not live");
  }
  absl::StatusOr<session::Nonce> nonce = session::NonceFromBytes(p.nonce);
  bool valid = false;
  {
    std::lock_guard<std::mutex> lock(s->challenges_mu);
    // Single use: a nonce is spent whether or not the proof holds.
    if (nonce.ok() && s->challenges.erase(*nonce) == 1) {
      valid = session::VerifyProof(s->key, p.purpose, *nonce, *id, p.client_address, p.proof);
    }
  }
  if (!valid) {
    refused_->Labels({"bad_proof"}).Increment();
    // A security event: someone holds the session id but cannot prove its key.
    log_.Warn("session request refused", {{"session", p.session_id}, {"reason", "bad_proof"}, {"peer", p.peer}});
    return absl::UnauthenticatedError("session " + p.session_id +
                                      ": no valid proof of the session key for a challenge of this session");
  }
  *used = *nonce;
  return s;
}

void SessionServer::Describe(const Session& s, rpci::v1::OpenSessionResponse* resp) const {
  for (const SessionDevice::Bar& bar : s.bars) {
    ToProto({RegionKind::kBar, session::kAccessRead, bar.index, 0, std::min(bar.size, options_.max_mirror_bytes), 0},
            resp->add_agent_regions());
  }
  ToProto({RegionKind::kDma, session::kAccessRead | session::kAccessWrite, 0, 0, s.device->dma_size(), 0},
          resp->add_agent_regions());
}

grpc::Status SessionServer::OpenSession(grpc::ServerContext* ctx, const rpci::v1::OpenSessionRequest* req,
                                        rpci::v1::OpenSessionResponse* resp) {
  if (stopping_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "session server stopping");
  resp->set_protocol_version(session::kProtocolVersion);
  resp->set_fabric_provider(provider_);
  if (req->resume_session_id().empty()) return ToGrpc(Reserve(*ctx, *req, resp));
  session::Nonce nonce{};
  absl::StatusOr<std::shared_ptr<Session>> s =
      Authenticate({req->resume_session_id(), req->nonce(), req->proof(), session::ProofPurpose::kAttach,
                    req->client_fabric_address(), ctx->peer()},
                   &nonce);
  if (!s.ok()) return ToGrpc(s.status());
  resp->set_session_id(req->resume_session_id());
  const absl::Time wait_from = absl::Now();
  if (absl::Status st = (*s)->WaitFabric(kFabricWait); !st.ok()) return ToGrpc(st);
  const absl::Duration waited = absl::Now() - wait_from;
  absl::Duration open_start, open_took;
  {
    std::lock_guard<std::mutex> lock((*s)->signal_mu);
    open_start = (*s)->fabric_open_from - (*s)->reserved_at;
    open_took = (*s)->fabric_open_to - (*s)->fabric_open_from;
  }
  std::lock_guard<std::mutex> slock((*s)->mu);
  if ((*s)->device_state_lost) {
    refused_->Labels({"device_reset"}).Increment();
    log_.Info("attach refused", {{"session", req->resume_session_id()}, {"reason", "device_reset"}});
    return grpc::Status(grpc::StatusCode::DATA_LOSS,
                        "session " + req->resume_session_id() +
                            ": the agent restarted and the device was reset; the device state this session built "
                            "is gone (open a new session)");
  }
  resp->set_applied_sequence((*s)->gate.applied());
  if (req->client_fabric_address().empty()) {
    Describe(**s, resp);  // a client learning the session's shape
    resp->set_agent_fabric_address((*s)->endpoint->address());
    return grpc::Status::OK;
  }
  AttachTimes times;
  if (absl::Status st = Attach(**s, *req, nonce, resp, &times); !st.ok()) {
    refused_->Labels({"bad_attach"}).Increment();
    log_.Info("attach refused", {{"session", req->resume_session_id()}, {"reason", "bad_attach"},
                                 {"error", std::string(st.message())}});
    return ToGrpc(st);
  }
  log_.Info("session attached", {{"session", req->resume_session_id()},
                                 {"completions", (*s)->completion_seq},
                                 {"replayed", (*s)->completion_seq - (*s)->client_consumed},
                                 {"wait_endpoint_us", absl::ToInt64Microseconds(waited)},
                                 {"fabric_open_start_us", absl::ToInt64Microseconds(open_start)},
                                 {"fabric_open_us", absl::ToInt64Microseconds(open_took)},
                                 {"register_us", absl::ToInt64Microseconds(times.register_regions)},
                                 {"push_us", absl::ToInt64Microseconds(times.push)}});
  return grpc::Status::OK;
}

absl::Status SessionServer::Reserve(const grpc::ServerContext& ctx, const rpci::v1::OpenSessionRequest& req,
                                    rpci::v1::OpenSessionResponse* resp) {
  if (options_.require_plugin_certificate) {
    if (absl::Status peer = CheckReservingPeer(ctx, req.compute_node()); !peer.ok()) {
      refused_->Labels({"bad_peer"}).Increment();
      log_.Warn("reservation refused", {{"grant", req.grant_id()}, {"error", std::string(peer.message())}});
      return peer;
    }
  }
  absl::StatusOr<Grant> grant = grants_->Check(req.grant_id(), req.token(), options_.clock->Now());
  if (grant.ok() && !grant->compute_node.empty() && grant->compute_node != req.compute_node()) {
    grant = absl::PermissionDeniedError("grant " + grant->grant_id + " is for node " + grant->compute_node);
  }
  if (!grant.ok()) {
    refused_->Labels({"bad_grant"}).Increment();
    return grant.status();
  }
  auto dev = devices_.find(grant->device_id);
  if (dev == devices_.end()) return absl::NotFoundError("device " + grant->device_id + " is not exported here");
  bool retried = false;
  absl::StatusOr<std::shared_ptr<Session>> s = NewSession(*grant, req.compute_node(), dev->second, &retried);
  if (!s.ok()) return s.status();
  if (retried) {
    // The holder lost the first answer (its deadline passed): the same
    // answer again, and the attach timeout runs from now.
    std::lock_guard<std::mutex> slock((*s)->mu);
    (*s)->last_seen = options_.clock->Now();
  } else {
    SaveCheckpoint();
  }
  log_.Info(retried ? "session reservation answered again" : "session opened",
            {{"session", (*s)->id.ToString()}, {"device", (*s)->device_id}, {"grant", (*s)->grant_id}});
  resp->set_session_id((*s)->id.ToString());
  resp->set_session_key((*s)->key.Bytes());  // the one time the key is sent: to the grant's node, over mTLS
  Describe(**s, resp);
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<SessionServer::Session>> SessionServer::NewSession(const Grant& grant,
                                                                                 const std::string& compute_node,
                                                                                 SessionDevice* device,
                                                                                 bool* retried) {
  absl::StatusOr<session::SessionId> id = session::SessionId::Random();
  absl::StatusOr<session::SessionKey> key = session::SessionKey::Generate();
  if (!id.ok() || !key.ok()) return absl::UnavailableError("no entropy for session keys");
  auto s = std::make_shared<Session>();
  s->id = *id;
  s->key = *key;
  s->grant_id = grant.grant_id;
  s->device_id = grant.device_id;
  s->compute_node = compute_node;
  s->device = device;
  s->bars = device->Bars();
  s->opened = s->last_seen = options_.clock->Now();
  s->seq = SeqFile::Open(options_.state_dir.empty() ? "" : options_.state_dir + "/" + s->id.ToString() + ".seq");
  if (s->seq == nullptr) return absl::UnavailableError("cannot map session sequence file");
  s->seq->set_applied(0);
  s->seq->set_completions(0);
  auto drop_new = [&] {  // its sequence file, when the reservation does not make it
    s->seq.reset();
    if (!options_.state_dir.empty()) ::unlink((options_.state_dir + "/" + s->id.ToString() + ".seq").c_str());
  };
  for (bool orphan_ended = false;; orphan_ended = true) {
    std::unique_lock<std::mutex> lock(mu_);
    // A device its last session is still being scrubbed off is worth a wait.
    scrubbed_.wait_for(lock, std::chrono::seconds(10), [&] {
      auto o = device_owner_.find(s->device_id);
      return o == device_owner_.end() || !sessions_.at(o->second)->closing;
    });
    if (auto c = device_clean_.find(s->device_id); c != device_clean_.end() && !c->second.ok()) {
      drop_new();
      return absl::FailedPreconditionError("device " + s->device_id + " is not clean: " + std::string(c->second.message()));
    }
    auto owner = device_owner_.find(s->device_id);
    if (owner == device_owner_.end()) {
      sessions_[s->id] = s;
      device_owner_[s->device_id] = s->id;
      open_gauge_->Set(static_cast<double>(sessions_.size()));
      if (std::optional<SpareFabric> spare = TakeSpare()) {
        s->AdoptFabric(std::move(spare->fabric), std::move(spare->endpoint));
      }
      StartWorker(*s);
      return s;
    }
    std::shared_ptr<Session> held = sessions_.at(owner->second);
    if (IsRetryOf(*held, grant, compute_node)) {
      lock.unlock();
      drop_new();  // the held session answers again
      *retried = true;
      return held;
    }
    // A session no client ever attached whose grant the controller has since
    // ended (its holder released it after losing the answer): nobody may
    // attach it legitimately, so it ends (scrubbed) and this grant proceeds.
    if (!orphan_ended && !held->closing && Orphaned(*held, options_.clock->Now())) {
      lock.unlock();
      Teardown(held->id, "its grant ended before any attach", false);
      continue;
    }
    drop_new();
    return absl::FailedPreconditionError("device " + s->device_id + " is in session " + owner->second.ToString());
  }
}

bool SessionServer::Orphaned(const Session& s, absl::Time now) const {
  return !s.ever_attached && (!s.recovered || grants_->FullSetReceived()) && !grants_->Live(s.grant_id, now);
}

bool SessionServer::IsRetryOf(const Session& held, const Grant& grant, const std::string& compute_node) {
  return !held.closing && !held.ever_attached && held.grant_id == grant.grant_id &&
         held.compute_node == compute_node;
}

absl::StatusOr<uint32_t> SessionServer::CheckClientRegions(const Session& s, const rpci::v1::OpenSessionRequest& req,
                                                          std::vector<RegionDesc>* regions) const {
  std::vector<RegionDesc>& client = *regions;
  for (const rpci::v1::Region& r : req.client_regions()) {
    absl::StatusOr<RegionDesc> d = RegionFromProto(r);
    if (!d.ok()) return d.status();
    if (absl::Status v = session::ValidateRegion(*d); !v.ok()) return v;
    client.push_back(*d);
  }
  for (const SessionDevice::Bar& bar : s.bars) {
    absl::StatusOr<RegionDesc> mirror = session::FindRegion(client, RegionKind::kBar, bar.index);
    if (!mirror.ok()) return mirror.status();
    if (mirror->size != std::min(bar.size, options_.max_mirror_bytes)) {
      return absl::InvalidArgumentError(absl::StrFormat("bar %u mirror is %u bytes, want %u", bar.index, mirror->size,
                                                        std::min(bar.size, options_.max_mirror_bytes)));
    }
  }
  absl::StatusOr<RegionDesc> dma = session::FindRegion(client, RegionKind::kDma);
  if (!dma.ok()) return dma.status();
  if (dma->size != s.device->dma_size()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("dma region is %u bytes, device has %u", dma->size, s.device->dma_size()));
  }
  absl::StatusOr<RegionDesc> comp = session::FindRegion(client, RegionKind::kCompletionRing);
  if (!comp.ok()) return comp.status();
  const uint64_t cap = (comp->size - std::min<uint64_t>(comp->size, session::kRingHeaderSize)) /
                       session::kCompletionEntrySize;
  if (comp->size < session::kRingHeaderSize || cap == 0 || (cap & (cap - 1)) != 0 ||
      cap > session::kMaxRingCapacity || session::RingRegionSize(cap, session::kCompletionEntrySize) != comp->size) {
    return absl::InvalidArgumentError(absl::StrFormat("completion ring of %u bytes is not a valid ring", comp->size));
  }
  return static_cast<uint32_t>(cap);
}

absl::Status SessionServer::Attach(Session& s, const rpci::v1::OpenSessionRequest& req, const session::Nonce& nonce,
                                   rpci::v1::OpenSessionResponse* resp, AttachTimes* times) {
  // Validate the client's regions against the device before touching anything.
  std::vector<RegionDesc> client;
  absl::StatusOr<uint32_t> cap = CheckClientRegions(s, req, &client);
  if (!cap.ok()) return cap.status();
  absl::StatusOr<session::FrameChannel> frames =
      session::FrameChannel::Create(s.key, nonce, s.id, session::FrameChannel::Side::kAgent);
  if (!frames.ok()) return frames.status();

  // Re-attaching replaces the previous data path (reconnect): the old
  // registrations, and with them their keys, die here, and so does the
  // endpoint the previous client was connected to.
  s.Deregister();
  if (absl::Status st = FreshEndpoint(s); !st.ok()) return st;
  s.endpoint_used = true;
  absl::StatusOr<fabric::PeerId> peer = s.endpoint->InsertPeer(req.client_fabric_address());
  if (!peer.ok()) return peer.status();
  s.peer = *peer;
  {
    std::lock_guard<std::mutex> lock(s.frames_mu);
    s.frames = *std::move(frames);
  }
  resp->set_agent_fabric_address(s.endpoint->address());
  s.client = client;
  const bool resuming = s.TakeRing(*cap, req.last_acked_sequence(), req.consumed_completions());
  const absl::Time register_from = absl::Now();
  if (absl::Status st = RegisterRegions(s); !st.ok()) return st;
  times->register_regions = absl::Now() - register_from;
  // The client finds every other region through the anchor record.
  ToProto(s.local.back(), resp->add_agent_regions());
  resp->set_completions(s.completion_seq);
  s.attached = true;
  if (!s.ever_attached.exchange(true)) checkpoint_stale_ = true;  // written by the reaper
  s.last_seen = options_.clock->Now();
  // The mirror starts as the device is now, and the client's ring header
  // matches the agent's completion count. A new client waits for it here. A
  // resuming one gets it (and the completions it missed) from the session's
  // worker after the client's first frame of this attach, over the
  // connection the client opened: on verbs a connection the agent opened to
  // the client's new endpoint meanwhile could outlast the client's attach
  // call, or cross the client's own. Until then the client's mirror is the
  // one it had (as of its last completion).
  if (!resuming) {
    s.resync = s.await_frame = false;
    const absl::Time push_from = absl::Now();
    // The anchor record goes with the mirrors: the client takes it without
    // an RMA read of its own (SessionClient::ReadAnchor).
    if (absl::Status st = PushMirrors(s, /*device_written=*/true, /*with_anchor=*/true); !st.ok()) return st;
    PushCompletions(s, false);
    times->push = absl::Now() - push_from;
    return absl::OkStatus();
  }
  s.resync = s.await_frame = true;
  return absl::OkStatus();
}

absl::Status SessionServer::RegisterRegions(Session& s) {
  auto reg = [&](std::vector<uint8_t>& buf, size_t size, uint64_t access,
                 std::unique_ptr<fabric::MemoryRegion>* mr) -> absl::Status {
    if (buf.size() != size) buf.assign(size, 0);
    absl::StatusOr<std::unique_ptr<fabric::MemoryRegion>> r = s.endpoint->RegisterMemory(buf.data(), buf.size(), access);
    if (!r.ok()) return r.status();
    *mr = std::move(*r);
    return absl::OkStatus();
  };
  std::vector<RegionDesc> local;
  const size_t ring_size = session::RingRegionSize(options_.mmio_ring_capacity, session::kMmioEntrySize);
  if (absl::Status st = reg(s.ring_buf, ring_size, fabric::kRemoteWrite | fabric::kRemoteRead, &s.ring_mr); !st.ok()) {
    return st;
  }
  session::EncodeRingHeader({options_.mmio_ring_capacity, session::kMmioEntrySize, s.gate.applied(), s.gate.applied()},
                            s.ring_buf.data());
  local.push_back({RegionKind::kMmioRing, session::kAccessRead | session::kAccessWrite, 0, s.ring_mr->remote().address,
                   s.ring_buf.size(), s.ring_mr->remote().key});
  absl::StatusOr<std::unique_ptr<fabric::MemoryRegion>> dma_mr = s.endpoint->RegisterMemory(
      s.device->dma_space(), s.device->dma_size(), fabric::kRemoteRead | fabric::kRemoteWrite);
  if (!dma_mr.ok()) return dma_mr.status();
  s.dma_mr = std::move(*dma_mr);
  local.push_back({RegionKind::kDma, session::kAccessRead | session::kAccessWrite, 0, s.dma_mr->remote().address,
                   s.device->dma_size(), s.dma_mr->remote().key});
  s.bar_buf.resize(s.bars.size());
  s.bar_mr.resize(s.bars.size());
  for (size_t i = 0; i < s.bars.size(); ++i) {
    const uint64_t n = std::min(s.bars[i].size, options_.max_mirror_bytes);
    if (absl::Status st = reg(s.bar_buf[i], n, fabric::kRemoteRead, &s.bar_mr[i]); !st.ok()) return st;
    local.push_back({RegionKind::kBar, session::kAccessRead, s.bars[i].index, s.bar_mr[i]->remote().address, n,
                     s.bar_mr[i]->remote().key});
  }
  const size_t comp_size = session::RingRegionSize(s.comp_capacity, session::kCompletionEntrySize);
  if (absl::Status st = reg(s.comp_buf, comp_size, fabric::kLocalOnly, &s.comp_mr); !st.ok()) return st;
  session::EncodeRingHeader({s.comp_capacity, session::kCompletionEntrySize, s.client_consumed, s.completion_seq},
                            s.comp_buf.data());
  if (absl::Status st = reg(s.anchor_buf, session::kAnchorRegionSize, fabric::kRemoteRead, &s.anchor_mr); !st.ok()) {
    return st;
  }
  local.push_back({RegionKind::kAnchor, session::kAccessRead, 0, s.anchor_mr->remote().address,
                   session::kAnchorRegionSize, s.anchor_mr->remote().key});
  session::Anchor anchor;
  anchor.session_id = s.id;
  anchor.regions = local;
  std::vector<uint8_t> encoded = session::EncodeAnchor(anchor);
  std::memcpy(s.anchor_buf.data() + session::kAnchorOffset, encoded.data(), encoded.size());
  s.local = std::move(local);
  return absl::OkStatus();
}

grpc::Status SessionServer::CloseSession(grpc::ServerContext* ctx, const rpci::v1::CloseSessionRequest* req,
                                         rpci::v1::CloseSessionResponse*) {
  session::Nonce nonce{};
  const session::ProofPurpose purpose = req->detach() ? session::ProofPurpose::kDetach : session::ProofPurpose::kClose;
  absl::StatusOr<std::shared_ptr<Session>> s =
      Authenticate({req->session_id(), req->nonce(), req->proof(), purpose, "", ctx->peer()}, &nonce);
  if (!s.ok()) return ToGrpc(s.status());
  if (req->detach()) {
    Detach(**s);
    return grpc::Status::OK;
  }
  Teardown((*s)->id, "closed", true);
  return grpc::Status::OK;
}

void SessionServer::Detach(Session& s) {
  std::lock_guard<std::mutex> lock(s.mu);
  if (s.attached) s.endpoint->RemovePeer(s.peer).IgnoreError();
  s.Deregister();  // the next attach gets a fresh endpoint
  // Unattached again: the attach timeout runs from now.
  s.last_seen = options_.clock->Now();
  teardowns_->Labels({"detached"}).Increment();
  log_.Info("session detached by its workload", {{"session", s.id.ToString()}});
}

grpc::Status SessionServer::SessionStatus(grpc::ServerContext* ctx, const rpci::v1::SessionStatusRequest* req,
                                          rpci::v1::SessionStatusResponse* resp) {
  session::Nonce nonce{};
  absl::StatusOr<std::shared_ptr<Session>> s = Authenticate(
      {req->session_id(), req->nonce(), req->proof(), session::ProofPurpose::kStatus, "", ctx->peer()}, &nonce);
  if (!s.ok()) {
    if (s.status().code() == absl::StatusCode::kInvalidArgument) return ToGrpc(s.status());
    resp->set_live(false);
    return grpc::Status::OK;
  }
  std::lock_guard<std::mutex> lock((*s)->mu);
  // The session belongs to the pod's allocation: while its holder (the
  // plugin's health check, with the key) keeps asking, an unattached session
  // (between container runs) is kept; once nobody asks it is reaped after the
  // attach timeout.
  if (!(*s)->attached) (*s)->last_seen = options_.clock->Now();
  resp->set_live(true);
  resp->set_applied_sequence((*s)->gate.applied());
  resp->set_completions((*s)->completion_seq);
  return grpc::Status::OK;
}

void SessionServer::Teardown(session::SessionId id, const std::string& reason, bool notify) {
  std::shared_ptr<Session> s;
  {
    // The session (and so the device's ownership) stays listed until the
    // device is scrubbed: nobody is granted it in between.
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sessions_.find(id);
    if (it == sessions_.end() || it->second->closing) return;
    s = it->second;
    s->closing = true;
  }
  EndDataPath(*s, notify);
  absl::Status clean;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    s->Deregister();
    s->CloseFabric();  // the session's domain: nothing of it is reachable now
    s->seq.reset();
    clean = s->device->Reset();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    device_clean_[s->device_id] = clean;
    sessions_.erase(id);
    device_owner_.erase(s->device_id);
    open_gauge_->Set(static_cast<double>(sessions_.size()));
  }
  scrubbed_.notify_all();
  scrubs_->Labels({clean.ok() ? "clean" : "failed"}).Increment();
  if (!clean.ok()) {
    log_.Error("device not clean after teardown; it will not be granted again",
               {{"session", id.ToString()}, {"device", s->device_id},
                {"error", std::string(clean.message())}});
  }
  if (!options_.state_dir.empty()) ::unlink((options_.state_dir + "/" + id.ToString() + ".seq").c_str());
  SaveCheckpoint();
  teardowns_->Labels({reason}).Increment();
  log_.Info("session torn down", {{"session", id.ToString()}, {"reason", reason}});
}

void SessionServer::ReaperLoop() {
  while (!stopping_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const absl::Time now = options_.clock->Now();
    std::vector<std::shared_ptr<Session>> live;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, s] : sessions_) {
        if (!s->closing) live.push_back(s);
      }
    }
    std::vector<session::SessionId> expired, orphaned;
    for (const std::shared_ptr<Session>& s : live) {
      // A session busy with its own work is alive; never wait for it here.
      std::unique_lock<std::mutex> slock(s->mu, std::try_to_lock);
      if (!slock.owns_lock()) continue;
      const absl::Duration limit = s->attached ? options_.grace : options_.attach_timeout;
      if (now - s->last_seen > limit) {
        expired.push_back(s->id);
      } else if (Orphaned(*s, now)) {
        // The pod was deleted, or its holder released the grant after losing
        // the reservation's answer: the device is freed now, not after
        // attach_timeout.
        orphaned.push_back(s->id);
      }
    }
    for (session::SessionId id : expired) Teardown(id, "peer_gone", true);
    for (session::SessionId id : orphaned) Teardown(id, "its grant ended before any attach", false);
    std::vector<session::SessionId> closes;
    {
      std::lock_guard<std::mutex> lock(close_mu_);
      closes.swap(close_requests_);
    }
    for (session::SessionId id : closes) Teardown(id, "closed", false);
    if (checkpoint_stale_.exchange(false)) SaveCheckpoint();
  }
}

void SessionServer::Refuse(Session* s, ErrorCode code, uint64_t what) {
  refused_->Labels({session::ErrorCodeName(code)}).Increment();
  if (s != nullptr && s->attached) SendFrame(*s, FrameType::kError, static_cast<uint64_t>(code), what);
}

absl::Status SessionServer::TrySendFrame(Session& s, FrameType type, uint64_t arg0, uint64_t arg1) {
  std::string bytes;
  std::shared_ptr<fabric::Endpoint> ep;
  fabric::PeerId peer = 0;
  {
    std::lock_guard<std::mutex> lock(s.frames_mu);
    if (!s.frames.has_value() || s.endpoint == nullptr) {
      return absl::FailedPreconditionError("no client attached");
    }
    bytes = s.frames->Seal(type, arg0, arg1);
    ep = s.endpoint;
    peer = s.peer;  // set before frames, under frames_mu (Attach)
  }
  return ep->Send(peer, bytes);
}

void SessionServer::SendFrame(Session& s, FrameType type, uint64_t arg0, uint64_t arg1) {
  if (absl::Status st = TrySendFrame(s, type, arg0, arg1);
      !st.ok() && st.code() != absl::StatusCode::kFailedPrecondition) {
    log_.Warn("frame to client failed", {{"session", s.id.ToString()},
                                         {"error", std::string(st.message())}});
  }
}

void SessionServer::EndDataPath(Session& s, bool notify) {
  const absl::Time start = absl::Now();
  std::optional<std::thread> sender;
  if (notify && s.attached) {
    // Best effort: a client that is gone (a killed pod) would hold the send
    // for the fabric's op_timeout, retried while its connection is refused.
    auto told = std::make_shared<std::promise<absl::Status>>();
    std::future<absl::Status> outcome = told->get_future();
    sender.emplace([this, &s, told] { told->set_value(TrySendFrame(s, FrameType::kClose, 0, 0)); });
    const bool answered = outcome.wait_for(absl::ToChronoNanoseconds(kCloseNotice)) == std::future_status::ready;
    const absl::Status st = answered ? outcome.get() : absl::DeadlineExceededError("no answer");
    if (!st.ok()) {
      log_.Info("client not told of the close (gone?)",
                {{"session", s.id.ToString()}, {"error", std::string(st.message())},
                 {"waited_us", absl::ToInt64Microseconds(absl::Now() - start)}});
    }
  }
  // Cancels whatever still waits on the endpoint: the notice, the worker's
  // push to a peer that no longer answers. Then the worker stops at once.
  s.Signal(false, true);
  if (std::shared_ptr<fabric::Endpoint> ep = s.CurrentEndpoint()) ep->Shutdown();
  if (sender) sender->join();
  s.StopWorker();
}

void SessionServer::HandleFrame(Session& s, const fabric::Endpoint& from, const fabric::Message& message) {
  // An empty message is a client dialling ahead of its attach
  // (fabric::Endpoint::Dial): it carries nothing to refuse.
  if (message.bytes.empty()) return;
  const auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(message.bytes.data()), message.bytes.size());
  absl::StatusOr<session::Frame> frame = session::DecodeFrame(bytes);
  if (!frame.ok()) {
    // A version-1 frame (which carried the key) lands here as FAILED_PRECONDITION.
    const bool old = frame.status().code() == absl::StatusCode::kFailedPrecondition;
    refused_->Labels({old ? "old_version" : "malformed"}).Increment();
    if (uint64_t held = 0; s.refusal_log.Allow(options_.clock->Now(), &held)) {
      log_.Warn("frame refused", {{"session", s.id.ToString()}, {"reason", old ? "old_version" : "malformed"},
                                  {"error", std::string(frame.status().message())}, {"suppressed", held}});
    }
    return;
  }
  // Only this session's frames come in on its endpoint.
  if (frame->session_id != s.id) {
    refused_->Labels({"stale_session"}).Increment();
    return;
  }
  std::lock_guard<std::mutex> lock(s.mu);
  const char* refusal = nullptr;
  {
    std::lock_guard<std::mutex> flock(s.frames_mu);
    if (!s.frames.has_value()) {
      refusal = "stale_session";
    } else if (&from != s.endpoint.get() || (from.reports_sender() && message.from != s.peer)) {
      // Bound to the attached client's endpoint: a frame sent from anywhere
      // else (or left over from an earlier attach's endpoint) is refused
      // before its MAC is looked at, so it cannot spend a counter.
      refusal = "foreign_peer";
    } else if (session::FrameChannel::Verdict v = s.frames->Check(bytes, *frame);
               v != session::FrameChannel::Verdict::kOk) {
      // Not answered: whoever sent it cannot prove the session's key.
      refusal = session::VerdictName(v);
    }
  }
  if (refusal != nullptr) {
    refused_->Labels({refusal}).Increment();
    if (uint64_t held = 0; s.refusal_log.Allow(options_.clock->Now(), &held)) {
      log_.Warn("frame refused",
                {{"session", s.id.ToString()}, {"reason", refusal}, {"counter", frame->counter}, {"suppressed", held}});
    }
    return;
  }
  if (s.attached) {
    ProcessFrame(s, *frame);
    if (std::exchange(s.await_frame, false) && s.attached) PushCompletions(s, false);  // the client is connected
  }
}

void SessionServer::WorkLoop(Session& s) {
  {
    std::lock_guard<std::mutex> lock(s.mu);
    s.worker_id = std::this_thread::get_id();
  }
  if (!s.FabricOpen() && !OpenSessionFabricUntilOpen(s)) return;
  std::shared_ptr<fabric::Endpoint> ep;
  uint64_t dropped_seen = 0, client_dropped_seen = 0;
  while (true) {
    bool interrupt = false;
    {
      std::lock_guard<std::mutex> lock(s.signal_mu);
      if (s.stop_worker) return;
      interrupt = std::exchange(s.interrupt_pending, false);
    }
    if (interrupt) {
      // The push takes every interrupt raised so far; a resumed attach
      // pushes nothing until the client's first frame.
      std::lock_guard<std::mutex> lock(s.mu);
      if (s.attached && !s.await_frame) PushCompletions(s, false);
      continue;
    }
    if (std::shared_ptr<fabric::Endpoint> now = s.CurrentEndpoint(); now != ep) {
      ep = std::move(now);
      dropped_seen = ep ? ep->dropped_messages() : 0;
      client_dropped_seen = ep ? ClientDrops(s, *ep) : 0;
    }
    if (ep == nullptr) return;  // the session's fabric is closed
    // A failed push is retried (as an interrupt's push) until it goes
    // through or the client re-attaches, which replays it anyway.
    const bool retry = s.push_failed;
    absl::StatusOr<fabric::Message> m = ep->RecvFrom(retry ? kPushRetry : kWorkerPoll);
    if (retry && !m.ok() && m.status().code() != absl::StatusCode::kCancelled) {
      std::lock_guard<std::mutex> lock(s.signal_mu);
      s.interrupt_pending = true;
    }
    // Frames the endpoint dropped while this worker was busy (a flood): the
    // attached client's own apart from everyone else's.
    if (const uint64_t dropped = ep->dropped_messages(); dropped > dropped_seen) {
      const uint64_t client = ClientDrops(s, *ep);
      const uint64_t own = std::min(client - client_dropped_seen, dropped - dropped_seen);
      if (own > 0) refused_->Labels({"inbox_full_client"}).Increment(static_cast<double>(own));
      if (dropped - dropped_seen > own) {
        refused_->Labels({"inbox_full"}).Increment(static_cast<double>(dropped - dropped_seen - own));
      }
      dropped_seen = dropped;
      client_dropped_seen = client;
    }
    if (m.ok()) {
      HandleFrame(s, *ep, *m);
    } else if (m.status().code() == absl::StatusCode::kCancelled) {
      // Replaced by a re-attach's endpoint (picked up above) or closing.
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
}

uint64_t SessionServer::ClientDrops(Session& s, const fabric::Endpoint& ep) {
  std::lock_guard<std::mutex> lock(s.mu);
  return s.attached ? ep.dropped_messages_from(s.peer) : 0;
}

void SessionServer::StartWorker(Session& s) {
  s.worker = std::thread([this, &s] { WorkLoop(s); });
  // Named for ps -L / top -H (and bench:session, which places it).
  pthread_setname_np(s.worker.native_handle(), "rpci-session");
}

void SessionServer::ProcessFrame(Session& s, const session::Frame& frame) {
  s.last_seen = options_.clock->Now();
  // Work asked of the agent: a session over its byte budget yields to this one.
  if (frame.type == FrameType::kKick || frame.type == FrameType::kRefresh) demand_.Note(s.id.value(), s.last_seen);
  switch (frame.type) {
    case FrameType::kKick:
      if (frame.payload.empty()) {
        HandleKick(s, frame.arg0, frame.arg1);
      } else {
        HandleInlineKick(s, frame);
      }
      break;
    case FrameType::kRefresh:
      if (absl::Status st = PushMirrors(s); st.ok()) SendFrame(s, FrameType::kRefreshed, frame.arg0, s.gate.applied());
      break;
    case FrameType::kMapFromDevice:
      MapFromDevice(s, frame.arg0, frame.arg1);
      break;
    case FrameType::kUnmap:
      if (auto it = s.from_device.find(frame.arg0); it != s.from_device.end()) {
        s.mapped_bytes -= it->second;
        s.from_device.erase(it);
      }
      break;
    case FrameType::kHeartbeat:
      break;  // last_seen is updated above
    case FrameType::kClose: {
      // Not here: Teardown stops this very worker. The reaper does it.
      std::lock_guard<std::mutex> lock(close_mu_);
      close_requests_.push_back(s.id);
      break;
    }
    default:
      Refuse(&s, ErrorCode::kMalformed, static_cast<uint64_t>(frame.type));
  }
}

void SessionServer::MapFromDevice(Session& s, uint64_t offset, uint64_t len) {
  RegionDesc dma{RegionKind::kDma, session::kAccessRead | session::kAccessWrite, 0, 0, s.device->dma_size(), 0};
  if (absl::Status st = session::CheckAccess(dma, offset, len, true); !st.ok()) {
    Refuse(&s, ErrorCode::kOutOfBounds, offset);
    return;
  }
  // Every mapped range is pushed to the client before each completion: the
  // caps bound what one session can make the agent move per interrupt.
  const uint64_t replaced = s.from_device.count(offset) ? s.from_device[offset] : 0;
  if ((replaced == 0 && s.from_device.size() >= options_.max_mapped_ranges) ||
      s.mapped_bytes - replaced + len > options_.max_mapped_bytes) {
    Refuse(&s, ErrorCode::kOverLimit, offset);
    return;
  }
  s.mapped_bytes = s.mapped_bytes - replaced + len;
  s.from_device[offset] = len;
}

void SessionServer::HandleKick(Session& s, uint64_t tail, uint64_t consumed) {
  s.NoteConsumed(consumed);
  absl::StatusOr<session::RingHeader> header = session::DecodeRingHeader(
      absl::MakeConstSpan(s.ring_buf.data(), session::kRingHeaderSize), session::kMmioEntrySize);
  // The client may already have published a later batch (and tail) before
  // this kick is handled: apply up to the kick's tail, which the header must
  // have reached.
  if (!header.ok() || header->tail < tail ||
      (tail > s.gate.applied() && tail - s.gate.applied() > options_.mmio_ring_capacity)) {
    Refuse(&s, ErrorCode::kBadSequence, tail);
    return;
  }
  // A kick the client sent again (no ack within op_timeout) whose writes
  // were all applied meanwhile: nothing to apply, the ack goes out again.
  if (tail <= s.gate.applied()) {
    KickDone(s);
    return;
  }
  for (uint64_t seq = s.gate.applied() + 1; seq <= tail; ++seq) {
    const size_t slot = session::RingSlotOffset(seq, options_.mmio_ring_capacity, session::kMmioEntrySize);
    absl::StatusOr<session::MmioWrite> w =
        session::DecodeMmioWrite(absl::MakeConstSpan(s.ring_buf.data() + slot, session::kMmioEntrySize));
    if (!w.ok()) {
      Refuse(&s, ErrorCode::kMalformed, seq);
      break;
    }
    if (w->seq != seq) {
      Refuse(&s, ErrorCode::kBadSequence, seq);
      break;
    }
    if (!ApplyEntry(s, *w)) break;
  }
  KickDone(s);
}

bool SessionServer::ApplyEntry(Session& s, const session::MmioWrite& w) {
  absl::StatusOr<session::ApplyGate::Verdict> verdict = s.gate.Check(w.seq);
  if (!verdict.ok()) {
    Refuse(&s, ErrorCode::kBadSequence, w.seq);
    return false;
  }
  if (*verdict == session::ApplyGate::Verdict::kDuplicate) return true;
  // Bounds and access against the device's BAR; a refused write is consumed
  // (so later writes keep their order) but never reaches the device.
  const SessionDevice::Bar* bar = nullptr;
  for (const SessionDevice::Bar& b : s.bars) {
    if (b.index == w.bar) bar = &b;
  }
  absl::Status access =
      bar == nullptr
          ? absl::OutOfRangeError("no such bar")
          : session::CheckAccess({RegionKind::kBar,
                                  static_cast<uint8_t>(session::kAccessRead | (bar->writable ? session::kAccessWrite : 0)),
                                  bar->index, 0, bar->size, 0},
                                 w.offset, w.width, true);
  if (access.ok()) access = s.device->WriteRegister(w.bar, w.offset, w.width, w.value);
  if (!access.ok()) {
    Refuse(&s, session::ErrorCodeFor(access), w.seq);
  } else {
    mmio_applied_->Increment();
  }
  s.gate.MarkApplied(w.seq);
  s.seq->set_applied(w.seq);
  return true;
}

void SessionServer::KickDone(Session& s) {
  // The agent is the ring's consumer: advancing head frees the slots (the
  // client writes only the tail word, so this cannot race its updates).
  const uint64_t head = s.gate.applied();
  std::memcpy(s.ring_buf.data() + session::kRingHeadOffset, &head, sizeof(head));  // little-endian host
  PushCompletions(s, true);
}

void SessionServer::InterruptLoop() {
  while (!stopping_) {
    std::vector<pollfd> fds;
    std::vector<std::shared_ptr<Session>> owners;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [id, s] : sessions_) {
        const int fd = s->closing || !s->attached ? -1 : s->device->interrupt_fd();
        if (fd < 0) continue;
        std::lock_guard<std::mutex> signal(s->signal_mu);
        if (s->interrupt_pending) continue;  // its worker has it already
        fds.push_back({fd, POLLIN, 0});
        owners.push_back(s);
      }
    }
    if (fds.empty()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      continue;
    }
    if (poll(fds.data(), fds.size(), 50) <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if ((fds[i].revents & POLLIN) == 0) continue;
      // The session's own worker pushes the completions, as it does a kick's.
      owners[i]->Signal(/*interrupt=*/true, /*stop=*/false);
    }
  }
}

void SessionServer::PushCompletions(Session& s, bool always) {
  TakeInterrupts(s);
  const uint64_t upto = s.completion_seq;
  const bool owed = upto != s.delivered || s.resync;
  if (!owed && !always) {
    s.push_failed = false;
    return;
  }
  std::vector<fabric::RmaOp> segs;
  std::string payload;
  absl::Status st = absl::OkStatus();
  if (owed && (s.resync || !InlineEvent(s, &segs, &payload))) {
    segs.clear();
    payload.clear();
    st = UndeliveredSegments(s, &segs);
  }
  if (st.ok()) {
    std::string event;
    {
      std::lock_guard<std::mutex> lock(s.frames_mu);
      if (!s.frames.has_value()) return;
      event = s.frames->Seal(FrameType::kEvent, s.gate.applied(), upto, payload);
    }
    Budget(s, segs);
    st = segs.empty() ? s.endpoint->Send(s.peer, event) : s.endpoint->WriteAndSend(s.peer, segs, event);
  }
  const bool failing_before = s.push_failed.exchange(!st.ok());
  if (!st.ok()) {
    s.mirror_pushed = false;  // unknown what landed: the retry pushes the mirror whole
    push_failures_->Increment();
    if (!failing_before) {  // once per run of failures; the counter counts each
      log_.Warn("completion push failed; retrying", {{"session", s.id.ToString()},
                                                     {"undelivered", upto - s.delivered},
                                                     {"error", std::string(st.message())}});
    }
    return;
  }
  s.delivered = upto;
  s.resync = false;
}

absl::Status SessionServer::MirrorSegments(Session& s, std::vector<fabric::RmaOp>* segs, bool device_written) {
  const size_t first = segs->size();
  for (size_t i = 0; i < s.bars.size(); ++i) {
    absl::StatusOr<RegionDesc> mirror = session::FindRegion(s.client, RegionKind::kBar, s.bars[i].index);
    if (!mirror.ok()) return mirror.status();
    if (absl::Status st = s.device->ReadBar(s.bars[i].index, 0, s.bar_buf[i].size(), s.bar_buf[i].data()); !st.ok()) {
      return st;
    }
    segs->push_back({s.bar_mr[i].get(), 0, s.bar_buf[i].size(), mirror->address, mirror->key});
  }
  if (absl::Status st = WrapMirrorPush(s, segs, first); !st.ok()) return st;
  if (!device_written) return absl::OkStatus();
  absl::StatusOr<RegionDesc> dma = session::FindRegion(s.client, RegionKind::kDma);
  if (!dma.ok()) return dma.status();
  for (const auto& [off, len] : s.from_device) segs->push_back({s.dma_mr.get(), off, len, dma->address + off, dma->key});
  return absl::OkStatus();
}

void SessionServer::AnchorSegment(const Session& s, std::vector<fabric::RmaOp>* segs) const {
  absl::StatusOr<RegionDesc> to = session::FindRegion(s.client, RegionKind::kAnchor);
  const size_t n = session::kAnchorOffset + session::kAnchorHeaderSize + s.local.size() * session::kRegionDescSize;
  if (!to.ok() || (to->access & session::kAccessWrite) == 0 || to->size < n || s.anchor_mr == nullptr ||
      s.anchor_buf.size() < n) {
    return;
  }
  segs->push_back({s.anchor_mr.get(), 0, n, to->address, to->key});
}

absl::Status SessionServer::PushMirrors(Session& s, bool device_written, bool with_anchor) {
  std::vector<fabric::RmaOp> segs;
  if (with_anchor) AnchorSegment(s, &segs);
  absl::Status st = MirrorSegments(s, &segs, device_written);
  if (st.ok()) Budget(s, segs);
  if (st.ok()) st = WriteInOrder(s, segs);
  s.mirror_pushed = st.ok();
  if (!st.ok()) log_.Warn("mirror push failed", {{"session", s.id.ToString()}, {"error", std::string(st.message())}});
  return st;
}

void SessionServer::TakeInterrupts(Session& s) {
  for (const SessionDevice::Interrupt& irq : s.device->TakeInterrupts()) {
    session::Completion c;
    c.vector = irq.vector;
    c.cause = irq.cause;
    c.data = irq.data;
    s.backlog.push_back(c);
  }
  // Each entry gets its sequence number and slot once, while the client's
  // ring has room; UndeliveredSegments pushes it (again, until delivered).
  while (!s.backlog.empty() && s.completion_seq - s.client_consumed < s.comp_capacity) {
    session::Completion c = s.backlog.front();
    s.backlog.pop_front();
    c.seq = ++s.completion_seq;
    c.applied_mmio_seq = s.gate.applied();
    session::EncodeCompletion(c, s.comp_buf.data() +
                                     session::RingSlotOffset(c.seq, s.comp_capacity, session::kCompletionEntrySize));
    completions_->Increment();
  }
  s.seq->set_completions(s.completion_seq);
}

absl::Status SessionServer::UndeliveredSegments(Session& s, std::vector<fabric::RmaOp>* segs) {
  // Device changes reach the mirror before any completion that reports them:
  // in the same ordered batch when the provider places writes in order,
  // else pushed and waited for first.
  // The device-written ranges go only with a completion the client has not
  // taken: one that has taken them all may be writing its mapped buffers
  // (librpci/device.h), and a resume's push must not land over that.
  const bool owed = s.completion_seq > s.client_consumed;
  if (s.endpoint->ordered_writes()) {
    if (absl::Status st = MirrorSegments(s, segs, owed); !st.ok()) return st;
    s.mirror_pushed = true;  // unless the batch fails (PushCompletions)
  } else if (absl::Status st = PushMirrors(s, owed); !st.ok()) {
    return st;
  }
  absl::StatusOr<RegionDesc> ring = session::FindRegion(s.client, RegionKind::kCompletionRing);
  if (!ring.ok()) return ring.status();
  for (uint64_t seq = s.delivered + 1; seq <= s.completion_seq; ++seq) {
    const size_t slot = session::RingSlotOffset(seq, s.comp_capacity, session::kCompletionEntrySize);
    segs->push_back({s.comp_mr.get(), slot, session::kCompletionEntrySize, ring->address + slot, ring->key});
  }
  session::EncodeRingHeader({s.comp_capacity, session::kCompletionEntrySize, s.client_consumed, s.completion_seq},
                            s.comp_buf.data());
  segs->push_back({s.comp_mr.get(), session::kRingTailOffset, 8, ring->address + session::kRingTailOffset, ring->key});
  return absl::OkStatus();
}

}  // namespace rpci::agent

namespace rpci::agent {

// ---- inline doorbells: entries in the kick, completions in the event ----

namespace {

// Completions one event carries inline; more go through the ring by RMA.
constexpr size_t kInlineCompletions = 8;
// Changed mirror bytes closer than this are sent as one patch.
constexpr size_t kPatchGap = 16;

// The byte ranges [begin, end) where `now` differs from `before`, 8-byte
// words at a time, ranges closer than kPatchGap merged.
std::vector<std::pair<size_t, size_t>> ChangedRanges(const std::vector<uint8_t>& before,
                                                     const std::vector<uint8_t>& now) {
  std::vector<std::pair<size_t, size_t>> ranges;
  for (size_t at = 0; at < now.size(); at += 8) {
    const size_t n = std::min<size_t>(8, now.size() - at);
    if (std::memcmp(before.data() + at, now.data() + at, n) == 0) continue;
    if (!ranges.empty() && at - ranges.back().second <= kPatchGap) {
      ranges.back().second = at + n;
    } else {
      ranges.push_back({at, at + n});
    }
  }
  return ranges;
}

}  // namespace

void SessionServer::HandleInlineKick(Session& s, const session::Frame& frame) {
  absl::StatusOr<std::vector<session::MmioWrite>> writes = session::DecodeMmioEntries(
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(frame.payload.data()), frame.payload.size()));
  if (!writes.ok() || writes->empty()) {
    Refuse(&s, ErrorCode::kMalformed, frame.arg0);
    return;
  }
  // The entries end at the kick's tail and leave no gap after what was applied.
  if (writes->back().seq != frame.arg0 || writes->front().seq > s.gate.applied() + 1) {
    Refuse(&s, ErrorCode::kBadSequence, frame.arg0);
    return;
  }
  s.NoteConsumed(frame.arg1);
  for (const session::MmioWrite& w : *writes) {
    if (!ApplyEntry(s, w)) break;
  }
  KickDone(s);
}

absl::Status SessionServer::WrapMirrorPush(Session& s, std::vector<fabric::RmaOp>* segs, size_t first) {
  const size_t bar_segs = segs->size() - first;
  if (bar_segs == 0) return absl::OkStatus();
  absl::StatusOr<RegionDesc> ring = session::FindRegion(s.client, RegionKind::kCompletionRing);
  if (!ring.ok()) return ring.status();
  // Odd before the BAR bytes, even after: the client's reads retry across
  // a push (SessionClient::ReadMirror). Sources stay put until the batch
  // completes: the agent's own copy of the ring header, bytes 24..39.
  const uint64_t odd = ++s.mirror_gen, even = ++s.mirror_gen;
  std::memcpy(s.comp_buf.data() + session::kRingMirrorGenOffset, &odd, 8);
  std::memcpy(s.comp_buf.data() + session::kRingMirrorGenOffset + 8, &even, 8);
  const uint64_t target = ring->address + session::kRingMirrorGenOffset;
  segs->insert(segs->begin() + static_cast<std::ptrdiff_t>(first),
               {s.comp_mr.get(), session::kRingMirrorGenOffset, 8, target, ring->key});
  segs->insert(segs->begin() + static_cast<std::ptrdiff_t>(first + 1 + bar_segs),
               {s.comp_mr.get(), session::kRingMirrorGenOffset + 8, 8, target, ring->key});
  return absl::OkStatus();
}

void SessionServer::Budget(Session& s, const std::vector<fabric::RmaOp>& segs) {
  const ThrottleOptions& t = options_.throttle;
  if (t.nice <= 0) return;
  uint64_t bytes = 0;
  for (const fabric::RmaOp& op : segs) bytes += op.length;
  const absl::Time now = options_.clock->Now();
  if (!s.budget.has_value()) s.budget.emplace(t.bytes_per_second, t.burst_bytes, now);
  // Over budget counts only while another session asks for work: a
  // session alone has nobody to yield to (throttle.h).
  const bool over = s.budget->Spend(bytes, now);
  const bool throttled = over && demand_.OtherThan(s.id.value(), now, t.contention_window);
  const bool was = std::exchange(s.throttled, throttled);
  if (throttled) throttled_bytes_->Increment(static_cast<double>(bytes));
  if (throttled && !was) throttles_->Increment();
  if (throttled != was) {
    if (uint64_t held = 0; s.throttle_log.Allow(now, &held)) {
      log_.Info(throttled ? "session throttled: over its byte budget while another session asks for work, its worker "
                            "runs nicer"
                          : "session no longer throttled",
                {{"session", s.id.ToString()}, {"bytes_per_second", t.bytes_per_second},
                 {"burst_bytes", t.burst_bytes}, {"nice", t.nice}, {"suppressed", held}});
    }
  }
  if (std::this_thread::get_id() == s.worker_id && throttled != s.worker_niced) SetWorkerNice(s, throttled);
  // A session within its budget moves bulk in large pieces; a throttled one
  // in small ones, so another session's doorbell finds a CPU between them.
  // Set at every push, so a re-attach's fresh endpoint gets it too.
  if (s.endpoint != nullptr) s.endpoint->set_bulk_pacing(throttled ? fabric::kYieldingPacing : fabric::kFullSpeedPacing);
}

void SessionServer::SetWorkerNice(Session& s, bool throttled) {
  if (throttled) {
    absl::StatusOr<int> base = ThreadNice();
    if (!base.ok()) return;
    s.worker_base_nice = *base;
    s.worker_niced = SetThreadNice(std::min(19, *base + options_.throttle.nice)).ok();
    return;
  }
  // Without CAP_SYS_NICE (or RLIMIT_NICE) the worker stays nicer for the
  // rest of the session.
  if (absl::Status st = SetThreadNice(s.worker_base_nice); st.ok()) {
    s.worker_niced = false;
  } else if (uint64_t held = 0; s.throttle_log.Allow(options_.clock->Now(), &held)) {
    log_.Warn("throttled session's worker cannot be made less nice again",
              {{"session", s.id.ToString()}, {"error", std::string(st.message())}});
  }
}

absl::Status SessionServer::WriteInOrder(Session& s, const std::vector<fabric::RmaOp>& segs) {
  if (s.endpoint->ordered_writes()) return s.endpoint->WriteBatch(s.peer, segs);
  for (const fabric::RmaOp& op : segs) {
    if (absl::Status st = s.endpoint->Write(s.peer, op); !st.ok()) return st;
  }
  return absl::OkStatus();
}

bool SessionServer::InlineEvent(Session& s, std::vector<fabric::RmaOp>* segs, std::string* payload) {
  // The undelivered completions (TakeInterrupts numbered them) when few,
  // the mirror known to the client and the writes ordered.
  const uint64_t n = s.completion_seq - s.delivered;
  if (n == 0 || n > kInlineCompletions || !s.mirror_pushed || !s.endpoint->ordered_writes()) return false;
  session::EventPayload event;
  for (uint64_t seq = s.delivered + 1; seq <= s.completion_seq; ++seq) {
    const size_t slot = session::RingSlotOffset(seq, s.comp_capacity, session::kCompletionEntrySize);
    absl::StatusOr<session::Completion> c =
        session::DecodeCompletion(absl::MakeConstSpan(s.comp_buf.data() + slot, session::kCompletionEntrySize));
    if (!c.ok()) return false;
    event.completions.push_back(*c);
  }
  if (!MirrorPatches(s, n, &event, segs)) return false;
  absl::StatusOr<RegionDesc> dma = session::FindRegion(s.client, RegionKind::kDma);
  if (!dma.ok()) return false;
  for (const auto& [off, len] : s.from_device) segs->push_back({s.dma_mr.get(), off, len, dma->address + off, dma->key});
  *payload = session::EncodeEventPayload(event);
  return true;
}

bool SessionServer::MirrorPatches(Session& s, size_t completions, session::EventPayload* event,
                                  std::vector<fabric::RmaOp>* segs) {
  size_t budget = session::kMaxFramePayload - 8 - completions * session::kCompletionEntrySize;
  s.bar_scratch.resize(s.bars.size());
  std::vector<std::vector<std::pair<size_t, size_t>>> changed(s.bars.size());
  bool fits = true;
  for (size_t i = 0; i < s.bars.size(); ++i) {
    s.bar_scratch[i].resize(s.bar_buf[i].size());
    if (!s.device->ReadBar(s.bars[i].index, 0, s.bar_scratch[i].size(), s.bar_scratch[i].data()).ok()) return false;
    changed[i] = ChangedRanges(s.bar_buf[i], s.bar_scratch[i]);
    for (const auto& [b, e] : changed[i]) {
      const size_t need = session::PatchWireSize(e - b);
      fits = fits && need <= budget;
      budget -= std::min(budget, need);
    }
  }
  const size_t first = segs->size();
  for (size_t i = 0; i < s.bars.size(); ++i) {
    if (changed[i].empty()) continue;
    // bar_buf is the client's mirror from here on: what changed is sent
    // inline, or (too much) the span it covers by RMA from bar_buf.
    const size_t lo = changed[i].front().first, hi = changed[i].back().second;
    std::memcpy(s.bar_buf[i].data() + lo, s.bar_scratch[i].data() + lo, hi - lo);
    if (fits) {
      for (const auto& [b, e] : changed[i]) {
        event->patches.push_back({s.bars[i].index, static_cast<uint32_t>(b),
                                  std::string(reinterpret_cast<const char*>(s.bar_buf[i].data() + b), e - b)});
      }
      continue;
    }
    absl::StatusOr<RegionDesc> mirror = session::FindRegion(s.client, RegionKind::kBar, s.bars[i].index);
    if (!mirror.ok()) return false;
    segs->push_back({s.bar_mr[i].get(), lo, hi - lo, mirror->address + lo, mirror->key});
  }
  return WrapMirrorPush(s, segs, first).ok();
}

}  // namespace rpci::agent
