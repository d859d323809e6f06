#ifndef RPCI_AGENT_SESSION_SESSION_SERVER_H_
#define RPCI_AGENT_SESSION_SESSION_SERVER_H_

// The agent's side of memory-mirroring sessions: the SessionControl gRPC
// service (open, attach/resume, close, status) and the data path that applies
// the MMIO write ring to the device in order, pushes device changes (BAR
// snapshot, from-device DMA mappings) into the compute mirror and then
// delivers completions. docs/sessions.md is the protocol.

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/session/session_device.h"
#include "agent/session/throttle.h"
#include "common/clock.h"
#include "common/fabric/fabric.h"
#include "common/log.h"
#include "common/metrics.h"
#include "proto/rpci/v1/controller.pb.h"
#include "proto/rpci/v1/session.grpc.pb.h"
#include "session/frame_auth.h"
#include "session/session_id.h"
#include "session/session_key.h"
#include "session/wire.h"

namespace rpci::agent {

// A grant the controller issued: who may open a session on which device.
struct Grant {
  std::string grant_id;
  std::string device_id;
  std::string compute_node;
  std::string token;
  absl::Time expires = absl::InfiniteFuture();
};

// Live grants as the agent knows them (fed from AgentRegistry.WatchGrants).
// Thread-safe.
class GrantTable {
 public:
  void Upsert(const Grant& grant);
  void Revoke(const std::string& grant_id);
  // The grant if it exists, is unexpired at `now` and `token` matches (in
  // constant time); PERMISSION_DENIED otherwise, without saying which.
  absl::StatusOr<Grant> Check(const std::string& grant_id, const std::string& token, absl::Time now) const;
  // The grant exists and is unexpired at `now`.
  bool Live(const std::string& grant_id, absl::Time now) const;
  // The controller's full set of live grants has arrived (the first message
  // of a grant watch): from then on a grant missing here has ended, even one
  // this process never saw (a restarted agent's recovered sessions').
  void MarkFullSetReceived();
  bool FullSetReceived() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, Grant> grants_;
  bool full_set_received_ = false;
};

// A client-described region from OpenSession, checked: INVALID_ARGUMENT for a
// kind or index outside the wire format's range.
absl::StatusOr<session::RegionDesc> RegionFromProto(const rpci::v1::Region& region);

struct SessionServerOptions {
  // The data path's provider, bind address and operation timeout. Every
  // session gets its own fabric domain and endpoint on an ephemeral port
  // (`service` is ignored).
  fabric::FabricConfig fabric = fabric::LoopbackConfig();
  // Where the checkpoint and per-session sequence files live; empty = no
  // recovery across restarts.
  std::string state_dir;
  // A session whose client has sent nothing (frames, heartbeats) for this
  // long is torn down.
  absl::Duration grace = absl::Seconds(10);
  // A session opened by the plugin but never attached by a workload.
  absl::Duration attach_timeout = absl::Minutes(10);
  // Bytes of each BAR mirrored to the compute side.
  uint64_t max_mirror_bytes = 1 << 20;
  uint32_t mmio_ring_capacity = 1024;
  // Caps on the DMA ranges one session declares device-written (each is
  // pushed to the client before every completion); beyond them a mapping is
  // refused with kError "over_limit" (RESOURCE_EXHAUSTED at the client).
  size_t max_mapped_ranges = 64;
  uint64_t max_mapped_bytes = uint64_t{64} << 20;
  // Reserving a session (OpenSession without a resume, the plugin's call)
  // requires a verified client certificate "plugin:<node>" whose node is the
  // request's compute_node: UNAUTHENTICATED without one, PERMISSION_DENIED
  // for another role or node. Set when SessionControl is served over TLS
  // (common/tls.h, ClientCertPolicy::kRequestAndVerifyIfPresent); attaching
  // and closing stay authorized by the session key alone.
  bool require_plugin_certificate = false;
  // A session that pushes more than this budget (mirrors, device-written DMA,
  // completions) is throttled while another session rings doorbells: its
  // worker runs nicer until it is under budget again or the other session
  // has gone quiet (agent/session/throttle.h).
  ThrottleOptions throttle;
  // A session whose fabric endpoint did not open (most often: no free port
  // in the agent's fabric port range) stays reserved and tries again when
  // its workload attaches, and on its own after `endpoint_retry`, doubling
  // up to `endpoint_retry_max` (agent/session/session_ports_test.cc).
  absl::Duration endpoint_retry = absl::Milliseconds(250);
  absl::Duration endpoint_retry_max = absl::Seconds(8);
  // One session fabric (its own domain and first endpoint) is kept open
  // ahead of the next reservation, which takes it instead of having its
  // worker open one while the workload attaches (~2-4 ms of CPU on the
  // attach's path, docs/benchmarks.md "Attach"); a thread opens the next
  // as the last is taken. It holds one port of the fabric port range while
  // it waits. (Off for a morning while verbs cut-wire failures correlated
  // with it; their cause was a frame reordering in common/fabric, since
  // fixed: docs/verbs.md, "Frames reordered under load".)
  bool spare_fabric = true;
  Clock* clock = Clock::Real();
  MetricsRegistry* metrics = nullptr;  // required
};

class SessionServer final : public rpci::v1::SessionControl::Service {
 public:
  // Checks the fabric provider, loads the checkpoint (sessions come back
  // dormant until their client resumes) and starts the reaper and interrupt
  // threads. `devices` maps device ids to devices that outlive the server.
  static absl::StatusOr<std::unique_ptr<SessionServer>> Create(SessionServerOptions options, GrantTable* grants,
                                                               std::map<std::string, SessionDevice*> devices);
  ~SessionServer() override;

  grpc::Status Challenge(grpc::ServerContext* ctx, const rpci::v1::ChallengeRequest* req,
                         rpci::v1::ChallengeResponse* resp) override;
  grpc::Status OpenSession(grpc::ServerContext* ctx, const rpci::v1::OpenSessionRequest* req,
                           rpci::v1::OpenSessionResponse* resp) override;
  grpc::Status CloseSession(grpc::ServerContext* ctx, const rpci::v1::CloseSessionRequest* req,
                            rpci::v1::CloseSessionResponse* resp) override;
  grpc::Status SessionStatus(grpc::ServerContext* ctx, const rpci::v1::SessionStatusRequest* req,
                             rpci::v1::SessionStatusResponse* resp) override;

  // Stops threads and tears every session down (keeping the checkpoint, so a
  // new server resumes them).
  void Stop();

  // OK when the device is clean: never used, or reset and its DMA space
  // zeroed after its last session (SessionDevice::Reset). UNAVAILABLE while
  // a teardown is scrubbing it; the Reset error when the scrub failed (then
  // OpenSession refuses it with FAILED_PRECONDITION). The agent reports this
  // to the controller as the device's health.
  absl::Status DeviceClean(const std::string& device_id) const;

  size_t live_sessions() const;
  // One report per live session (attached or not): its device, writes
  // applied and completions delivered, for the agent's heartbeat (the
  // controller shows them on the DeviceAttachment).
  std::vector<rpci::v1::SessionReport> Reports() const;
  // The fabric address of a live session's current endpoint (each session
  // has its own domain and endpoint; a re-attach gets a fresh endpoint).
  absl::StatusOr<std::string> fabric_address(session::SessionId id) const;
  // How that endpoint moves bulk: fabric::kYieldingPacing while the session
  // is throttled, else fabric::kFullSpeedPacing.
  absl::StatusOr<fabric::BulkPacing> bulk_pacing(session::SessionId id) const;
  // The endpoint address of the session fabric opened ahead of the next
  // reservation (SessionServerOptions::spare_fabric); NOT_FOUND while none
  // is ready.
  absl::StatusOr<std::string> spare_fabric_address() const;

 private:
  struct Session;
  // A session fabric opened ahead of its reservation.
  struct SpareFabric {
    std::unique_ptr<fabric::Fabric> fabric;
    std::unique_ptr<fabric::Endpoint> endpoint;
  };
  // The spare if one is ready; the spare thread then opens the next.
  std::optional<SpareFabric> TakeSpare();
  // Keeps a spare open until the server stops.
  void SpareLoop();
  explicit SessionServer(SessionServerOptions options, GrantTable* grants,
                         std::map<std::string, SessionDevice*> devices);
  absl::Status Start();
  // What a client sent to prove it holds a session's key.
  struct ProofRequest {
    const std::string& session_id;
    const std::string& nonce;
    const std::string& proof;
    session::ProofPurpose purpose;
    const std::string& client_address;
    const std::string& peer;  // for logs
  };
  // The live session if the proof answers one of its outstanding challenges
  // (which it spends); NOT_FOUND or UNAUTHENTICATED, counted and logged.
  absl::StatusOr<std::shared_ptr<Session>> Authenticate(const ProofRequest& p, session::Nonce* used);
  // OpenSession without a session: check the plugin and grant, make one.
  absl::Status Reserve(const grpc::ServerContext& ctx, const rpci::v1::OpenSessionRequest& req,
                       rpci::v1::OpenSessionResponse* resp);
  // A new session for the grant's device; or, when the device's session is
  // one this grant reserved from the same node and no client ever attached
  // (the holder lost the answer and retries), that session (*retried set).
  // A never-attached session whose grant has ended (revoked or expired) is
  // ended first. FAILED_PRECONDITION while anyone else holds the device.
  absl::StatusOr<std::shared_ptr<Session>> NewSession(const Grant& grant, const std::string& compute_node,
                                                      SessionDevice* device, bool* retried);
  // `held` is a reservation of this grant from this node, never attached
  // and not ending (mu_ held).
  static bool IsRetryOf(const Session& held, const Grant& grant, const std::string& compute_node);
  // Reserved, never attached, and its grant ended (revoked or expired): no
  // workload may attach it and no kubelet retry will come for it. A session
  // recovered from the checkpoint is judged so only once the grant table has
  // the controller's full set (until then its grant may just not be back).
  bool Orphaned(const Session& s, absl::Time now) const;
  // The BAR mirrors and DMA size a client must provide.
  void Describe(const Session& s, rpci::v1::OpenSessionResponse* resp) const;
  // The client's regions of an attach request (into `client`), each valid and
  // fitting the device; then the completion ring's capacity.
  absl::StatusOr<uint32_t> CheckClientRegions(const Session& s, const rpci::v1::OpenSessionRequest& req,
                                              std::vector<session::RegionDesc>* client) const;
  // How long an attach's own steps took (its log line says; bench:session
  // reports them).
  struct AttachTimes {
    absl::Duration register_regions;
    absl::Duration push;  // the mirrors, to a new client (a resuming one gets them later)
  };
  absl::Status Attach(Session& s, const rpci::v1::OpenSessionRequest& req, const session::Nonce& nonce,
                      rpci::v1::OpenSessionResponse* resp, AttachTimes* times);
  // Registers this attach's agent-side regions and writes the anchor record
  // naming them (s.local, anchor last).
  absl::Status RegisterRegions(Session& s);
  // The session's own fabric domain and a first endpoint (s.fabric,
  // s.endpoint), opened by its worker as it starts; attaches wait for it.
  absl::Status OpenSessionFabric(Session& s);
  // OpenSessionFabric until it opens: again when an attach asks (WaitFabric)
  // or after a pause (endpoint_retry, doubling up to endpoint_retry_max).
  // False when the session's worker is stopped first.
  bool OpenSessionFabricUntilOpen(Session& s);
  // A new endpoint in the session's domain for the next attach, replacing
  // one that served an attach already (mu and frames_mu taken inside).
  absl::Status FreshEndpoint(Session& s);
  void ReaperLoop();
  // The session's worker thread (WorkLoop) receives on the session's own
  // endpoint, checks each frame (HandleFrame: this session, its attached
  // peer, MAC and counter) and applies it (ProcessFrame, mu held).
  void HandleFrame(Session& s, const fabric::Endpoint& from, const fabric::Message& message);
  void StartWorker(Session& s);
  // Frames from the attached client that `ep` dropped (its queue for them
  // was full); 0 while nothing is attached.
  uint64_t ClientDrops(Session& s, const fabric::Endpoint& ep);
  void WorkLoop(Session& s);
  void ProcessFrame(Session& s, const session::Frame& frame);
  void MapFromDevice(Session& s, uint64_t offset, uint64_t len);
  void HandleKick(Session& s, uint64_t tail, uint64_t consumed);
  // A kick carrying its MMIO entries (no ring read).
  void HandleInlineKick(Session& s, const session::Frame& frame);
  // Applies one MMIO entry through the gate; false stops the batch.
  bool ApplyEntry(Session& s, const session::MmioWrite& w);
  // After a kick's writes: ring head, then the completions and the event.
  void KickDone(Session& s);
  // The event's payload when its completions fit one message: the
  // completions and the mirror's changed bytes inline, from-device DMA (and
  // changes too big to inline) by RMA in `segs`. False: use the ring
  // (UndeliveredSegments).
  bool InlineEvent(Session& s, std::vector<fabric::RmaOp>* segs, std::string* payload);
  // Diffs the BARs against the client's mirror (bar_buf): patches into
  // `event`, or an RMA of the changed span into `segs`.
  bool MirrorPatches(Session& s, size_t completions, session::EventPayload* event,
                     std::vector<fabric::RmaOp>* segs);
  // Puts the mirror's seqlock writes (odd, even) around segs[first..].
  absl::Status WrapMirrorPush(Session& s, std::vector<fabric::RmaOp>* segs, size_t first);
  // Spends `segs`' bytes from the session's budget (mu held); on its worker,
  // makes the thread nicer while the session is throttled (over budget while
  // another session asked for work, demand_), and back.
  void Budget(Session& s, const std::vector<fabric::RmaOp>& segs);
  void SetWorkerNice(Session& s, bool throttled);
  // One ordered batch, or one write after another without ordered writes.
  absl::Status WriteInOrder(Session& s, const std::vector<fabric::RmaOp>& segs);
  // Waits on the attached sessions' device interrupt fds and pushes their
  // completions as the devices raise them (no kick needed).
  void InterruptLoop();
  // TakeInterrupts, then the undelivered completions (mirrors first) and the
  // event frame to the client; with `always`, the frame also when nothing was
  // undelivered (a kick's answer). A failed push is retried by the worker.
  void PushCompletions(Session& s, bool always);
  // BAR snapshots (read from the device now) and from-device DMA ranges.
  // The BAR mirrors, then (`device_written`) the ranges the client mapped
  // from the device.
  absl::Status MirrorSegments(Session& s, std::vector<fabric::RmaOp>* segs, bool device_written = true);
  // `with_anchor`: the anchor record too, into the client's anchor region
  // (AnchorSegment), in the same batch.
  absl::Status PushMirrors(Session& s, bool device_written = true, bool with_anchor = false);
  // The anchor record, to the anchor region the client named in its attach
  // (writable and large enough), so that it need not read the agent's; none
  // when it named none (an older client reads it).
  void AnchorSegment(const Session& s, std::vector<fabric::RmaOp>* segs) const;
  // Moves raised interrupts into numbered completion entries while the
  // client's ring has room (the rest wait in the backlog).
  void TakeInterrupts(Session& s);
  // What to write before the event frame: mirrors, the entries
  // (delivered, completion_seq], the ring tail.
  absl::Status UndeliveredSegments(Session& s, std::vector<fabric::RmaOp>* segs);
  absl::Status TrySendFrame(Session& s, session::FrameType type, uint64_t arg0, uint64_t arg1);
  // TrySendFrame, a failure logged.
  void SendFrame(Session& s, session::FrameType type, uint64_t arg0, uint64_t arg1);
  // Stops the session's data path without waiting on its client: with
  // `notify`, an attached client is sent the close frame, waited for at most
  // kCloseNotice (session_server.cc); then the endpoint is shut down
  // (cancelling any operation still waiting on the client) and the worker
  // stopped. Called without s.mu (the worker may hold it, blocked on the
  // client).
  void EndDataPath(Session& s, bool notify);
  void Refuse(Session* s, session::ErrorCode code, uint64_t what);
  // The workload closed with detach: data path down, session kept.
  void Detach(Session& s);
  void Teardown(session::SessionId id, const std::string& reason, bool notify);
  void SaveCheckpoint();
  std::shared_ptr<Session> Find(session::SessionId id) const;
  // A live session's current endpoint; NOT_FOUND naming what is missing.
  absl::StatusOr<std::shared_ptr<fabric::Endpoint>> LiveEndpoint(session::SessionId id) const;

  SessionServerOptions options_;
  GrantTable* grants_;
  std::map<std::string, SessionDevice*> devices_;
  std::string provider_;  // resolved at Start
  Logger log_{"agent.session"};
  CounterFamily* refused_;
  CounterFamily* teardowns_;
  CounterFamily* scrubs_;
  Counter* mmio_applied_;
  Counter* completions_;
  Counter* push_failures_;
  Counter* throttles_;
  Counter* throttled_bytes_;
  RecentDemand demand_;  // sessions' doorbells and refreshes, for Budget
  Gauge* open_gauge_;

  mutable std::mutex mu_;
  std::map<session::SessionId, std::shared_ptr<Session>> sessions_;
  std::map<std::string, session::SessionId> device_owner_;
  std::map<std::string, absl::Status> device_clean_;  // absent = never used
  std::condition_variable scrubbed_;                  // a closing session is gone
  std::mutex close_mu_;
  std::vector<session::SessionId> close_requests_;  // kClose frames, for the reaper
  std::mutex checkpoint_mu_;
  // A session's first attach changed what the checkpoint records; the
  // reaper (or Stop) writes it, off the attach's path.
  std::atomic<bool> checkpoint_stale_{false};
  std::atomic<bool> stopping_{false};
  std::thread reaper_;
  std::thread interrupts_;
  mutable std::mutex spare_mu_;
  std::condition_variable spare_cv_;
  std::optional<SpareFabric> spare_;  // under spare_mu_
  std::thread spare_thread_;
};

}  // namespace rpci::agent

#endif  // RPCI_AGENT_SESSION_SESSION_SERVER_H_
