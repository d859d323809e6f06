#ifndef RPCI_CLIENT_SESSION_CLIENT_H_
#define RPCI_CLIENT_SESSION_CLIENT_H_

// The workload's side of a memory-mirroring session's data path (librpci
// attaches it with the ticket the plugin reserved through ControlClient).
// docs/sessions.md is the protocol.

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/fabric/fabric.h"
#include "client/control_client.h"
#include "grpcpp/grpcpp.h"
#include "session/frame_auth.h"
#include "session/sequencing.h"
#include "session/session_key.h"
#include "session/wire.h"

namespace rpci::client {

struct ClientOptions {
  // The data path's provider (the agent's), bind address and op timeout.
  fabric::FabricConfig fabric = fabric::LoopbackConfig();
  std::shared_ptr<grpc::ChannelCredentials> creds;  // default: insecure (loopback tests)
  uint32_t completion_ring_capacity = 256;
  uint32_t mmio_ring_capacity = 1024;  // must equal the agent's
  absl::Duration heartbeat = absl::Milliseconds(500);
  // Reconnect backoff, and how long to keep trying before the session is
  // declared gone (then every call fails with FAILED_PRECONDITION).
  absl::Duration backoff_initial = absl::Milliseconds(20);
  absl::Duration backoff_max = absl::Seconds(1);
  absl::Duration grace = absl::Seconds(10);
  // After an attach, open the process's next session endpoint ahead (on the
  // heartbeat thread), so the next attach or re-attach with this fabric
  // configuration takes it instead of opening one on its path.
  bool endpoint_ahead = true;
  // When the challenge's answer names the agent's endpoint for this attach
  // (a session's first attach), dial it before the attach RPC, so that the
  // agent's first push finds the connection this side opened (tcp;ofi_rxm
  // only; see SessionClient::DialAhead).
  bool dial_ahead = true;
};

// Where an attach's time went, as the client measured it (the steps of
// SessionClient::Attach, in order; bench:session reports them).
struct AttachSteps {
  // Creating the agent's gRPC channel (gRPC's own start in a fresh process)
  // and starting its connection.
  absl::Duration channel;
  // The process's fabric: libfabric's provider initialisation, paid by the
  // process's first attach only (the gRPC channel connects meanwhile).
  absl::Duration fabric;
  // Learning the session's shape from the agent (a ticket without it: a
  // workload's attach through librpci; one challenge and one OpenSession).
  absl::Duration shape;
  bool shape_asked = false;  // the ticket had no shape: `shape` asked the agent for it
  // This attach's endpoint and registrations, as the attach waited for them
  // (with fabric_overlapped, the wait for the other thread).
  absl::Duration endpoint;
  bool endpoint_ahead = false;  // the endpoint was opened ahead (ClientOptions::endpoint_ahead)
  // A configuration's first attach in the process: `fabric` and the
  // endpoint's opening (`endpoint_open`) ran on a thread of their own,
  // alongside `channel`, `shape` and the challenge.
  bool fabric_overlapped = false;
  absl::Duration endpoint_open;
  // Waiting for the Challenge RPC, sent as the endpoint step began (its
  // channel's setup if still connecting), and the dial (`dialled`).
  absl::Duration challenge;
  // The challenge's answer named the agent's endpoint and this client dialled
  // it before the attach RPC; that endpoint was the one the attach answered.
  bool dialled = false;
  // OpenSession: the agent waits for the session's endpoint, registers this
  // attach's regions and pushes the mirrors (its log line names each).
  absl::Duration open_rpc;
  // Taking the anchor record: from this client's anchor region, where the
  // agent wrote it with the attach's mirrors (`anchor_pushed`), else by an
  // RMA read of the agent's (a resuming attach, or an agent that does not
  // push it).
  absl::Duration anchor;
  bool anchor_pushed = false;
  absl::Duration first_frame;  // replay and the first frame of the attach
  absl::Duration total;
};

struct ClientStats {
  uint64_t reconnects = 0;
  uint64_t replayed_writes = 0;
  uint64_t refused = 0;         // writes/requests the agent refused
  uint64_t dropped_frames = 0;  // frames that failed their MAC, replayed or malformed
  uint64_t resent_kicks = 0;    // kicks sent again after op_timeout without an ack
  AttachSteps last_attach;      // the last attach or re-attach
};

// Zero-filled memory from the kernel (an anonymous mapping): a page costs
// nothing until touched, so a session's DMA space (often many MiB) does not
// cost its size in memset and page faults on every attach.
class ZeroPages {
 public:
  ZeroPages() = default;
  ~ZeroPages();
  ZeroPages(const ZeroPages&) = delete;
  ZeroPages& operator=(const ZeroPages&) = delete;
  // RESOURCE_EXHAUSTED when the mapping fails. Drops earlier pages.
  absl::Status Allocate(size_t size);
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

class ProcessFabric;  // the process's fabric for one configuration (session_client.cc)

// An attached session. Thread-safe (calls are serialized).
class SessionClient {
 public:
  static absl::StatusOr<std::unique_ptr<SessionClient>> Attach(const SessionTicket& ticket,
                                                               const ClientOptions& options);
  ~SessionClient();
  SessionClient(const SessionClient&) = delete;
  SessionClient& operator=(const SessionClient&) = delete;

  std::vector<BarMirror> bars() const;
  uint64_t dma_size() const { return dma_.size(); }
  // Compute-side DMA space (device address = offset into it).
  uint8_t* dma() { return dma_.data(); }
  // Read-only view of a BAR mirror, valid for the client's lifetime. Pushes
  // land in it at any time; ReadMirror gives a copy that never tears.
  absl::StatusOr<const uint8_t*> mirror(uint16_t bar) const;
  // Copies mirror bytes [offset, offset + out.size()) of `bar` as one
  // consistent snapshot: never part of one push and part of another (a
  // seqlock over the agent's pushes and the patches events carry). Does not
  // wait for calls in progress on other threads. UNAVAILABLE if a push stays
  // half-landed for a second (the link broke mid-push; the re-attach pushes
  // again).
  absl::Status ReadMirror(uint16_t bar, uint64_t offset, absl::Span<uint8_t> out) const;

  // Posts a register write; it reaches the device after every write posted
  // before it. OUT_OF_RANGE if outside the BAR.
  absl::Status Write(uint16_t bar, uint64_t offset, uint8_t width, uint64_t value);
  // Sends posted writes to the agent without waiting for them to be applied.
  absl::Status Flush();
  // Flush and wait until every posted write is applied.
  absl::Status Sync(absl::Duration timeout);
  // Reads from the mirror (value as of the last completion or Refresh).
  absl::StatusOr<uint64_t> Read(uint16_t bar, uint64_t offset, uint8_t width);
  // Applies posted writes and pulls the device's BAR state into the mirror.
  absl::Status Refresh(absl::Duration timeout);

  // Copies DMA [offset, offset+len) to the device side (before the doorbell
  // that refers to it).
  absl::Status FlushDma(uint64_t offset, uint64_t len);
  // Pulls DMA [offset, offset+len) from the device side now.
  absl::Status InvalidateDma(uint64_t offset, uint64_t len);
  // Declares [offset, offset+len) device-written: the agent pushes it into
  // this DMA space before each completion. Unmap stops that.
  absl::Status MapFromDevice(uint64_t offset, uint64_t len);
  absl::Status Unmap(uint64_t offset);

  // Next completion, or DEADLINE_EXCEEDED.
  absl::StatusOr<session::Completion> WaitCompletion(absl::Duration timeout);

  // Detaches from the session on the agent (which keeps it for the pod's
  // allocation: another process with the ticket may attach); this client is
  // unusable afterwards.
  absl::Status Close();

  ClientStats stats() const;
  uint64_t acked_seq() const;
  // Sequence number of the last write posted (acked_seq() reaches it once
  // every posted write is applied).
  uint64_t posted_seq() const;
  session::SessionId session_id() const { return ticket_.session_id; }
  // The agent's regions of the current attach, as its anchor record names them.
  std::vector<session::RegionDesc> agent_regions() const;
  // Test hook: drops the current fabric endpoint as a network failure would.
  void BreakLinkForTesting();
  // Test hook: the bytes of the last control frame sent (as a wiretap sees them).
  std::string LastFrameForTesting() const;

 private:
  explicit SessionClient(SessionTicket ticket, ClientOptions options);
  struct FabricSide;
  // The process's fabric for `config` and an endpoint on it, opened on a
  // thread of its own (inline when no thread can be started).
  static std::future<FabricSide> OpenFabricSide(const fabric::FabricConfig& config, bool endpoint_ahead);
  // Fresh endpoint + attach; mu_ held. `first`: the fabric side being opened
  // for this configuration's first attach in the process (null: fabric_'s).
  absl::Status Connect(std::future<FabricSide>* first = nullptr);
  // The session's shape (BARs, DMA size) from the agent; allocates mirrors.
  absl::Status LearnShape();
  // Shuts the endpoint down and drops its registrations (their keys die).
  void DropRegions();
  // A fresh endpoint with this side's regions registered, named in `req`.
  absl::Status RegisterRegions(rpci::v1::OpenSessionRequest* req, std::future<FabricSide>* first);
  // endpoint_ = the first attach's endpoint (waiting for `first`), the one
  // opened ahead or a new one.
  absl::Status TakeEndpoint(std::future<FabricSide>* first);
  // Reads the agent's anchor record (its regions); returns the highest write
  // the agent applied (the answer's applied_sequence).
  absl::StatusOr<uint64_t> ReadAnchor(const rpci::v1::OpenSessionResponse& resp);
  // Dials the agent's endpoint the challenge named (ClientOptions::dial_ahead):
  // the peer dialled, or none (no address, or the dial failed).
  std::optional<fabric::PeerId> DialAhead(const std::string& agent_address);
  // peer_ for the endpoint the attach answered: the dialled peer when it is
  // the one dialled, else a new one (the dialled one is removed).
  absl::Status SetPeer(const std::string& agent_address, const std::string& dialled_address,
                       std::optional<fabric::PeerId> dialled);
  absl::Status ReconnectLocked();           // backoff loop; mu_ held
  absl::Status EnsureLiveLocked();
  std::string FrameLocked(session::FrameType type, uint64_t arg0, uint64_t arg1);
  absl::Status SendFrameLocked(session::FrameType type, uint64_t arg0, uint64_t arg1);
  absl::Status PushWritesLocked(const std::vector<session::MmioWrite>& writes);
  // Kick with the entries in its payload: one message, no RMA.
  absl::Status KickInlineLocked(const std::vector<session::MmioWrite>& writes);
  // An event's inline completions and mirror patches; false on entries that
  // do not continue the ring or patches outside the mirror.
  bool ApplyEventPayloadLocked(const std::string& payload);
  // Highest completion delivered: the ring's tail word or an inline one.
  uint64_t CompletionTailLocked() const;
  bool CopyMirror(size_t index, uint64_t offset, size_t len, uint8_t* out) const;
  absl::Status FlushLocked();
  // Most writes one flush step pushes: half the agent's ring.
  size_t FlushChunk() const { return std::max<size_t>(1, options_.mmio_ring_capacity / 2); }
  // Receives one frame and applies it; DEADLINE_EXCEEDED if none came.
  absl::Status PumpLocked(absl::Duration timeout);
  template <typename Pred>
  absl::Status WaitLocked(absl::Duration timeout, Pred done);
  // An RMA read of the agent's ring header: UNAVAILABLE when the link is gone.
  absl::Status ProbeLinkLocked();
  // ProbeLinkLocked when nothing came from the agent for an op timeout.
  absl::Status ProbeIfSilentLocked();
  // Sends the pushed but unacknowledged writes again in a new kick once the
  // last kick has gone op_timeout without an ack.
  absl::Status ResendIfUnackedLocked();
  void HeartbeatLoop();
  absl::Status WithReconnect(const std::function<absl::Status()>& op);

  SessionTicket ticket_;
  ClientOptions options_;
  ControlClient control_;
  mutable std::mutex mu_;
  std::shared_ptr<ProcessFabric> fabric_;  // shared by the process's sessions
  std::unique_ptr<fabric::Endpoint> endpoint_;
  fabric::PeerId peer_ = 0;
  std::optional<session::FrameChannel> frames_;  // keyed by the current attach
  std::string last_frame_;
  std::vector<session::RegionDesc> agent_;
  std::vector<std::vector<uint8_t>> mirrors_;
  ZeroPages dma_;
  std::vector<uint8_t> comp_, ring_stage_, anchor_;
  std::vector<std::unique_ptr<fabric::MemoryRegion>> mirror_mr_;
  std::unique_ptr<fabric::MemoryRegion> dma_mr_, comp_mr_, stage_mr_, anchor_mr_;
  session::WriteLog log_;
  uint64_t pushed_ = 0;  // highest seq written to the agent's ring
  absl::Time pushed_at_;  // when the last kick was sent
  uint64_t consumed_ = 0;
  uint64_t inline_tail_ = 0;  // highest completion an event carried inline
  absl::Time last_heard_;     // the last authenticated frame from the agent (or attach)
  // Seqlock word of the patches this client applies itself (odd while one
  // is being copied in); the agent's pushes have their own in the ring.
  std::atomic<uint64_t> local_gen_{0};
  uint64_t refresh_sent_ = 0, refresh_done_ = 0;
  std::optional<absl::Status> agent_error_;
  bool closed_ = false;
  absl::Status dead_;
  ClientStats stats_;
  std::map<uint64_t, uint64_t> from_device_;
  bool stop_heartbeat_ = false;
  bool open_ahead_ = false;  // the heartbeat thread opens the next endpoint ahead
  std::condition_variable hb_cv_;
  std::thread heartbeat_;
};

}  // namespace rpci::client

#endif  // RPCI_CLIENT_SESSION_CLIENT_H_
