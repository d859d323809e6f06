#include "common/fabric/fabric.h"

#include <rdma/fabric.h>
#include <rdma/fi_cm.h>
#include <rdma/fi_domain.h>
#include <rdma/fi_endpoint.h>
#include <rdma/fi_eq.h>
#include <rdma/fi_errno.h>
#include <rdma/fi_rma.h>
#include <sys/random.h>
#include <sys/resource.h>

#include <cstdio>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/fabric/kernel_symbols.h"

namespace rpci::fabric {

absl::Status FabricError(absl::string_view call, int fi_errno) {
  if (fi_errno < 0) fi_errno = -fi_errno;
  // Connection refused/reset, unreachable, I/O and anything not listed: the
  // peer or path is gone (UNAVAILABLE).
  static constexpr struct {
    int fi_errno;
    absl::StatusCode code;
  } kCodes[] = {
      {FI_ETIMEDOUT, absl::StatusCode::kDeadlineExceeded}, {FI_EACCES, absl::StatusCode::kPermissionDenied},
      {FI_EPERM, absl::StatusCode::kPermissionDenied},     {FI_EKEYREJECTED, absl::StatusCode::kPermissionDenied},
      {FI_EINVAL, absl::StatusCode::kInvalidArgument},     {FI_EBADFLAGS, absl::StatusCode::kInvalidArgument},
      {FI_ENODATA, absl::StatusCode::kNotFound},           {FI_ENOENT, absl::StatusCode::kNotFound},
      {FI_ENOMEM, absl::StatusCode::kResourceExhausted},   {FI_ENOSPC, absl::StatusCode::kResourceExhausted},
      {FI_ENOSYS, absl::StatusCode::kUnimplemented},       {FI_EOPNOTSUPP, absl::StatusCode::kUnimplemented},
      {FI_ECANCELED, absl::StatusCode::kCancelled},        {FI_ETOOSMALL, absl::StatusCode::kOutOfRange},
      {FI_EMSGSIZE, absl::StatusCode::kOutOfRange},
  };
  absl::StatusCode code = absl::StatusCode::kUnavailable;
  for (const auto& c : kCodes) {
    if (c.fi_errno == fi_errno) code = c.code;
  }
  return absl::Status(code, absl::StrCat("fabric: ", call, ": ", fi_strerror(fi_errno)));
}

namespace {

// Bytes this process has locked (VmLck in /proc/self/status); -1 unknown.
int64_t LockedBytes() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return -1;
  char line[256];
  int64_t kib = -1;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    long long v = 0;
    if (std::sscanf(line, "VmLck: %lld kB", &v) == 1) kib = v;
  }
  std::fclose(f);
  return kib < 0 ? -1 : kib * 1024;
}

// A failure of a call that pins memory (registration, and rxm's own buffer
// pools in fi_enable). Providers that pin (verbs) fail with ENOMEM when the
// locked-memory limit is reached; say so, with the numbers and the fix.
absl::Status PinningError(absl::string_view call, int rc, size_t bytes) {
  absl::Status s = FabricError(call, rc);
  rlimit limit{};
  if ((rc != -FI_ENOMEM && rc != FI_ENOMEM) || getrlimit(RLIMIT_MEMLOCK, &limit) != 0 ||
      limit.rlim_cur == RLIM_INFINITY) {
    return s;
  }
  return absl::ResourceExhaustedError(absl::StrCat(
      s.message(), " (locked-memory limit: RLIMIT_MEMLOCK is ", limit.rlim_cur, " bytes, ", LockedBytes(),
      " already locked", bytes > 0 ? absl::StrCat(", ", bytes, " more asked") : "",
      "; RDMA registration pins memory: raise the limit (`ulimit -l`; in a pod see docs/operators/install.md, "
      "\"Locked memory for RDMA\") or grant CAP_IPC_LOCK)"));
}

MrMode DecodeMrMode(uint64_t bits) {
  MrMode mode;
  mode.local = (bits & FI_MR_LOCAL) != 0;
  mode.virt_addr = (bits & FI_MR_VIRT_ADDR) != 0;
  mode.prov_key = (bits & FI_MR_PROV_KEY) != 0;
  mode.endpoint = (bits & FI_MR_ENDPOINT) != 0;
  mode.allocated = (bits & FI_MR_ALLOCATED) != 0;
  return mode;
}

// Fabric + domain, closed when the last endpoint or region using them goes.
// Receives ofi_rxm keeps posted per message endpoint (FI_OFI_RXM_MSG_RX_SIZE;
// its default with a shared receive context is 4096).
constexpr size_t kRxmPostedReceives = 256;
constexpr int kRxmCmProgressUs = 200;

struct DomainCore {
  fi_info* info = nullptr;
  fid_fabric* fabric = nullptr;
  fid_domain* domain = nullptr;
  ~DomainCore() {
    if (domain != nullptr) fi_close(&domain->fid);
    if (fabric != nullptr) fi_close(&fabric->fid);
    if (info != nullptr) fi_freeinfo(info);
  }
};

// Endpoint objects; regions keep them open until deregistered.
struct EndpointCore {
  std::shared_ptr<DomainCore> domain;
  fid_ep* ep = nullptr;
  fid_av* av = nullptr;
  fid_cq* cq = nullptr;
  // Receive and send staging pools: posted buffers must outlive the endpoint.
  std::vector<uint8_t> recv_pool, send_pool;
  ~EndpointCore() {
    if (ep != nullptr) fi_close(&ep->fid);
    if (av != nullptr) fi_close(&av->fid);
    if (cq != nullptr) fi_close(&cq->fid);
  }
};

}  // namespace

struct MemoryRegion::Handle {
  std::shared_ptr<EndpointCore> owner;
  fid_mr* mr = nullptr;
  ~Handle() {
    if (mr != nullptr) fi_close(&mr->fid);
  }
};

MemoryRegion::~MemoryRegion() { Revoke(); }

void MemoryRegion::Revoke() {
  handle_.reset();
  desc_ = nullptr;
}

namespace {

// One posted operation. libfabric hands back &ctx as op_context.
struct Op {
  fi_context2 ctx{};
  bool is_recv = false;
  size_t slot = 0;  // receive slot, or send staging slot (SIZE_MAX: none)
  std::atomic<bool> done{false};  // set under the endpoint's mu_; read by leading callers
  int err = 0;
  std::string detail;
  size_t received = 0;
};

constexpr size_t kNoSlot = SIZE_MAX;
// Ops this small ride with the group before them even when it is full (a
// WriteAndSend's message, ring entries and tail words after a bulk write),
// at most kSmallOverflow bytes of them per group: posting them only after
// the full group was placed cost every transfer of a whole number of groups
// (1 MiB, 16 MiB) one more round trip (docs/benchmarks.md, "Device round
// trip, measured soundly").
constexpr size_t kSmallOp = size_t{16} << 10;
constexpr size_t kSmallOverflow = size_t{64} << 10;
// Write-after-write and send-after-write: see Endpoint::ordered_writes().
constexpr uint64_t kWriteOrder = FI_ORDER_WAW | FI_ORDER_SAW;
constexpr int kCompletionBatch = 16;

absl::Status ShutDownError(absl::string_view call) {
  return absl::CancelledError(absl::StrCat("fabric: ", call, ": endpoint shut down"));
}

}  // namespace

class EndpointImpl : public Endpoint {
 public:
  EndpointImpl(const FabricConfig& config, std::shared_ptr<DomainCore> domain, std::string provider, MrMode mode,
               bool ordered_writes, bool reports_sender)
      : config_(config),
        provider_(std::move(provider)),
        mode_(mode),
        ordered_writes_(ordered_writes),
        reports_sender_(reports_sender) {
    core_ = std::make_shared<EndpointCore>();
    core_->domain = std::move(domain);
  }

  ~EndpointImpl() override {
    Shutdown();
    // Regions of our own go before the endpoint; pending ops die with it.
    recv_mr_.reset();
    send_mr_.reset();
  }

  absl::Status Init();

  const std::string& address() const override { return address_; }
  const std::string& provider() const override { return provider_; }
  MrMode mr_mode() const override { return mode_; }

  absl::StatusOr<PeerId> InsertPeer(absl::string_view address) override;
  absl::Status RemovePeer(PeerId peer) override;
  absl::StatusOr<std::unique_ptr<MemoryRegion>> RegisterMemory(void* data, size_t size, uint64_t access) override;
  absl::Status Write(PeerId peer, const RmaOp& op) override { return Rma(peer, {op}, /*write=*/true); }
  absl::Status Read(PeerId peer, const RmaOp& op) override { return Rma(peer, {op}, /*write=*/false); }
  absl::Status WriteBatch(PeerId peer, const std::vector<RmaOp>& ops) override { return Rma(peer, ops, true); }
  absl::Status ReadBatch(PeerId peer, const std::vector<RmaOp>& ops) override { return Rma(peer, ops, false); }
  absl::Status Send(PeerId peer, absl::string_view message) override;
  absl::Status Dial(PeerId peer) override;
  absl::Status WriteAndSend(PeerId peer, const std::vector<RmaOp>& ops, absl::string_view message) override;
  void set_bulk_pacing(BulkPacing pacing) override;
  BulkPacing bulk_pacing() const override;
  bool ordered_writes() const override { return ordered_writes_; }
  absl::StatusOr<std::string> Recv(absl::Duration timeout) override;
  absl::StatusOr<Message> RecvFrom(absl::Duration timeout) override { return Take(timeout, /*wakeable=*/true); }
  bool reports_sender() const override { return reports_sender_; }
  void Wake() override;
  uint64_t dropped_messages() const override { return dropped_.load(); }
  uint64_t dropped_messages_from(PeerId sender) const override;
  void Shutdown() override;
  uint64_t failed_ops() const override { return failed_ops_.load(); }
  int open_attempts() const override { return open_attempts_; }

  // Init failed because another endpoint took the port it had bound
  // (fi_enable: EADDRINUSE); opening again picks another port.
  bool bind_raced() const { return bind_raced_; }
  void set_open_attempts(int attempts) { open_attempts_ = attempts; }

 private:
  absl::Status Rma(PeerId peer, const std::vector<RmaOp>& ops, bool write);
  // OK when every op lies inside a live local region; checked before posting.
  static absl::Status CheckRma(absl::string_view call, const std::vector<RmaOp>& ops);
  absl::Status CheckMessage(absl::string_view message) const;
  ssize_t PostRma(PeerId peer, const RmaOp& rma, bool write, Op* op);
  ssize_t PostSend(PeerId peer, absl::string_view message, Op* op);
  // Retries `post` while the provider answers EAGAIN, until `deadline`.
  template <typename PostFn>
  absl::Status PostWithRetry(const std::shared_ptr<Op>& op, absl::string_view call, absl::Time deadline,
                             PostFn post);
  // Waits until every op is done; DEADLINE_EXCEEDED at `deadline`.
  absl::Status WaitAll(const std::vector<std::shared_ptr<Op>>& ops, absl::string_view call, absl::Time deadline);
  // Forgets an op that was not posted: its slot back (counted if it failed).
  void Unpost(Op& op, bool failed = true);
  // Posts `count` operations through post_one(index, op), waits for them,
  // and re-posts those failed with FI_ENOTCONN until op_timeout passes.
  // `in_order`: the ops rely on their order, so a failed one is re-posted
  // only when every op after it failed too.
  template <typename PostOne>
  absl::Status PostAndWait(absl::string_view call, size_t count, bool in_order, PostOne post_one);
  // PostAndWait over groups of operations of at most
  // pacing.bytes_in_flight (`bytes[i]` each), one group after another: each
  // group complete, so placed, before the next is posted.
  template <typename PostOne>
  absl::Status PostPaced(absl::string_view call, const std::vector<size_t>& bytes, size_t bytes_in_flight,
                         bool in_order, PostOne post_one);
  int PostRecv(Op* op);
  void ProgressLoop();
  // Reads up to kCompletionBatch entries (with their senders when the
  // provider reports them), blocking up to `wait_ms` with a wait object;
  // fi_cq_(s)read(from)'s return.
  ssize_t ReadCompletions(fi_cq_data_entry* entries, fi_addr_t* senders, int wait_ms);
  // Reads the completion queue once and hands what it found to the waiting
  // operations and the inbox. Any thread may call it; returns the entries
  // handled (or the read's negative return).
  ssize_t Poll(int wait_ms);
  void Complete(void* context, int err, std::string detail, size_t len, fi_addr_t sender);
  // A received message (in receive slot `slot`) into the inbox, or dropped
  // and counted when `from` has max_queued waiting there (mu_ held).
  void Queue(size_t slot, size_t len, PeerId from);
  // Caller-driven progress: the waiting caller becomes the one thread that
  // reads the completion queue (polling for config_.busy_poll, then blocking
  // in short fi_cq_sread calls) until done() or `deadline`; other waiters
  // block on cv_ and take over when it leaves. The progress thread stays
  // parked while a caller leads. Returns done().
  template <typename Done>
  bool Drive(absl::Time deadline, Done done);
  template <typename Done>
  bool Lead(absl::Time deadline, Done done);
  // The next queued message; ABORTED when woken (if `wakeable`) first.
  absl::StatusOr<Message> Take(absl::Duration timeout, bool wakeable);

  const FabricConfig config_;
  const std::string provider_;
  const MrMode mode_;
  const bool ordered_writes_;
  const bool reports_sender_;
  std::shared_ptr<EndpointCore> core_;
  std::string address_;
  bool waitable_ = false;
  bool bind_raced_ = false;
  int open_attempts_ = 1;

  std::unique_ptr<MemoryRegion> recv_mr_, send_mr_;
  std::vector<std::shared_ptr<Op>> recv_ops_;

  mutable std::mutex pacing_mu_;
  BulkPacing pacing_ = kFullSpeedPacing;  // under pacing_mu_; read once per call

  std::mutex read_mu_;  // held by the one thread in Poll; taken before mu_
  std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<void*, std::shared_ptr<Op>> outstanding_;  // by &op->ctx
  std::deque<Message> inbox_;
  std::atomic<size_t> inbox_size_{0};  // inbox_.size(), for leading callers
  std::unordered_map<PeerId, size_t> queued_by_sender_;  // messages in inbox_ per sender (under mu_)
  std::atomic<bool> woken_{false};
  std::vector<size_t> free_send_slots_;
  std::vector<Op*> reposts_;  // receives the provider refused (EAGAIN), retried
  std::condition_variable progress_cv_;  // the progress thread waits here while a caller leads
  bool leader_ = false;            // a caller reads the completion queue (under mu_)
  bool progress_reading_ = false;  // the progress thread is in fi_cq_sread (under mu_)
  absl::Time led_until_;           // when the last caller stopped leading (under mu_)
  absl::Time lead_started_;        // when the leading caller began (under mu_)
  bool progress_parked_ = false;   // the progress thread waits, untimed, for the leader to leave (under mu_)

  std::atomic<bool> stop_{false};  // set under mu_, so waiters see it
  std::atomic<uint64_t> failed_ops_{0};
  std::atomic<uint64_t> dropped_{0};
  mutable std::mutex dropped_mu_;
  std::unordered_map<PeerId, uint64_t> dropped_by_sender_;  // under dropped_mu_
  std::thread progress_;
};

absl::Status EndpointImpl::Init() {
  DomainCore& d = *core_->domain;
  fi_cq_attr cq_attr{};
  cq_attr.format = FI_CQ_FORMAT_DATA;
  cq_attr.size = config_.recv_depth * 2 + 256;
  cq_attr.wait_obj = FI_WAIT_UNSPEC;
  int rc = fi_cq_open(d.domain, &cq_attr, &core_->cq, nullptr);
  waitable_ = rc == 0;
  if (waitable_) {
    // A wait object the kernel wakes (fd, pollfd, condition variable) can be
    // blocked on; shm's FI_WAIT_YIELD spins in fi_cq_sread without driving
    // the endpoint, so it is polled like a provider without wait objects.
    fi_wait_obj obj = FI_WAIT_NONE;
    waitable_ = fi_control(&core_->cq->fid, FI_GETWAITOBJ, &obj) == 0 && obj != FI_WAIT_YIELD && obj != FI_WAIT_NONE;
  }
  if (rc != 0) {
    // Some providers have no wait objects; the progress thread polls instead.
    cq_attr.wait_obj = FI_WAIT_NONE;
    if ((rc = fi_cq_open(d.domain, &cq_attr, &core_->cq, nullptr)) != 0) return FabricError("fi_cq_open", rc);
  }
  fi_av_attr av_attr{};
  av_attr.type = FI_AV_TABLE;
  if ((rc = fi_av_open(d.domain, &av_attr, &core_->av, nullptr)) != 0) return FabricError("fi_av_open", rc);
  if ((rc = fi_endpoint(d.domain, d.info, &core_->ep, nullptr)) != 0) return FabricError("fi_endpoint", rc);
  if ((rc = fi_ep_bind(core_->ep, &core_->cq->fid, FI_TRANSMIT | FI_RECV)) != 0) {
    return FabricError("fi_ep_bind(cq)", rc);
  }
  if ((rc = fi_ep_bind(core_->ep, &core_->av->fid, 0)) != 0) return FabricError("fi_ep_bind(av)", rc);
  if ((rc = fi_enable(core_->ep)) != 0) {
    bind_raced_ = rc == -FI_EADDRINUSE;
    return PinningError("fi_enable", rc, 0);
  }

  std::string name(64, '\0');
  size_t len = name.size();
  rc = fi_getname(&core_->ep->fid, name.data(), &len);
  if (rc == -FI_ETOOSMALL) {
    name.resize(len);
    rc = fi_getname(&core_->ep->fid, name.data(), &len);
  }
  if (rc != 0) return FabricError("fi_getname", rc);
  name.resize(len);
  address_ = std::move(name);

  // Registered pools for posted receives and staged sends (FI_MR_LOCAL needs
  // descriptors for both).
  const size_t pool = config_.recv_depth * config_.max_message;
  core_->recv_pool.resize(pool);
  core_->send_pool.resize(pool);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> recv_mr = RegisterMemory(core_->recv_pool.data(), pool, kLocalOnly);
  if (!recv_mr.ok()) return recv_mr.status();
  recv_mr_ = std::move(*recv_mr);
  absl::StatusOr<std::unique_ptr<MemoryRegion>> send_mr = RegisterMemory(core_->send_pool.data(), pool, kLocalOnly);
  if (!send_mr.ok()) return send_mr.status();
  send_mr_ = std::move(*send_mr);
  for (size_t i = 0; i < config_.recv_depth; ++i) {
    free_send_slots_.push_back(i);
    auto op = std::make_shared<Op>();
    op->is_recv = true;
    op->slot = i;
    recv_ops_.push_back(op);
    outstanding_[&op->ctx] = op;
    if ((rc = PostRecv(op.get())) != 0) return FabricError("fi_recv", rc);
  }
  progress_ = std::thread([this] { ProgressLoop(); });
  return absl::OkStatus();
}

int EndpointImpl::PostRecv(Op* op) {
  op->done.store(false);
  return static_cast<int>(fi_recv(core_->ep, &core_->recv_pool[op->slot * config_.max_message], config_.max_message,
                                  recv_mr_->desc(), FI_ADDR_UNSPEC, &op->ctx));
}

void EndpointImpl::Complete(void* context, int err, std::string detail, size_t len, fi_addr_t sender) {
  auto it = outstanding_.find(context);
  if (it == outstanding_.end()) return;
  Op* op = it->second.get();
  if (op->is_recv) {
    if (err == 0) Queue(op->slot, len, reports_sender_ ? static_cast<PeerId>(sender) : kUnknownPeer);
    if (err != FI_ECANCELED) reposts_.push_back(op);
    return;
  }
  op->err = err;
  op->detail = std::move(detail);
  op->received = len;
  op->done.store(true);
  if (op->slot != kNoSlot) free_send_slots_.push_back(op->slot);
  if (err != 0) failed_ops_.fetch_add(1);
  outstanding_.erase(it);
}

void EndpointImpl::Queue(size_t slot, size_t len, PeerId from) {
  size_t& queued = queued_by_sender_[from];
  if (config_.max_queued != 0 && queued >= config_.max_queued) {
    dropped_.fetch_add(1);
    std::lock_guard<std::mutex> lock(dropped_mu_);
    ++dropped_by_sender_[from];
    return;
  }
  Message m;
  m.bytes.assign(reinterpret_cast<const char*>(&core_->recv_pool[slot * config_.max_message]),
                 std::min(len, config_.max_message));
  m.from = from;
  inbox_.push_back(std::move(m));
  inbox_size_.store(inbox_.size());
  ++queued;
}

uint64_t EndpointImpl::dropped_messages_from(PeerId sender) const {
  std::lock_guard<std::mutex> lock(dropped_mu_);
  auto it = dropped_by_sender_.find(sender);
  return it == dropped_by_sender_.end() ? 0 : it->second;
}

ssize_t EndpointImpl::ReadCompletions(fi_cq_data_entry* entries, fi_addr_t* senders, int wait_ms) {
  const bool block = waitable_ && wait_ms > 0;
  if (reports_sender_) {
    return block ? fi_cq_sreadfrom(core_->cq, entries, kCompletionBatch, senders, nullptr, wait_ms)
                 : fi_cq_readfrom(core_->cq, entries, kCompletionBatch, senders);
  }
  return block ? fi_cq_sread(core_->cq, entries, kCompletionBatch, nullptr, wait_ms)
               : fi_cq_read(core_->cq, entries, kCompletionBatch);
}

ssize_t EndpointImpl::Poll(int wait_ms) {
  fi_cq_data_entry entries[kCompletionBatch];
  fi_addr_t senders[kCompletionBatch];
  std::fill(senders, senders + kCompletionBatch, FI_ADDR_NOTAVAIL);
  // One reader from the read to the hand-over: entries reach the inbox in
  // the queue's order. Without it, the progress thread could read a message,
  // lose the CPU, and a leading caller read and deliver the next one first
  // (a session's frame check then refused the earlier one as a replay).
  std::lock_guard<std::mutex> reading(read_mu_);
  ssize_t n = ReadCompletions(entries, senders, wait_ms);
  if (n > 0 && config_.completion_read_pause_for_testing > absl::ZeroDuration()) {
    absl::SleepFor(config_.completion_read_pause_for_testing);
  }
  if (n > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    for (ssize_t i = 0; i < n; ++i) Complete(entries[i].op_context, 0, "", entries[i].len, senders[i]);
  } else if (n == -FI_EAVAIL) {
    fi_cq_err_entry err{};
    if (fi_cq_readerr(core_->cq, &err, 0) != 1) return 0;
    char text[256] = {0};
    const char* detail = fi_cq_strerror(core_->cq, err.prov_errno, err.err_data, text, sizeof(text));
    std::lock_guard<std::mutex> lock(mu_);
    Complete(err.op_context, err.err != 0 ? err.err : FI_EOTHER, detail != nullptr ? detail : "", 0,
             FI_ADDR_NOTAVAIL);
    n = 1;
  } else {
    return n;
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Receives go back to the provider at once; one it refuses (EAGAIN) is
  // retried on the next poll.
  for (auto it = reposts_.begin(); it != reposts_.end();) {
    it = PostRecv(*it) == 0 ? reposts_.erase(it) : it + 1;
  }
  cv_.notify_all();
  return n;
}

// How long a leading caller blocks in one fi_cq_sread. ofi_rxm makes
// progress on connections (its CM events) only between reads, not while one
// blocks: a long read held a new peer's first operation up by that much.
constexpr int kLeadWaitMs = 1;

template <typename Done>
bool EndpointImpl::Lead(absl::Time deadline, Done done) {
  const absl::Time spin_until = std::min(deadline, absl::Now() + config_.busy_poll);
  while (!done() && !stop_.load()) {
    const absl::Time now = absl::Now();
    if (now >= deadline) {
      Poll(0);  // a zero timeout still takes what has arrived
      return done();
    }
    if (!waitable_ || now < spin_until) {
      if (Poll(0) <= 0 && !waitable_) std::this_thread::sleep_for(std::chrono::microseconds(20));
      continue;
    }
    // Blocks in the kernel until data arrives: one wake-up, this thread's.
    Poll(static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(deadline - now) + 1, 1, kLeadWaitMs)));
  }
  return done();
}

template <typename Done>
bool EndpointImpl::Drive(absl::Time deadline, Done done) {
  std::unique_lock<std::mutex> lock(mu_);
  const auto until = std::chrono::system_clock::now() + absl::ToChronoNanoseconds(deadline - absl::Now());
  while (!done() && !stop_.load()) {
    if (!leader_) {
      leader_ = true;
      lead_started_ = absl::Now();
      // Wake the progress thread out of its read so it parks.
      if (progress_reading_ && waitable_) fi_cq_signal(core_->cq);
      lock.unlock();
      const bool ok = Lead(deadline, done);
      lock.lock();
      leader_ = false;
      led_until_ = absl::Now();
      cv_.notify_all();  // another waiter leads now, else the progress thread
      // Only a progress thread parked for good is woken: one on its short
      // timed park sees the leader gone by itself, so a short lead (a
      // doorbell's) ends without a thread wake-up.
      if (progress_parked_) progress_cv_.notify_one();
      return ok;
    }
    if (cv_.wait_until(lock, until) == std::cv_status::timeout) break;
  }
  return done();
}

// A caller that stopped leading is likely to wait again soon (the next
// doorbell); the progress thread leaves the queue to callers this long.
constexpr absl::Duration kProgressLinger = absl::Milliseconds(2);
// While a caller leads, the progress thread checks every kProgressLinger
// whether it left, rather than being woken as each lead ends: a wake-up per
// message cost 8-13 us of a 70-100 us doorbell on 2 loaded cores (the woken
// thread took the CPU and the endpoint's lock from the caller;
// docs/benchmarks.md). A lead this old is an idle wait (the agent worker's
// RecvFrom): the progress thread then parks until that caller leaves.
constexpr absl::Duration kLongLead = absl::Milliseconds(10);

void EndpointImpl::ProgressLoop() {
  while (!stop_.load()) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      progress_reading_ = false;
      // While a caller leads (and shortly after), stay out of its way.
      while (!stop_.load() && (leader_ || absl::Now() < led_until_ + kProgressLinger)) {
        if (leader_ && absl::Now() - lead_started_ >= kLongLead) {
          progress_parked_ = true;
          progress_cv_.wait(lock);
          progress_parked_ = false;
        } else if (leader_) {
          progress_cv_.wait_for(lock, absl::ToChronoNanoseconds(kProgressLinger));
        } else {
          progress_cv_.wait_for(lock, absl::ToChronoNanoseconds(led_until_ + kProgressLinger - absl::Now()));
        }
      }
      if (stop_.load()) break;
      // Receives the provider refused (EAGAIN) are retried on every turn.
      for (auto it = reposts_.begin(); it != reposts_.end();) {
        it = PostRecv(*it) == 0 ? reposts_.erase(it) : it + 1;
      }
      progress_reading_ = true;
    }
    ssize_t n = Poll(waitable_ ? 100 : 0);
    if (n <= 0 && (!waitable_ || (n != -FI_EAGAIN && n != 0))) {
      // Nothing to do (polling) or an odd return: don't spin the CPU.
      std::this_thread::sleep_for(std::chrono::microseconds(waitable_ ? 1000 : 20));
    }
  }
}

absl::StatusOr<PeerId> EndpointImpl::InsertPeer(absl::string_view address) {
  // fi_av_insert reads an address of this provider's format length; a shorter
  // buffer would be read past its end.
  if (address.size() != address_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("fabric: peer address of ", address.size(),
                                                   " bytes, provider ", provider_, " uses ", address_.size()));
  }
  fi_addr_t addr = FI_ADDR_NOTAVAIL;
  int rc = fi_av_insert(core_->av, address.data(), 1, &addr, 0, nullptr);
  if (rc < 0) return FabricError("fi_av_insert", rc);
  if (rc != 1 || addr == FI_ADDR_NOTAVAIL) {
    return absl::InvalidArgumentError("fabric: fi_av_insert: peer address rejected");
  }
  return static_cast<PeerId>(addr);
}

absl::Status EndpointImpl::RemovePeer(PeerId peer) {
  fi_addr_t addr = peer;
  int rc = fi_av_remove(core_->av, &addr, 1, 0);
  return rc == 0 ? absl::OkStatus() : FabricError("fi_av_remove", rc);
}

absl::StatusOr<std::unique_ptr<MemoryRegion>> EndpointImpl::RegisterMemory(void* data, size_t size,
                                                                             uint64_t access) {
  if (data == nullptr || size == 0) return absl::InvalidArgumentError("fabric: register: empty buffer");
  if ((access & ~uint64_t{kRemoteRead | kRemoteWrite}) != 0) {
    return absl::InvalidArgumentError(absl::StrCat("fabric: register: unknown access bits ", access));
  }
  uint64_t fi_access = FI_READ | FI_WRITE | FI_SEND | FI_RECV;
  if (access & kRemoteRead) fi_access |= FI_REMOTE_READ;
  if (access & kRemoteWrite) fi_access |= FI_REMOTE_WRITE;

  auto handle = std::make_shared<MemoryRegion::Handle>();
  handle->owner = core_;
  int rc = 0;
  for (int attempt = 0; attempt < 8; ++attempt) {
    uint64_t requested_key = 0;
    if (!mode_.prov_key) {
      // Keys we choose are random so a peer cannot guess another region's.
      if (getrandom(&requested_key, sizeof(requested_key), 0) != sizeof(requested_key)) {
        return absl::InternalError("fabric: register: getrandom failed");
      }
    }
    // Without FI_MR_VIRT_ADDR, RMA targets are offsets into the region. The
    // tcp provider under rxm (libfabric 1.17) reports no FI_MR_VIRT_ADDR but
    // may still treat targets as virtual addresses plus the registration's
    // `offset` argument; passing the buffer's address there makes offset
    // targets land correctly in both of its behaviours.
    const uint64_t offset = mode_.virt_addr ? 0 : reinterpret_cast<uint64_t>(data);
    rc = fi_mr_reg(core_->domain->domain, data, size, fi_access, offset, requested_key, 0, &handle->mr, nullptr);
    if (rc != -FI_ENOKEY || mode_.prov_key) break;
  }
  if (rc != 0) return PinningError(absl::StrCat("fi_mr_reg(", size, " bytes)"), rc, size);
  if (mode_.endpoint) {
    if ((rc = fi_mr_bind(handle->mr, &core_->ep->fid, 0)) != 0) return FabricError("fi_mr_bind", rc);
    if ((rc = fi_mr_enable(handle->mr)) != 0) return FabricError("fi_mr_enable", rc);
  }
  std::unique_ptr<MemoryRegion> region(new MemoryRegion());
  region->data_ = static_cast<uint8_t*>(data);
  region->size_ = size;
  region->access_ = access;
  region->key_ = fi_mr_key(handle->mr);
  region->desc_ = fi_mr_desc(handle->mr);
  region->remote_address_ = mode_.virt_addr ? reinterpret_cast<uint64_t>(data) : 0;
  region->handle_ = std::move(handle);
  return region;
}

template <typename PostFn>
absl::Status EndpointImpl::PostWithRetry(const std::shared_ptr<Op>& op, absl::string_view call,
                                         absl::Time deadline, PostFn post) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.load()) return ShutDownError(call);
    outstanding_[&op->ctx] = op;
  }
  // Refusals while the provider connects to the peer may last connect_timeout.
  deadline = std::max(deadline, absl::Now() + config_.connect_timeout);
  while (true) {
    ssize_t rc = post();
    if (rc == 0) {
      // The caller drives it when it waits (Drive).
      return absl::OkStatus();
    }
    absl::Status failure;
    // ENOTCONN: rxm is still tearing down a dropped connection; it re-dials
    // on a later post.
    if (rc != -FI_EAGAIN && rc != -FI_ENOTCONN) {
      failure = FabricError(call, static_cast<int>(rc));
    } else if (stop_.load()) {
      failure = ShutDownError(call);  // nothing will free the queues
    } else if (absl::Now() >= deadline) {
      failure = absl::DeadlineExceededError(absl::StrCat(
          "fabric: ", call, ": provider busy for ",
          absl::FormatDuration(std::max(config_.op_timeout, config_.connect_timeout))));
    }
    if (!failure.ok()) {
      Unpost(*op);
      return failure;
    }
    // EAGAIN: queues are full until the progress thread reaps completions.
    std::this_thread::sleep_for(std::chrono::microseconds(rc == -FI_EAGAIN ? 50 : 2000));
  }
}

void EndpointImpl::Unpost(Op& op, bool failed) {
  std::lock_guard<std::mutex> lock(mu_);
  outstanding_.erase(&op.ctx);
  if (op.slot != kNoSlot) free_send_slots_.push_back(op.slot);
  if (failed) failed_ops_.fetch_add(1);
  cv_.notify_all();
}

absl::Status EndpointImpl::WaitAll(const std::vector<std::shared_ptr<Op>>& ops, absl::string_view call,
                                   absl::Time deadline) {
  auto all_done = [&] {
    for (const auto& op : ops) {
      if (!op->done.load()) return false;
    }
    return true;
  };
  if (Drive(deadline, all_done)) return absl::OkStatus();
  if (stop_.load()) return ShutDownError(call);
  failed_ops_.fetch_add(1);
  return absl::DeadlineExceededError(
      absl::StrCat("fabric: ", call, ": no completion within ", absl::FormatDuration(config_.op_timeout)));
}

namespace {

// The status of a completed operation, with the provider's detail.
absl::Status OpError(absl::string_view call, const Op& op) {
  absl::Status s = FabricError(call, op.err);
  std::string message(s.message());
  if (op.err == FI_ECANCELED) {
    // tcp;ofi_rxm reports a target's refusal (bad key, range or access) by
    // closing the connection, which cancels the operation.
    return absl::AbortedError(absl::StrCat(message, ": the target refused the access or the connection closed"));
  }
  if (!op.detail.empty()) absl::StrAppend(&message, " (", op.detail, ")");
  return absl::Status(s.code(), message);
}

}  // namespace

template <typename PostOne>
absl::Status EndpointImpl::PostAndWait(absl::string_view call, size_t count, bool in_order, PostOne post_one) {
  const absl::Time deadline = absl::Now() + config_.op_timeout;
  std::vector<size_t> todo(count);
  for (size_t i = 0; i < count; ++i) todo[i] = i;
  while (true) {
    std::vector<std::shared_ptr<Op>> posted;
    absl::Status post_failure;
    for (size_t i : todo) {
      auto op = std::make_shared<Op>();
      op->slot = kNoSlot;
      post_failure = PostWithRetry(op, call, deadline, [&]() -> ssize_t { return post_one(i, op.get()); });
      if (!post_failure.ok()) break;
      posted.push_back(std::move(op));
    }
    // Posted operations still reference caller buffers: wait for them even
    // when a later post failed.
    // Completions get op_timeout from the last post (which may have waited
    // for a connection).
    if (absl::Status s = WaitAll(posted, call, std::max(deadline, absl::Now() + config_.op_timeout)); !s.ok()) {
      return s;
    }
    if (!post_failure.ok()) return post_failure;
    std::vector<size_t> again;
    const Op* first_retry = nullptr;
    for (size_t k = 0; k < posted.size(); ++k) {
      const Op& op = *posted[k];
      if (op.err == 0) {
        // Re-posting an earlier op would now land it behind this one.
        if (in_order && first_retry != nullptr) return OpError(call, *first_retry);
        continue;
      }
      // After a dropped connection rxm fails queued operations with
      // ENOTCONN, without sending them, and re-dials on the next post.
      if (op.err == FI_ENOTCONN && absl::Now() < deadline) {
        if (first_retry == nullptr) first_retry = &op;
        again.push_back(todo[k]);
        continue;
      }
      return OpError(call, op);
    }
    if (again.empty()) return absl::OkStatus();
    todo = std::move(again);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

absl::Status EndpointImpl::CheckRma(absl::string_view call, const std::vector<RmaOp>& ops) {
  for (const RmaOp& op : ops) {
    if (op.local == nullptr || op.local->revoked()) {
      return absl::InvalidArgumentError(absl::StrCat("fabric: ", call, ": no registered local region"));
    }
    if (op.length == 0 || op.local_offset > op.local->size() || op.length > op.local->size() - op.local_offset) {
      return absl::OutOfRangeError(absl::StrCat("fabric: ", call, ": ", op.length, " bytes at offset ",
                                                op.local_offset, " leave the local region of ", op.local->size()));
    }
  }
  return absl::OkStatus();
}

absl::Status EndpointImpl::CheckMessage(absl::string_view message) const {
  if (message.empty() || message.size() > config_.max_message) {
    return absl::InvalidArgumentError(
        absl::StrCat("fabric: send: message of ", message.size(), " bytes (allowed 1..", config_.max_message, ")"));
  }
  return absl::OkStatus();
}

ssize_t EndpointImpl::PostRma(PeerId peer, const RmaOp& rma, bool write, Op* op) {
  iovec iov{rma.local->data() + rma.local_offset, rma.length};
  void* desc = rma.local->desc();
  fi_rma_iov target{rma.remote_address, rma.length, rma.key};
  fi_msg_rma msg{};
  msg.msg_iov = &iov;
  msg.desc = &desc;
  msg.iov_count = 1;
  msg.addr = peer;
  msg.rma_iov = &target;
  msg.rma_iov_count = 1;
  msg.context = &op->ctx;
  // Delivery-complete: the completion carries the target's verdict.
  return write ? fi_writemsg(core_->ep, &msg, FI_COMPLETION | FI_DELIVERY_COMPLETE)
               : fi_readmsg(core_->ep, &msg, FI_COMPLETION);
}

ssize_t EndpointImpl::PostSend(PeerId peer, absl::string_view message, Op* op) {
  if (op->slot == kNoSlot) {
    // Stage into a registered slot; none free means the peer is slow to
    // complete, which PostWithRetry treats like a full queue.
    std::lock_guard<std::mutex> lock(mu_);
    if (free_send_slots_.empty()) return -FI_EAGAIN;
    op->slot = free_send_slots_.back();
    free_send_slots_.pop_back();
  }
  uint8_t* staged = &core_->send_pool[op->slot * config_.max_message];
  std::memcpy(staged, message.data(), message.size());
  iovec iov{staged, message.size()};
  void* desc = send_mr_->desc();
  fi_msg msg{};
  msg.msg_iov = &iov;
  msg.desc = &desc;
  msg.iov_count = 1;
  msg.addr = peer;
  msg.context = &op->ctx;
  return fi_sendmsg(core_->ep, &msg, FI_COMPLETION | FI_DELIVERY_COMPLETE);
}

namespace {

// `ops` cut into pieces of at most `piece_bytes`, in order; their lengths
// are appended to `bytes`.
std::vector<RmaOp> SplitIntoPieces(const std::vector<RmaOp>& ops, size_t piece_bytes, std::vector<size_t>* bytes) {
  std::vector<RmaOp> pieces;
  for (const RmaOp& op : ops) {
    for (size_t done = 0; done < op.length; done += piece_bytes) {
      RmaOp piece = op;
      piece.local_offset += done;
      piece.remote_address += done;
      piece.length = std::min(piece_bytes, op.length - done);
      pieces.push_back(piece);
      bytes->push_back(piece.length);
    }
  }
  return pieces;
}

}  // namespace

template <typename PostOne>
absl::Status EndpointImpl::PostPaced(absl::string_view call, const std::vector<size_t>& bytes,
                                     size_t bytes_in_flight, bool in_order, PostOne post_one) {
  for (size_t first = 0, end = 0; first < bytes.size(); first = end) {
    size_t group = bytes[end++], overflow = 0;
    while (end < bytes.size()) {
      if (group + bytes[end] <= bytes_in_flight) {
        group += bytes[end++];
      } else if (bytes[end] <= kSmallOp && overflow + bytes[end] <= kSmallOverflow) {
        overflow += bytes[end++];
      } else {
        break;
      }
    }
    absl::Status s =
        PostAndWait(call, end - first, in_order, [&](size_t i, Op* op) { return post_one(first + i, op); });
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

void EndpointImpl::set_bulk_pacing(BulkPacing pacing) {
  pacing.piece_bytes = std::max<size_t>(1, pacing.piece_bytes);
  std::lock_guard<std::mutex> lock(pacing_mu_);
  pacing_ = pacing;
}

BulkPacing EndpointImpl::bulk_pacing() const {
  std::lock_guard<std::mutex> lock(pacing_mu_);
  return pacing_;
}

absl::Status EndpointImpl::Rma(PeerId peer, const std::vector<RmaOp>& ops, bool write) {
  const char* call = write ? "fi_writemsg" : "fi_readmsg";
  if (absl::Status s = CheckRma(call, ops); !s.ok()) return s;
  const BulkPacing pacing = bulk_pacing();
  std::vector<size_t> bytes;
  const std::vector<RmaOp> pieces = SplitIntoPieces(ops, pacing.piece_bytes, &bytes);
  return PostPaced(call, bytes, pacing.bytes_in_flight, /*in_order=*/false,
                   [&](size_t i, Op* op) { return PostRma(peer, pieces[i], write, op); });
}

absl::Status EndpointImpl::Send(PeerId peer, absl::string_view message) {
  if (absl::Status s = CheckMessage(message); !s.ok()) return s;
  return PostAndWait("fi_sendmsg", 1, /*in_order=*/false,
                     [&](size_t, Op* op) { return PostSend(peer, message, op); });
}

absl::Status EndpointImpl::Dial(PeerId peer) {
  auto op = std::make_shared<Op>();
  op->slot = kNoSlot;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.load()) return ShutDownError("fi_sendmsg");
    outstanding_[&op->ctx] = op;
  }
  // One try. ofi_rxm answers EAGAIN to a post for a peer it has no
  // connection to after starting to connect (the progress thread carries the
  // handshake on): that is the dial, with nothing posted. Once connected the
  // empty message goes; its completion, whenever it comes, frees the op.
  const ssize_t rc = PostSend(peer, absl::string_view("", 0), op.get());
  if (rc == 0) return absl::OkStatus();
  Unpost(*op, /*failed=*/rc != -FI_EAGAIN);
  return rc == -FI_EAGAIN ? absl::OkStatus() : FabricError("fi_sendmsg", static_cast<int>(rc));
}

absl::Status EndpointImpl::WriteAndSend(PeerId peer, const std::vector<RmaOp>& ops, absl::string_view message) {
  if (absl::Status s = CheckRma("fi_writemsg", ops); !s.ok()) return s;
  if (absl::Status s = CheckMessage(message); !s.ok()) return s;
  if (!ordered_writes_) {
    if (absl::Status s = WriteBatch(peer, ops); !s.ok()) return s;
    return Send(peer, message);
  }
  const BulkPacing pacing = bulk_pacing();
  std::vector<size_t> bytes;
  const std::vector<RmaOp> pieces = SplitIntoPieces(ops, pacing.piece_bytes, &bytes);
  bytes.push_back(message.size());
  return PostPaced("fi_writemsg+fi_sendmsg", bytes, pacing.bytes_in_flight, /*in_order=*/true, [&](size_t i, Op* op) {
    return i < pieces.size() ? PostRma(peer, pieces[i], /*write=*/true, op) : PostSend(peer, message, op);
  });
}

absl::StatusOr<std::string> EndpointImpl::Recv(absl::Duration timeout) {
  absl::StatusOr<Message> m = Take(timeout, /*wakeable=*/false);
  if (!m.ok()) return m.status();
  return std::move(m->bytes);
}

absl::StatusOr<Message> EndpointImpl::Take(absl::Duration timeout, bool wakeable) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const bool got =
        Drive(deadline, [&] { return inbox_size_.load() > 0 || (wakeable && woken_.load()); });
    std::lock_guard<std::mutex> lock(mu_);
    if (!inbox_.empty()) {
      if (wakeable) woken_ = false;
      Message message = std::move(inbox_.front());
      inbox_.pop_front();
      inbox_size_.store(inbox_.size());
      if (auto q = queued_by_sender_.find(message.from); q != queued_by_sender_.end() && --q->second == 0) {
        queued_by_sender_.erase(q);
      }
      return message;
    }
    if (stop_.load()) return ShutDownError("recv");
    if (wakeable && woken_.load()) {
      woken_ = false;
      return absl::AbortedError("fabric: recv: woken");
    }
    // (Another receiver may have taken the message that ended the wait.)
    if (!got || absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("fabric: recv: no message within ", absl::FormatDuration(timeout)));
    }
  }
}

void EndpointImpl::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    woken_ = true;
    // A caller leading in fi_cq_sread sees it now, not after its read.
    if (leader_ && waitable_) fi_cq_signal(core_->cq);
  }
  cv_.notify_all();
}

void EndpointImpl::Shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stop_.exchange(true)) return;
  }
  cv_.notify_all();
  progress_cv_.notify_all();
  if (core_->cq != nullptr && waitable_) fi_cq_signal(core_->cq);
  if (progress_.joinable()) progress_.join();
  // A caller leading the queue leaves within one short read; after that
  // nothing serves the endpoint any more (peers' messages go unanswered).
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !leader_; });
}

namespace {

// Times OpenEndpoint binds when its port keeps being taken (fabric.h).
constexpr int kOpenAttempts = 16;

// A few milliseconds, growing with `attempt` and jittered, so endpoints that
// raced for one port do not bind in step again.
void PauseBeforeReopen(int attempt) {
  uint8_t jitter = 0;
  if (getrandom(&jitter, sizeof(jitter), 0) != sizeof(jitter)) jitter = 0;
  std::this_thread::sleep_for(std::chrono::microseconds(500 * attempt + 20 * jitter));
}

class FabricImpl : public Fabric {
 public:
  FabricImpl(const FabricConfig& config, std::shared_ptr<DomainCore> domain, std::string provider)
      : config_(config), domain_(std::move(domain)), provider_(std::move(provider)) {
    mode_ = DecodeMrMode(domain_->info->domain_attr->mr_mode);
    ordered_writes_ = (domain_->info->tx_attr->msg_order & kWriteOrder) == kWriteOrder;
    reports_sender_ = (domain_->info->caps & FI_SOURCE) != 0;
  }
  const std::string& provider() const override { return provider_; }
  MrMode mr_mode() const override { return mode_; }
  absl::StatusOr<std::unique_ptr<Endpoint>> OpenEndpoint() override {
    // An ephemeral port may be taken between the provider's bind and its
    // listen by another endpoint opening at that moment (tcp binds with
    // SO_REUSEADDR, so both binds succeed and the second listen fails); the
    // next attempt skips the port now listening. A fixed port is not retried.
    const int attempts = config_.service.empty() ? kOpenAttempts : 1;
    absl::Status last;
    for (int attempt = 1; attempt <= attempts; ++attempt) {
      if (attempt > 1) PauseBeforeReopen(attempt);
      auto ep = std::make_unique<EndpointImpl>(config_, domain_, provider_, mode_, ordered_writes_, reports_sender_);
      last = ep->Init();
      if (last.ok()) {
        ep->set_open_attempts(attempt);
        return std::unique_ptr<Endpoint>(std::move(ep));
      }
      if (!ep->bind_raced()) return last;
    }
    return absl::Status(last.code(), absl::StrCat(last.message(), " (its port was taken by another endpoint ",
                                                  "opening at the same moment, ", attempts, " times)"));
  }

 private:
  const FabricConfig config_;
  std::shared_ptr<DomainCore> domain_;
  const std::string provider_;
  MrMode mode_;
  bool ordered_writes_ = false;
  bool reports_sender_ = false;
};

// ofi_rxm sizes its eager (bounce) buffers and the receives it keeps posted
// per process, from the environment, when the provider first initialises.
// Its defaults (16 KiB buffers, thousands posted) cost tens of MB and most
// of an endpoint's opening time; rpci's messages are at most max_message
// bytes (bulk data moves by RMA, which these buffers do not carry). Its
// transmit and receive contexts (2048 entries each) hold far more than an
// endpoint here has in flight (recv_depth receives, RMA batches of tens of
// operations; a full queue is retried, see PostWithRetry): 256 each halves
// what an endpoint costs (the agent opens one per session: bench:session
// agent_rss_mb_per_session 5.8 -> 3.2 MB). Sized for the first config
// opened; an operator's own setting wins.
constexpr size_t kRxmContextSize = 256;
// rxm's eager (bounce) buffers hold max_message bytes of payload: libfabric
// 1.17 adds its own packet header to FI_OFI_RXM_BUFFER_SIZE
// (rxm_packet_size = sizeof(struct rxm_pkt) + buffer size) and sends eagerly
// up to the buffer size, so a message of max_message bytes still goes
// eagerly. Every rxm pool (receive buffers when an endpoint's first
// connection posts its receives, transmit buffers at its first transfer) is
// grown 1024 entries at a time of this size plus ~500 bytes of rxm's own, and
// page-faulted as it is initialised: with 256 bytes of header room on top
// (before) each grow touched 461 pages (1.8 MB), 1-1.5 ms of a process's
// first attach; without, 397 (docs/benchmarks.md, "Attach: ofi_rxm's pools").
// Sessions carry frames of at most 1080 bytes.
void SizeRxmBuffers(const FabricConfig& config) {
  static std::once_flag once;
  std::call_once(once, [&config] {
    const std::string buffer = std::to_string(config.max_message);
    setenv("FI_OFI_RXM_BUFFER_SIZE", buffer.c_str(), /*overwrite=*/0);
    setenv("FI_OFI_RXM_MSG_RX_SIZE", std::to_string(kRxmPostedReceives).c_str(), 0);
    setenv("FI_OFI_RXM_TX_SIZE", std::to_string(kRxmContextSize).c_str(), 0);
    setenv("FI_OFI_RXM_RX_SIZE", std::to_string(kRxmContextSize).c_str(), 0);
    // rxm handles connection requests only every CM_PROGRESS_INTERVAL us of
    // completion-queue reads (default 10 000): a session's attach (the
    // agent's first RMA to the new client) waited ~10 ms for it.
    setenv("FI_OFI_RXM_CM_PROGRESS_INTERVAL", std::to_string(kRxmCmProgressUs).c_str(), 0);
    // rxm sizes one completion queue per endpoint for all its connections
    // from the universe (FabricConfig::universe_size). libfabric's default
    // made it a 12 MiB calloc per endpoint with tcp, cleared page by page
    // whenever glibc served it from reused heap: ~5 ms of the agent's every
    // session fabric and of the client's endpoint opened ahead
    // (docs/benchmarks.md, "Attach: a session endpoint's 12 MiB"). A
    // session endpoint has one peer.
    setenv("FI_UNIVERSE_SIZE", absl::StrCat(config.universe_size).c_str(), /*overwrite=*/0);
  });
}

// libfabric settings verbs;ofi_rxm needs, applied before the process's first
// fi_getinfo (libfabric reads them once, when its providers initialize):
// FI_MR_CACHE_MAX_COUNT=0, always: libfabric's registration cache keeps a
// closed region registered with the NIC for reuse, so a revoked key kept
// working and the same buffer registered again got the same key
// (//tests/vm:verbs_keys_test); regions must be unreachable once revoked.
// (FI_UNIVERSE_SIZE, which verbs also needs, is set for every provider:
// SizeRxmBuffers.)
void ApplyVerbsEnvironment(const std::string& provider) {
  static std::once_flag once;
  if (provider != kVerbs) return;
  std::call_once(once, [] { setenv("FI_MR_CACHE_MAX_COUNT", "0", /*overwrite=*/1); });
}

// libfabric's answer for one configuration (fi_getinfo: 0.9 ms of CPU per
// call with tcp;ofi_rxm, perf at load 7, most of what the agent's every
// session fabric cost besides its endpoint) is asked once per process and
// duplicated for later opens: the same hints get the same answer, and each
// open still makes its own fabric and domain from it. An open that fails
// with the remembered answer drops it, and the next asks again.
std::mutex& ProviderAnswersMu() {
  static auto* mu = new std::mutex;
  return *mu;
}
std::unordered_map<std::string, fi_info*>& ProviderAnswers() {
  static auto* answers = new std::unordered_map<std::string, fi_info*>;
  return *answers;
}
std::atomic<uint64_t> provider_queries{0};

std::string AnswerKey(const std::string& provider, const FabricConfig& config) {
  return absl::StrCat(provider, "|", config.node, "|", config.service);
}

// fi_getinfo with the hints rpci needs, into `*info`; its return.
int AskProvider(const std::string& provider, const FabricConfig& config, fi_info** info) {
  provider_queries.fetch_add(1);
  fi_info* hints = fi_allocinfo();
  if (hints == nullptr) return -FI_ENOMEM;
  hints->ep_attr->type = FI_EP_RDM;
  hints->mode = FI_CONTEXT | FI_CONTEXT2;
  // Every registration requirement we know how to honour.
  hints->domain_attr->mr_mode =
      FI_MR_LOCAL | FI_MR_VIRT_ADDR | FI_MR_ALLOCATED | FI_MR_PROV_KEY | FI_MR_ENDPOINT;
  hints->domain_attr->threading = FI_THREAD_SAFE;
  hints->tx_attr->op_flags = FI_DELIVERY_COMPLETE;
  hints->fabric_attr->prov_name = strdup(provider.c_str());  // fi_freeinfo frees it
  const bool shm = provider == kShm;
  const char* node = (!shm && !config.node.empty()) ? config.node.c_str() : nullptr;
  const char* service = (!shm && !config.service.empty()) ? config.service.c_str() : nullptr;
  // Requested orderings are requirements: ask for the write ordering
  // WriteAndSend can use, and do without it where the provider lacks it.
  // Senders' addresses (FI_SOURCE) too, where the provider has them.
  int rc = 0;
  std::optional<HiddenKernelSymbols> hidden;
  if (config.host_memory_only) hidden.emplace();
  for (uint64_t caps : {FI_MSG | FI_RMA | FI_SOURCE, FI_MSG | FI_RMA}) {
    hints->caps = caps;
    for (uint64_t order : {FI_ORDER_SAS | kWriteOrder, FI_ORDER_SAS}) {
      hints->tx_attr->msg_order = order;
      rc = fi_getinfo(FI_VERSION(1, 9), node, service, (node || service) ? FI_SOURCE : 0, hints, info);
      if (rc != -FI_ENODATA) break;
    }
    if (rc != -FI_ENODATA) break;
  }
  fi_freeinfo(hints);
  return rc;
}

// The remembered answer (a copy) or a new one, remembered.
int ProviderAnswer(const std::string& provider, const FabricConfig& config, fi_info** info, bool* remembered) {
  const std::string key = AnswerKey(provider, config);
  {
    std::lock_guard<std::mutex> lock(ProviderAnswersMu());
    auto it = ProviderAnswers().find(key);
    *remembered = it != ProviderAnswers().end();
    if (*remembered) {
      *info = fi_dupinfo(it->second);
      return *info != nullptr ? 0 : -FI_ENOMEM;
    }
  }
  const int rc = AskProvider(provider, config, info);
  if (rc == 0 && *info != nullptr) {
    fi_info* copy = fi_dupinfo(*info);
    std::lock_guard<std::mutex> lock(ProviderAnswersMu());
    if (copy != nullptr && !ProviderAnswers().emplace(key, copy).second) fi_freeinfo(copy);
  }
  return rc;
}

void ForgetProviderAnswer(const std::string& provider, const FabricConfig& config) {
  std::lock_guard<std::mutex> lock(ProviderAnswersMu());
  auto it = ProviderAnswers().find(AnswerKey(provider, config));
  if (it == ProviderAnswers().end()) return;
  fi_freeinfo(it->second);
  ProviderAnswers().erase(it);
}

// Fabric and domain from `provider`'s answer for `config`.
absl::StatusOr<std::shared_ptr<DomainCore>> OpenDomain(const std::string& provider, const FabricConfig& config) {
  auto domain = std::make_shared<DomainCore>();
  bool remembered = false;
  int rc = ProviderAnswer(provider, config, &domain->info, &remembered);
  if (rc != 0 || domain->info == nullptr) {
    absl::Status s = FabricError("fi_getinfo", rc != 0 ? rc : FI_ENODATA);
    const bool named = provider != kShm && !config.node.empty();
    return absl::NotFoundError(absl::StrCat("fabric: provider ", provider, " unavailable",
                                            named ? absl::StrCat(" on ", config.node) : "", ": ", s.message()));
  }
  if ((rc = fi_fabric(domain->info->fabric_attr, &domain->fabric, nullptr)) == 0) {
    rc = fi_domain(domain->fabric, domain->info, &domain->domain, nullptr);
    if (rc != 0 && !remembered) return FabricError("fi_domain", rc);
  } else if (!remembered) {
    return FabricError("fi_fabric", rc);
  }
  if (rc != 0) {  // the remembered answer no longer opens: ask again
    ForgetProviderAnswer(provider, config);
    return OpenDomain(provider, config);
  }
  return domain;
}

}  // namespace

uint64_t ProviderQueriesForTesting() { return provider_queries.load(); }

void SpoilRememberedProviderAnswersForTesting() {
  std::lock_guard<std::mutex> lock(ProviderAnswersMu());
  for (auto& [key, info] : ProviderAnswers()) {
    free(info->fabric_attr->prov_name);  // fi_freeinfo frees it so
    info->fabric_attr->prov_name = strdup("rpci-no-such-provider");
  }
}

namespace {

void PrepareEnvironmentFor(const std::string& provider, const FabricConfig& config) {
  SizeRxmBuffers(config);
  ApplyVerbsEnvironment(provider);
}

}  // namespace

absl::Status PrepareEnvironment(const FabricConfig& config, RdmaProbe* probe) {
  absl::StatusOr<std::string> provider = ResolveProvider(config.provider, probe);
  if (!provider.ok()) return provider.status();
  PrepareEnvironmentFor(*provider, config);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Fabric>> Fabric::Open(const FabricConfig& config, RdmaProbe* probe) {
  absl::StatusOr<std::string> provider = ResolveProvider(config.provider, probe);
  if (!provider.ok()) return provider.status();
  if (config.max_message == 0 || config.recv_depth == 0 || config.op_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("fabric: max_message, recv_depth and op_timeout must be positive");
  }
  PrepareEnvironmentFor(*provider, config);
  absl::StatusOr<std::shared_ptr<DomainCore>> domain = OpenDomain(*provider, config);
  if (!domain.ok()) return domain.status();
  FabricConfig effective = config;
  if (effective.connect_timeout <= absl::ZeroDuration() && *provider == kVerbs) {
    effective.connect_timeout = absl::Seconds(15);  // rdma_cm connection setup (fabric.h)
  }
  return std::unique_ptr<Fabric>(new FabricImpl(effective, std::move(*domain), *provider));
}

}  // namespace rpci::fabric
