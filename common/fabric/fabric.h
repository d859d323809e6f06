#ifndef RPCI_COMMON_FABRIC_FABRIC_H_
#define RPCI_COMMON_FABRIC_FABRIC_H_

// rpci's data path over libfabric reliable-datagram (FI_EP_RDM) endpoints
// with FI_MSG | FI_RMA: registered memory with scoped remote access, one-sided
// write/read, small messages, and completions waited for with a timeout.
//
//   auto fabric = Fabric::Open(config);            // provider, domain
//   auto ep = (*fabric)->OpenEndpoint();            // bound to config.node
//   auto mr = (*ep)->RegisterMemory(buf, len, kRemoteWrite);
//   // ... send (*ep)->address() and (*mr)->remote() to the peer ...
//   auto peer = (*ep)->InsertPeer(peer_address);
//   (*ep)->Write(*peer, {src_mr, 0, len, remote.address, remote.key});
//
// Every libfabric failure comes back as an absl::Status naming the call and
// carrying fi_strerror's text. Nothing here throws or aborts on bad input.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/config.h"

namespace rpci::fabric {

// Provider names a config may give. "auto" picks kVerbs when rdma-core sees
// an RDMA port in state ACTIVE, else kTcp.
inline constexpr char kAuto[] = "auto";
inline constexpr char kTcp[] = "tcp;ofi_rxm";
inline constexpr char kVerbs[] = "verbs;ofi_rxm";
inline constexpr char kShm[] = "shm";

struct FabricConfig {
  std::string provider = kAuto;
  // Local address to bind endpoints to (e.g. the pod IP); empty: any. Ignored
  // by shm.
  std::string node;
  // Local port; empty: an ephemeral one.
  std::string service;
  // An operation not complete by then fails with DEADLINE_EXCEEDED.
  absl::Duration op_timeout = absl::Seconds(2);
  // How long a post may be refused (FI_EAGAIN) while the provider connects
  // to the peer, if longer than op_timeout; op_timeout then counts from the
  // post. verbs;ofi_rxm connects through rdma_cm on the first operation to a
  // peer, which took 5-7 s on Soft-RoCE in the test machine
  // (//tests/vm:verbs_e2e_test). Zero: op_timeout, except 15 s with
  // verbs;ofi_rxm.
  absl::Duration connect_timeout = absl::ZeroDuration();
  // Largest message Send/Recv carry, and how many receives stay posted.
  size_t max_message = 4096;
  size_t recv_depth = 32;
  // Peers one endpoint talks to at once (libfabric's FI_UNIVERSE_SIZE),
  // applied with every provider unless the environment sets FI_UNIVERSE_SIZE.
  // rxm sizes one completion queue for all its connections as (128 + 128)
  // x universe entries; libfabric's default universe (256) asks for 65536,
  // more than Soft-RoCE (rxe: max_cqe 32767) and some NICs give, and
  // fi_enable then fails ("Unable to create verbs CQ"). 64 fits every
  // device that has 16384 CQ entries (ibv_devinfo -v: max_cqe). With tcp the
  // queue is a calloc the default made 12 MiB per endpoint (~5 ms of every
  // endpoint's opening; docs/benchmarks.md). libfabric reads it once per
  // process, at the first Fabric::Open (docs/agent.md).
  size_t universe_size = 64;
  // Caller-driven progress: a thread waiting for its operations or for a
  // message becomes the thread that reads the completion queue: it polls
  // (fi_cq_read) for up to `busy_poll`, then blocks in fi_cq_sread itself, so
  // the kernel wakes the waiter directly (no progress-thread to caller
  // hand-off). Other waiters block and take over when it leaves; the
  // endpoint's progress thread stays parked while a caller leads (and 2 ms
  // after). Zero by default: on a shared 2-core machine polling callers
  // made the fabric ping-pong slower (docs/benchmarks.md).
  absl::Duration busy_poll = absl::ZeroDuration();
  // Received messages an endpoint keeps for Recv/RecvFrom from one sender
  // (every sender not inserted counts as one, kUnknownPeer; so do all
  // senders where reports_sender() is false); more from that sender are
  // dropped and counted (Endpoint::dropped_messages), so a peer that floods
  // an endpoint whose owner is busy costs bounded memory and cannot crowd
  // out another sender's messages. 0: no limit.
  size_t max_queued = 0;
  // This process registers host memory only (a workload's session client):
  // libfabric's initialisation at the process's first Open skips the verbs
  // provider's probe for device-memory registration (two reads of
  // /proc/kallsyms, 90-700 ms of a fresh process's first attach;
  // kernel_symbols.h). No effect once the process's libfabric is initialised.
  bool host_memory_only = false;
  // Tests only: each read of the completion queue that finds entries waits
  // this long before handing them on, widening the window in which a second
  // reader could overtake it (FabricTest.MessagesArriveInOrder*).
  absl::Duration completion_read_pause_for_testing = absl::ZeroDuration();
};

// tcp;ofi_rxm bound to 127.0.0.1: single-host setups and tests.
FabricConfig LoopbackConfig();

// How an endpoint moves bulk RMA (Write, Read, their batches, WriteAndSend's
// writes): ops are cut into pieces of at most `piece_bytes`, and one call
// posts at most `bytes_in_flight` of them at once (at least one piece; small
// ops go together, and up to 64 KiB of ops of at most 16 KiB, such as
// WriteAndSend's message, ride with a full group instead of waiting for it),
// each group placed before the next is posted.
struct BulkPacing {
  size_t piece_bytes;
  size_t bytes_in_flight;
  bool operator==(const BulkPacing& o) const {
    return piece_bytes == o.piece_bytes && bytes_in_flight == o.bytes_in_flight;
  }
};
// Every endpoint starts with it: large pieces, so a lone transfer gets the
// fabric's bandwidth (a 1 MiB transfer is one op; docs/benchmarks.md, "Device
// round trip").
inline constexpr BulkPacing kFullSpeedPacing{size_t{1} << 20, size_t{4} << 20};
// For a session that must yield (the agent sets it on a throttled session's
// endpoint, agent/session/throttle.h): with 4 MiB handed to tcp;ofi_rxm at
// once, another session's doorbell waited about as long as the transfer
// (1.2-1.6 ms) for a CPU both copying threads held; the tail scales with the
// bytes posted at once (docs/benchmarks.md, "Fairness").
inline constexpr BulkPacing kYieldingPacing{size_t{256} << 10, size_t{1} << 20};

// Reads the `fabric:` section of the agent's config (docs/agent.md):
// `provider`, `address` (into `node`), `universe_size` and `busy_poll_us`.
// Absent keys keep `config`'s values; errors are recorded in `reader`. The
// port stays ephemeral (each session opens its own endpoint) and message
// sizes stay as both ends of a session expect them.
void ReadFabricConfig(ConfigReader reader, FabricConfig* config);

// Whether this host has an RDMA port that is up. The default asks rdma-core
// (ibv_get_device_list, ibv_query_port); tests hand in their own answer.
class RdmaProbe {
 public:
  virtual ~RdmaProbe() = default;
  // True when some device has a port in IBV_PORT_ACTIVE. A host without
  // RDMA devices answers false, not an error. Thread-safe.
  virtual bool HasActivePort() = 0;
  // The rdma-core probe; never null, never deleted.
  static RdmaProbe* Default();
};

// The provider `configured` stands for: "auto" resolved through `probe`,
// the others as given. INVALID_ARGUMENT for anything else.
absl::StatusOr<std::string> ResolveProvider(absl::string_view configured, RdmaProbe* probe);

// Sets, once per process, the environment libfabric reads when its providers
// initialise (rxm's buffer sizes, FI_UNIVERSE_SIZE; for verbs the
// registration cache off), each only where the process has not set it
// (FI_MR_CACHE_MAX_COUNT always). Fabric::Open calls it. setenv while another
// thread reads the environment is a data race (a workload's first attach
// crashed in getenv under gRPC's channel creation while its other thread
// opened the fabric): a process that opens its first fabric on another
// thread calls this first, on its own thread, before that thread starts.
absl::Status PrepareEnvironment(const FabricConfig& config, RdmaProbe* probe = nullptr);

// Remote access a region grants its peers (FI_REMOTE_READ / FI_REMOTE_WRITE).
enum Access : uint64_t {
  kLocalOnly = 0,
  kRemoteRead = 1,
  kRemoteWrite = 2,
};

// What a peer needs to reach a registered region; its owner sends it over.
struct RemoteRegion {
  uint64_t address = 0;  // names byte 0 of the region in the peer's RMA calls
  uint64_t key = 0;
  uint64_t size = 0;
};

// The provider's memory-registration requirements (domain_attr->mr_mode).
struct MrMode {
  bool local = false;      // FI_MR_LOCAL: local buffers need a descriptor
  bool virt_addr = false;  // FI_MR_VIRT_ADDR: RMA targets are virtual addresses
  bool prov_key = false;   // FI_MR_PROV_KEY: the provider picks keys
  bool endpoint = false;   // FI_MR_ENDPOINT: regions bind to an endpoint
  bool allocated = false;  // FI_MR_ALLOCATED: only allocated memory registers
};

class Endpoint;

// A registered buffer. Destruction (or Revoke) deregisters it: its key stops
// working for every peer. May outlive its Endpoint. Not thread-safe against
// concurrent Revoke.
class MemoryRegion {
 public:
  ~MemoryRegion();
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  uint64_t access() const { return access_; }
  // Address and key for peers; see RemoteRegion.
  RemoteRegion remote() const { return {remote_address_, key_, size_}; }
  // Local descriptor for the provider (fi_mr_desc); null after Revoke.
  void* desc() const { return desc_; }
  bool revoked() const { return handle_ == nullptr; }

  // Deregisters now; later remote accesses with the key fail.
  void Revoke();

 private:
  friend class EndpointImpl;
  struct Handle;
  MemoryRegion() = default;
  std::shared_ptr<Handle> handle_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint64_t access_ = 0;
  uint64_t key_ = 0;
  uint64_t remote_address_ = 0;
  void* desc_ = nullptr;
};

// A peer inserted into an endpoint's address vector.
using PeerId = uint64_t;
// A sender that is not in the endpoint's address vector (FI_ADDR_NOTAVAIL).
inline constexpr PeerId kUnknownPeer = ~PeerId{0};

// A received message and its sender.
struct Message {
  std::string bytes;
  // The sender as InsertPeer named it; kUnknownPeer when it was never
  // inserted or the provider cannot say (reports_sender()). A removed peer
  // may keep its id on a connection made before (ofi_rxm keeps connections,
  // and the address vector reuses ids): to cut a peer off, close the endpoint.
  PeerId from = kUnknownPeer;
};

// One one-sided transfer: `length` bytes at `local_offset` in `local` to or
// from the peer's `remote_address` (see RemoteRegion) under `key`.
struct RmaOp {
  const MemoryRegion* local = nullptr;
  size_t local_offset = 0;
  size_t length = 0;
  uint64_t remote_address = 0;
  uint64_t key = 0;
};

// An RDM endpoint with its completion queue, address vector and a progress
// thread (which also serves peers' one-sided accesses to our regions while
// no caller drives progress; see FabricConfig::busy_poll).
// Every method is thread-safe. Calls block until their operations complete,
// fail, or op_timeout passes. After a timeout (or Shutdown), a buffer an
// unfinished operation used may still be touched by the provider until the
// endpoint is destroyed; treat the peer as broken.
class Endpoint {
 public:
  virtual ~Endpoint() = default;

  // This endpoint's fabric address: opaque bytes a peer passes to InsertPeer.
  virtual const std::string& address() const = 0;
  // The provider actually in use ("tcp;ofi_rxm" ...).
  virtual const std::string& provider() const = 0;
  virtual MrMode mr_mode() const = 0;

  // Adds a peer's address (bytes from its address()). INVALID_ARGUMENT when
  // the address vector rejects them.
  virtual absl::StatusOr<PeerId> InsertPeer(absl::string_view address) = 0;
  virtual absl::Status RemovePeer(PeerId peer) = 0;

  // Registers `size` bytes at `data`, granting peers `access` (Access bits).
  // The caller keeps the memory alive and in place while the region exists.
  // The key is chosen by the provider or at random, never guessable. (With
  // verbs the NIC chooses: Soft-RoCE's keys are a table index and 8 random
  // bits, so sessions must not share a domain; see docs/verbs.md.) With
  // verbs, libfabric's registration cache is turned off so that Revoke
  // really deregisters (Fabric::Open).
  // Enforcement is the provider's: tcp;ofi_rxm (libfabric 1.17) refuses
  // remote writes to a region without kRemoteWrite but does NOT refuse remote
  // reads of a region without kRemoteRead, so never register memory a peer
  // must not see, even write-only.
  virtual absl::StatusOr<std::unique_ptr<MemoryRegion>> RegisterMemory(void* data, size_t size,
                                                                       uint64_t access) = 0;

  // One-sided write/read; complete means the data is placed at the target
  // (FI_DELIVERY_COMPLETE). OUT_OF_RANGE when an op leaves its local region;
  // the target's refusal (bad key, outside the region, access not granted)
  // comes back as an error status, the target's memory outside the region
  // untouched. Bulk transfers are paced (bulk_pacing()). A refused op may
  // therefore have placed its first pieces (the part inside the region).
  virtual absl::Status Write(PeerId peer, const RmaOp& op) = 0;
  virtual absl::Status Read(PeerId peer, const RmaOp& op) = 0;
  // Pieces of all, in order, paced as above; the first failure is returned.
  virtual absl::Status WriteBatch(PeerId peer, const std::vector<RmaOp>& ops) = 0;
  virtual absl::Status ReadBatch(PeerId peer, const std::vector<RmaOp>& ops) = 0;

  // Sends one message of 1..max_message bytes. Messages to one peer arrive
  // in order and after the writes that completed before the send.
  virtual absl::Status Send(PeerId peer, absl::string_view message) = 0;
  // Starts the provider's connection to `peer` without waiting for it: posts
  // an empty message that nobody waits for (Recv hands it on like any other;
  // the session agent drops empty messages). With a connection-oriented provider
  // (ofi_rxm), a later operation from either side to the other finds the
  // connection made or in the making (rxm pairs connections by address).
  virtual absl::Status Dial(PeerId peer) = 0;
  // RMA-writes `ops`, then sends `message`: the peer has the data before the
  // message arrives. With ordered_writes() everything is posted at once and
  // waited for together (one round trip), else the send waits for the writes.
  virtual absl::Status WriteAndSend(PeerId peer, const std::vector<RmaOp>& ops, absl::string_view message) = 0;
  // How bulk RMA is cut and posted from now on (calls already posting keep
  // theirs); kFullSpeedPacing until set. Thread-safe.
  virtual void set_bulk_pacing(BulkPacing pacing) = 0;
  virtual BulkPacing bulk_pacing() const = 0;
  // Whether the provider places writes to one peer in the order posted
  // (FI_ORDER_WAW) and delivers a message after the writes posted before it
  // (FI_ORDER_SAW), without waiting for their completions in between.
  virtual bool ordered_writes() const = 0;
  // The next message received, DEADLINE_EXCEEDED after `timeout`, CANCELLED
  // once Shutdown was called and nothing is left to receive.
  virtual absl::StatusOr<std::string> Recv(absl::Duration timeout) = 0;
  // Recv that also names the sender. ABORTED when Wake() was called while it
  // waited (or since the last receive returned) and no message is queued.
  virtual absl::StatusOr<Message> RecvFrom(absl::Duration timeout) = 0;
  // Whether RecvFrom names senders (the provider has FI_SOURCE; tcp;ofi_rxm
  // and verbs;ofi_rxm do). Without it every sender is kUnknownPeer.
  virtual bool reports_sender() const = 0;
  // Makes the RecvFrom waiting now, or the next one, return ABORTED unless a
  // message is queued (which then takes the wake-up's place): another
  // thread's way to get the receiver's attention.
  virtual void Wake() = 0;
  // Messages dropped because FabricConfig::max_queued from their sender
  // were waiting; and of those, the ones from `sender` (as RecvFrom would
  // have named it: kUnknownPeer for senders never inserted).
  virtual uint64_t dropped_messages() const = 0;
  virtual uint64_t dropped_messages_from(PeerId sender) const = 0;

  // Stops the progress thread and wakes every waiter: operations in progress
  // or started later fail with CANCELLED, and peers' accesses to our regions
  // are no longer served. Idempotent; destruction implies it.
  virtual void Shutdown() = 0;

  // Operations that failed or timed out so far.
  virtual uint64_t failed_ops() const = 0;

  // How many times Fabric::OpenEndpoint bound to open this endpoint: more
  // than 1 when its port was taken by another endpoint opening at the same
  // moment (the caller logs it).
  virtual int open_attempts() const = 0;
};

// How many times this process asked libfabric for a provider's answer
// (fi_getinfo). Fabric::Open asks once per provider, node and service and
// reuses the answer; for tests.
uint64_t ProviderQueriesForTesting();
// Tests only: every answer remembered so far names a provider libfabric does
// not have (as an answer gone stale would no longer open), so the next open
// of its configuration fails to open a fabric from it and asks again.
void SpoilRememberedProviderAnswersForTesting();

// An opened fabric and domain for one provider; makes endpoints.
class Fabric {
 public:
  // Resolves config.provider (through `probe`, default rdma-core) and opens
  // fabric and domain. NOT_FOUND when the provider is unavailable here (or
  // cannot bind config.node), naming both.
  static absl::StatusOr<std::unique_ptr<Fabric>> Open(const FabricConfig& config, RdmaProbe* probe = nullptr);
  virtual ~Fabric() = default;

  virtual const std::string& provider() const = 0;
  virtual MrMode mr_mode() const = 0;

  // A new endpoint bound to config.node/service. Thread-safe. With an
  // ephemeral port (tcp: one of FI_TCP_PORT_LOW_RANGE..HIGH_RANGE when set)
  // two endpoints opening at the same moment may bind the same port, and the
  // one that listens second fails (fi_enable: EADDRINUSE); it is opened again
  // on another port, up to 16 times in all, a few milliseconds apart
  // (Endpoint::open_attempts). A full range is not retried here: that error
  // comes back at once (//agent/session:session_ports_test).
  virtual absl::StatusOr<std::unique_ptr<Endpoint>> OpenEndpoint() = 0;
};

// The local IPv4 address this host uses to reach `endpoint`'s host
// ("host:port", optionally with a gRPC dns:///, ipv4: or ipv6: scheme): the
// route's source address, found with a connected UDP socket (nothing is
// sent). What an endpoint binds to when talking to that peer, and so which
// RDMA NIC carries the session.
absl::StatusOr<std::string> LocalAddressFor(const std::string& endpoint);
// The network device (in this network namespace) holding IPv4 `address`.
absl::StatusOr<std::string> NetdevWithAddress(const std::string& address);

// fi_strerror's text as a Status of a fitting code, naming `call`:
// "fabric: fi_write: Connection refused" (code UNAVAILABLE).
absl::Status FabricError(absl::string_view call, int fi_errno);

}  // namespace rpci::fabric

#endif  // RPCI_COMMON_FABRIC_FABRIC_H_
