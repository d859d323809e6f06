#ifndef RPCI_TESTS_KUBELET_CDI_RUNTIME_H_
#define RPCI_TESTS_KUBELET_CDI_RUNTIME_H_

// What a container runtime (containerd, CRI-O, through
// tags.cncf.io/container-device-interface) does with the CDI device ids the
// kubelet hands it: reads every spec in the CDI dir (*.json), resolves each
// fully qualified id "<vendor>/<class>=<name>" to its spec's device, and
// applies the spec-wide containerEdits once per spec, then each device's
// containerEdits. The result is expressed as the container's env, mounts and
// device nodes (a ContainerAllocateResponse), which container.h runs.
// Like the CDI library: an id that no spec declares, a device declared by
// two specs, a spec without cdiVersion/kind or a device without edits is an
// error; later env entries override earlier ones with the same name.

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "third_party/kubelet/deviceplugin/v1beta1/api.pb.h"

namespace rpci::testing {

// Resolves `cdi_ids` against the specs in `cdi_dir` and returns the edits to
// apply. NOT_FOUND ("unresolvable CDI devices ...") for unknown ids;
// INVALID_ARGUMENT for a malformed id or spec, or a conflicting device.
absl::StatusOr<v1beta1::ContainerAllocateResponse> InjectCdiDevices(const std::string& cdi_dir,
                                                                    const std::vector<std::string>& cdi_ids);

// What the runtime runs for a device-plugin container: the kubelet's
// `response` (env, mounts, devices) with the edits of its cdi_devices
// resolved in `cdi_dir` applied on top (env entries of the same name
// replaced, mounts and device nodes appended), as containerd and CRI-O do
// with the CRI request's CDI devices. An empty `cdi_dir` is a runtime without
// CDI: the ids are ignored. Errors as InjectCdiDevices.
absl::StatusOr<v1beta1::ContainerAllocateResponse> ApplyCdiDevices(const v1beta1::ContainerAllocateResponse& response,
                                                                   const std::string& cdi_dir);

}  // namespace rpci::testing

#endif  // RPCI_TESTS_KUBELET_CDI_RUNTIME_H_
