#ifndef RPCI_CONTROLLER_CRD_CODEC_H_
#define RPCI_CONTROLLER_CRD_CODEC_H_

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

// PcieDevice (cluster-scoped, named by device id). `now` picks the phase;
// `generation` is echoed as the conditions' observedGeneration.
nlohmann::json DeviceToObject(const Device& device, absl::Time now, int64_t generation = 0);
absl::StatusOr<Device> DeviceFromObject(const nlohmann::json& object);
// Whether a PcieDevice object carries kDrainAnnotation = "true".
bool DrainRequested(const nlohmann::json& object);

// DeviceAttachment (namespaced in the pod's namespace, named by grant id).
nlohmann::json AttachmentToObject(const Attachment& attachment);
absl::StatusOr<Attachment> AttachmentFromObject(const nlohmann::json& object);

// DevicePool (cluster-scoped); the pool's name is metadata.name. Errors name
// the field path ("DevicePool gpu: spec.sparesPerNode: expected integer ...").
nlohmann::json PoolToObject(const PoolSpec& pool);
absl::StatusOr<PoolSpec> PoolFromObject(const nlohmann::json& object);
// A pool as written in a local config file: the DevicePool spec fields plus
// "name" at the same level.
absl::StatusOr<PoolSpec> PoolFromConfig(const nlohmann::json& entry, const std::string& origin);

}  // namespace rpci::controller

#endif  // RPCI_CONTROLLER_CRD_CODEC_H_
