#ifndef RPCI_CONTROLLER_CRD_CODEC_H_
#define RPCI_CONTROLLER_CRD_CODEC_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "controller/model.h"
#include "nlohmann/json.hpp"

namespace rpci::controller {

// The rpci.io/v1alpha1 object shapes (docs/crds.md is their reference). Both
// stores persist these same objects, so a state directory and a cluster hold
// the same thing.
inline constexpr char kApiGroup[] = "rpci.io";
inline constexpr char kApiVersion[] = "rpci.io/v1alpha1";
// PcieDevice annotation an admin sets to "true" to drain the device
// (Device::drain_requested). Metadata, because spec is the agent's export and
// status is the controller's.
inline constexpr char kDrainAnnotation[] = "rpci.io/drain";

// Reading Kubernetes objects of any shape: the string member `key` of
// `object` ("" when `object` is not an object, or the member is absent or
// not a string), and any member (null when absent).
std::string Str(const nlohmann::json& object, const char* key);
const nlohmann::json& Member(const nlohmann::json& object, const char* key);

// PcieDevice (cluster-scoped, named by device id). `now` picks the phase;
// `generation` is echoed as the conditions' observedGeneration.
nlohmann::json DeviceToObject(const Device& device, absl::Time now, int64_t generation = 0);
// The same object as compact JSON text, encoded once (the spec is protobuf's
// JSON text, not parsed back): what the local store keeps and journals.
std::string DeviceToText(const Device& device, absl::Time now, int64_t generation = 0);
absl::StatusOr<Device> DeviceFromObject(const nlohmann::json& object);
// Whether a PcieDevice object carries kDrainAnnotation = "true".
bool DrainRequested(const nlohmann::json& object);

// DeviceAttachment in namespace `ns` (the install namespace; the pod's
// namespace is spec.podNamespace), named by grant id. It carries no secret:
// the grant token is the Secret of GrantSecretToObject. Decoding leaves the
// token empty unless the object has a (legacy) spec.token.
nlohmann::json AttachmentToObject(const Attachment& attachment, const std::string& ns);
absl::StatusOr<Attachment> AttachmentFromObject(const nlohmann::json& object);

// The Secret holding an attachment's grant token: named by the grant id, in
// `ns`, type kGrantSecretType, data.token (base64 as Secret data is). With a
// non-empty `owner_uid` it is owned by the DeviceAttachment, so the garbage
// collector removes it with the attachment.
inline constexpr char kGrantSecretType[] = "rpci.io/grant";
nlohmann::json GrantSecretToObject(const Attachment& attachment, const std::string& ns,
                                   const std::string& owner_uid = "");
// The raw token of a grant Secret; INVALID_ARGUMENT when it is not one.
absl::StatusOr<std::string> TokenFromGrantSecret(const nlohmann::json& secret);

// DevicePool (cluster-scoped); the pool's name is metadata.name. Errors name
// the field path ("DevicePool gpu: spec.sparesPerNode: expected integer ...").
nlohmann::json PoolToObject(const PoolSpec& pool);
absl::StatusOr<PoolSpec> PoolFromObject(const nlohmann::json& object);
// A DevicePool's status: device counts by phase (available, assigned,
// attached, releasing, draining, unhealthy, total), observedGeneration, and
// conditions Valid (the spec decodes) and Ready (some device can be handed
// out). A condition keeps its lastTransitionTime from the object's current
// status while its status stays the same, so an unchanged pool gives an
// equal object.
nlohmann::json PoolStatus(const nlohmann::json& pool, const std::map<std::string, int64_t>& phase_counts,
                          absl::Time now);

// A pool as written in a local config file: the DevicePool spec fields plus
// "name" at the same level.
absl::StatusOr<PoolSpec> PoolFromConfig(const nlohmann::json& entry, const std::string& origin);

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_CRD_CODEC_H_
