// What the kubelet sends the plugin: AllocateRequest, PreferredAllocationRequest,
// PreStartContainerRequest and pod-resources responses, parsed from any bytes.
#include <cstdint>

#include "third_party/kubelet/deviceplugin/v1beta1/api.pb.h"
#include "third_party/kubelet/podresources/v1/api.pb.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int n = static_cast<int>(size);
  v1beta1::AllocateRequest allocate;
  if (allocate.ParseFromArray(data, n)) {
    for (const auto& c : allocate.container_requests()) (void)c.devices_ids_size();
  }
  v1beta1::PreferredAllocationRequest preferred;
  if (preferred.ParseFromArray(data, n)) (void)preferred.ByteSizeLong();
  v1::ListPodResourcesResponse pods;
  if (pods.ParseFromArray(data, n)) (void)pods.SerializeAsString();
  return 0;
}
