#ifndef RPCI_CLIENT_CONTROL_CLIENT_H_
#define RPCI_CLIENT_CONTROL_CLIENT_H_

// The compute side of the agent's SessionControl service: the one place that
// calls OpenSession / CloseSession / SessionStatus. The plugin reserves,
// checks and closes sessions with it; SessionClient (the workload's data
// path) attaches and resumes with it. docs/sessions.md is the protocol.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/async_unary_call.h"
#include "proto/rpci/v1/session.pb.h"
#include "session/frame_auth.h"
#include "session/session_id.h"
#include "session/session_key.h"

namespace rpci::client {

// One BAR as a session mirrors it on the compute side.
struct BarMirror {
  uint16_t index = 0;
  uint64_t size = 0;  // mirrored bytes (the agent caps large BARs)
};

// A session's BARs as the plugin writes them for the workload
// (RPCI_<i>_BARS, docs/librpci.md): "index:size" joined by commas, e.g.
// "0:4096,2:256". Parsing is strict: INVALID_ARGUMENT naming what is wrong
// for a malformed entry, a zero size, an index over 5 or one given twice.
std::string FormatBarList(const std::vector<BarMirror>& bars);
absl::StatusOr<std::vector<BarMirror>> ParseBarList(const std::string& text);

// A reserved session: what the workload needs to attach it. The key is the
// session's secret; it is written only to a 0600 file for the workload.
struct SessionTicket {
  std::string endpoint;  // agent SessionControl gRPC target
  session::SessionId session_id;
  session::SessionKey key;
  std::string fabric_provider;  // the agent's data-path provider
  std::vector<BarMirror> bars;
  uint64_t dma_size = 0;
};

// What the controller's grant lets the plugin reserve.
struct Reservation {
  std::string grant_id;
  std::string token;
  std::string compute_node;
};

// The agent's view of a session (SessionStatus).
struct SessionState {
  bool live = false;
  uint64_t applied_sequence = 0;
  uint64_t completions = 0;
};

struct ControlOptions {
  std::shared_ptr<grpc::ChannelCredentials> creds;  // null: insecure (loopback tests)
  // The agent learns grants from the controller's watch, asynchronously to
  // the Claim that made them: a refused grant is retried this long.
  absl::Duration grant_wait = absl::Seconds(3);
  absl::Duration rpc_timeout = absl::Seconds(5);
  // Reconnect within 100 ms..1 s of an agent coming back, for health checks
  // (one connection attempt, TLS handshake included, may still take 2 s).
  bool quick_reconnect = false;
};

// Thread-safe. Keeps one gRPC channel per agent endpoint.
class ControlClient {
 public:
  explicit ControlClient(ControlOptions options = {});

  // Reserves a session on the agent at `endpoint` (control plane only; the
  // workload attaches the data path later). Errors name the endpoint and
  // grant; FAILED_PRECONDITION when the agent speaks another protocol version.
  absl::StatusOr<SessionTicket> Reserve(const std::string& endpoint, const Reservation& reservation);
  // Ends the session (the plugin, when the pod's allocation ends); OK when
  // the agent no longer has it. With `detach` only the data path goes down:
  // the session belongs to the pod's allocation, so a workload that closes
  // (librpci's close) detaches and a restarted container attaches again.
  absl::Status Close(const SessionTicket& ticket, bool detach = false);
  // The session as the agent sees it; live=false when the agent is up but
  // the session is gone (or the key is wrong); UNAVAILABLE when the agent
  // cannot be reached.
  absl::StatusOr<SessionState> Status(const SessionTicket& ticket);
  // OK when `endpoint` accepts connections within `timeout`; UNAVAILABLE.
  absl::Status Probe(const std::string& endpoint, absl::Duration timeout);
  // Attaches (or resumes) the data path: `request` carries the client's
  // fabric address and regions (none to only learn the session's shape);
  // the session id, the agent's challenge and the proof of the key (bound to
  // that fabric address) are added here. The nonce also keys the attach's
  // control frames (session::FrameChannel).
  struct Attached {
    rpci::v1::OpenSessionResponse response;
    session::Nonce nonce{};
  };
  absl::StatusOr<Attached> Attach(const SessionTicket& ticket, rpci::v1::OpenSessionRequest request);
  // The same in two steps: a fresh nonce from the agent for the ticket's
  // session (status_probe: for a health check, see SessionStatus), then
  // the attach it answers.
  absl::StatusOr<session::Nonce> Challenge(const SessionTicket& ticket, bool status_probe = false);
  // A Challenge in flight (StartChallenge): the caller does other work (the
  // attach opens its endpoint meanwhile), then Finish waits for the nonce.
  // Dropping it unfinished cancels the call.
  class PendingChallenge {
   public:
    ~PendingChallenge();
    absl::StatusOr<session::Nonce> Finish();
    // After Finish: the agent's endpoint for the session's next attach,
    // when the agent said it (a session no attach has used yet), else empty.
    const std::string& agent_fabric_address() const { return resp_.agent_fabric_address(); }

   private:
    friend class ControlClient;
    PendingChallenge() = default;
    std::string what_;
    grpc::ClientContext ctx_;
    grpc::CompletionQueue cq_;
    rpci::v1::ChallengeResponse resp_;
    grpc::Status status_;
    std::unique_ptr<grpc::ClientAsyncResponseReader<rpci::v1::ChallengeResponse>> call_;
    bool finished_ = false;
  };
  std::unique_ptr<PendingChallenge> StartChallenge(const SessionTicket& ticket, bool status_probe = false);
  absl::StatusOr<Attached> Attach(const SessionTicket& ticket, const session::Nonce& nonce,
                                  rpci::v1::OpenSessionRequest request);
  // Starts connecting to `endpoint` (TCP, TLS handshake) without waiting, so
  // that a call made soon after finds the channel ready.
  void Prepare(const std::string& endpoint);
  // Drops the cached channel to `endpoint`: the next call connects afresh
  // instead of waiting out the old channel's reconnect backoff.
  void Forget(const std::string& endpoint);

 private:
  std::shared_ptr<grpc::Channel> ChannelTo(const std::string& endpoint);

  const ControlOptions options_;
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

// The BAR mirrors and DMA size an OpenSession answer describes.
// INVALID_ARGUMENT when it names no DMA region or a malformed BAR.
absl::Status ReadShape(const rpci::v1::OpenSessionResponse& response, SessionTicket* ticket);

}  // namespace rpci::client

#endif  // RPCI_CLIENT_CONTROL_CLIENT_H_
