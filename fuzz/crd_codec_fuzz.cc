// Kubernetes objects the controller reads back (PcieDevice, DeviceAttachment,
// DevicePool) and pools from its config file: any JSON gives a value or a
// Status. A device or attachment that decodes encodes again and decodes to
// the same thing.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/time/time.h"
#include "controller/crd_codec.h"
#include "google/protobuf/util/message_differencer.h"
#include "nlohmann/json.hpp"

using nlohmann::json;
using namespace rpci::controller;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  json object = json::parse(std::string(reinterpret_cast<const char*>(data), size), nullptr,
                            /*allow_exceptions=*/false);
  if (object.is_discarded()) return 0;
  (void)DrainRequested(object);
  if (absl::StatusOr<Device> d = DeviceFromObject(object); d.ok()) {
    absl::StatusOr<Device> again = DeviceFromObject(DeviceToObject(*d, absl::UnixEpoch(), 1));
    if (!again.ok() || !google::protobuf::util::MessageDifferencer::Equals(again->exported, d->exported) ||
        again->assigned_node != d->assigned_node || again->attachment != d->attachment) {
      std::abort();
    }
  }
  if (absl::StatusOr<Attachment> a = AttachmentFromObject(object); a.ok()) {
    const std::string ns = a->pod_namespace.empty() ? "rpci-system" : a->pod_namespace;
    absl::StatusOr<Attachment> again = AttachmentFromObject(AttachmentToObject(*a, ns));
    if (!again.ok() || again->grant_id != a->grant_id || again->device_id != a->device_id ||
        again->node != a->node || !again->token.empty() || again->pod_name != a->pod_name ||
        again->pod_namespace != a->pod_namespace || again->allocation != a->allocation) {
      std::abort();
    }
    // The token travels only in the grant Secret.
    if (!a->token.empty()) {
      absl::StatusOr<std::string> token = TokenFromGrantSecret(GrantSecretToObject(*a, ns));
      if (!token.ok() || *token != a->token) std::abort();
    }
  }
  if (absl::StatusOr<PoolSpec> p = PoolFromObject(object); p.ok()) {
    absl::StatusOr<PoolSpec> again = PoolFromObject(PoolToObject(*p));
    if (!again.ok() || again->name != p->name || again->selector != p->selector ||
        again->spares_per_node != p->spares_per_node || again->locality != p->locality) {
      std::abort();
    }
  }
  (void)PoolFromConfig(object, "fuzz");
  return 0;
}
