#ifndef RPCI_CONTROLLER_STORE_H_
#define RPCI_CONTROLLER_STORE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "controller/model.h"

namespace rpci::controller {

// Everything durable about the pool: devices with their decisions, and
// attachments (grants). Compute nodes and agents are soft state rebuilt from
// their re-registration.
struct StoreSnapshot {
  std::vector<Device> devices;
  std::vector<Attachment> attachments;
};

// A set of changes written together.
struct StoreBatch {
  std::vector<Device> put_devices;
  std::vector<std::string> delete_devices;
  std::vector<Attachment> put_attachments;
  std::vector<Attachment> delete_attachments;

  bool empty() const {
    return put_devices.empty() && delete_devices.empty() && put_attachments.empty() &&
           delete_attachments.empty();
  }
};

// Names of stored objects in a CommitOutcome: "PcieDevice/<id>",
// "DeviceAttachment/<grant id>".
inline std::string DeviceStoreKey(const std::string& id) { return "PcieDevice/" + id; }
inline std::string AttachmentStoreKey(const std::string& grant_id) { return "DeviceAttachment/" + grant_id; }

// What a commit did, object by object: everything not named in `failed` was
// written (or deleted).
struct CommitOutcome {
  std::map<std::string, absl::Status> failed;  // by *StoreKey
  bool ok() const { return failed.empty(); }
};

// Durable home of the pool manager's state. Implementations: LocalStore
// (files in a state directory) and KubeStore (rpci.io CRDs).
class Store {
 public:
  virtual ~Store() = default;

  // Reads everything. Objects that cannot be decoded are skipped with a
  // logged error rather than failing the whole load; UNAVAILABLE when the
  // backing store cannot be read at all.
  virtual absl::StatusOr<StoreSnapshot> Load() = 0;

  // Writes a batch, each object on its own: one refused object (an API
  // server's 404, 422, 403) does not keep the others from being written.
  // The caller keeps the failed ones dirty and commits them again (every
  // change is idempotent). A store that writes all or nothing names every
  // object of the batch when it fails.
  virtual CommitOutcome Commit(const StoreBatch& batch) = 0;
};

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_STORE_H_
