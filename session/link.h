#ifndef RPCI_SESSION_LINK_H_
#define RPCI_SESSION_LINK_H_

// The session data path on libfabric: one RDM endpoint (FI_MSG + FI_RMA) with
// a progress thread, registered memory regions, blocking one-sided
// write/read and small-frame send/receive, each with a timeout. Requests
// message ordering send-after-write (FI_ORDER_SAW) and write-after-write, so
// a frame sent after RMA writes to the same peer arrives after their data.
//
// NOTE: this is the session's own narrow use of libfabric. When the shared
// fabric layer (common/fabric) lands, Link should be re-expressed on it.

#include <rdma/fabric.h>
#include <rdma/fi_domain.h>

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace rpci::session {

class Link;

// A registered buffer; deregistered (remote key revoked) on destruction.
class MemoryRegion {
 public:
  ~MemoryRegion();
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  uint64_t key() const { return key_; }
  // The address the peer names in RMA to reach byte 0 of this region.
  uint64_t remote_address() const { return remote_address_; }
  void* desc() const { return desc_; }

 private:
  friend class Link;
  MemoryRegion() = default;
  fid_mr* mr_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint64_t key_ = 0;
  uint64_t remote_address_ = 0;
  void* desc_ = nullptr;
};

// One segment of a batched RMA: `len` bytes at `local_offset` of `local`
// to/from the peer's `remote_address` under `key`.
struct RmaSegment {
  const MemoryRegion* local = nullptr;
  size_t local_offset = 0;
  size_t len = 0;
  uint64_t remote_address = 0;
  uint64_t key = 0;
};

struct LinkOptions {
  std::string provider = "tcp;ofi_rxm";
  // Local address to bind (the interface the peer reaches us on).
  std::string node = "127.0.0.1";
  // An operation that has not completed by then fails with UNAVAILABLE and
  // the link should be considered broken.
  absl::Duration op_timeout = absl::Seconds(2);
};

using PeerAddr = uint64_t;

// The FI_MR_* bits a reported domain mr_mode stands for (the legacy
// FI_MR_BASIC / FI_MR_SCALABLE values expanded).
uint64_t EffectiveMrMode(uint64_t reported);

class Link {
 public:
  // Opens fabric, domain, endpoint, CQ and AV and starts the progress thread.
  static absl::StatusOr<std::unique_ptr<Link>> Create(const LinkOptions& options);
  ~Link();
  Link(const Link&) = delete;
  Link& operator=(const Link&) = delete;

  // This endpoint's fabric address (opaque bytes for the peer's AddPeer).
  const std::string& address() const { return address_; }
  const std::string& provider() const { return provider_; }

  // Inserts a peer's address. Thread-safe.
  absl::StatusOr<PeerAddr> AddPeer(const std::string& address);
  void RemovePeer(PeerAddr peer);

  // Registers `size` bytes at `data` (caller keeps them alive longer than the
  // region). remote_access: FI_REMOTE_READ and/or FI_REMOTE_WRITE. The key
  // is random (or provider-chosen) so a peer cannot guess it.
  absl::StatusOr<std::unique_ptr<MemoryRegion>> Register(void* data, size_t size, uint64_t remote_access);

  // Posts every segment and waits for all of them. Thread-safe.
  absl::Status Write(PeerAddr peer, const std::vector<RmaSegment>& segments);
  absl::Status Read(PeerAddr peer, const std::vector<RmaSegment>& segments);
  // Sends one small message (<= kMaxMessage bytes) and waits for its completion.
  absl::Status Send(PeerAddr peer, const void* data, size_t len);
  // RMA-writes `segments`, then sends the message; the peer sees the data
  // before the message. When the provider orders writes and send-after-write
  // (ordered_writes()) all are posted at once and waited for together (one
  // round trip); otherwise the send waits for the writes.
  absl::Status WriteAndSend(PeerAddr peer, const std::vector<RmaSegment>& segments, const void* data, size_t len);
  // Whether RMA writes to one peer are placed in the order posted (WAW) and
  // a message sent after them arrives after their data (SAW).
  bool ordered_writes() const { return ordered_writes_; }
  // Next received message, or DEADLINE_EXCEEDED after `timeout`,
  // CANCELLED once Shutdown has been called.
  absl::StatusOr<std::string> Receive(absl::Duration timeout);

  // Stops the progress thread and wakes every waiter; operations fail after.
  void Shutdown();

  // Operations that failed or timed out since creation.
  uint64_t failed_ops() const;

  static constexpr size_t kMaxMessage = 256;

 private:
  struct Op;
  Link() = default;
  absl::Status Init(const LinkOptions& options);
  absl::Status Rma(PeerAddr peer, const std::vector<RmaSegment>& segments, bool write);
  // Post without waiting; the ops are waited for with WaitOps.
  absl::Status PostRma(PeerAddr peer, const std::vector<RmaSegment>& segments, bool write,
                       std::vector<std::shared_ptr<Op>>* ops);
  absl::Status PostSend(PeerAddr peer, const void* data, size_t len, std::vector<std::shared_ptr<Op>>* ops);
  // After a failed post: OK to retry (EAGAIN before `deadline`, after a
  // pause), else the error; the op is dropped from the in-flight set.
  absl::Status Backoff(ssize_t rc, absl::Time deadline, Op* op, const char* what);
  absl::Status WaitOps(const std::vector<std::shared_ptr<Op>>& ops, const char* what);
  absl::Status PostRecv(size_t slot);
  void ProgressLoop();

  absl::Duration op_timeout_;
  std::string provider_;
  std::string address_;
  bool virt_addr_ = false;
  bool prov_key_ = false;
  bool mr_endpoint_ = false;
  bool mr_local_ = false;
  bool ordered_writes_ = false;
  fi_info* info_ = nullptr;
  fid_fabric* fabric_ = nullptr;
  fid_domain* domain_ = nullptr;
  fid_cq* cq_ = nullptr;
  fid_av* av_ = nullptr;
  fid_ep* ep_ = nullptr;

  // Receive buffers and a registration for them and for send staging.
  static constexpr size_t kRecvSlots = 64;
  std::vector<uint8_t> recv_buf_;
  std::unique_ptr<MemoryRegion> recv_mr_;
  std::vector<std::shared_ptr<Op>> recv_ops_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> inbox_;
  std::map<Op*, std::shared_ptr<Op>> inflight_;
  bool stopping_ = false;
  uint64_t failed_ops_ = 0;
  std::thread progress_;
};

}  // namespace rpci::session

#endif  // RPCI_SESSION_LINK_H_
