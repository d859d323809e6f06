#ifndef RPCI_TESTS_KUBE_RESOURCE_GROUP_H_
#define RPCI_TESTS_KUBE_RESOURCE_GROUP_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace rpci::kubetest {

// The built-in resource.k8s.io group (Dynamic Resource Allocation) as the
// test API server serves it: one stored form per object (v1's) and the
// conversions kube-apiserver makes between it and each served version.
// The versions differ where rpci's clients see them:
//   ResourceSlice spec.devices[]: v1beta1 nests a device's attributes,
//     capacity (and every other field but name) under `basic`; v1 has them
//     on the device itself.
//   ResourceClaim(Template) spec.devices.requests[]: v1beta1 has
//     deviceClassName, selectors, allocationMode, count, adminAccess,
//     tolerations on the request; v1 has them under `exactly`.
//   status.allocation (devices.results[{request, driver, pool, device}],
//   nodeSelector) and DeviceClass have one shape in both.
// Fields a version does not have are dropped, as kube-apiserver does with
// its default field validation (Warn); Warnings() names them.
namespace resource_group {

inline constexpr char kGroup[] = "resource.k8s.io";

struct ResourceInfo {
  const char* resource;  // plural
  const char* kind;
  bool namespaced;
  bool status;  // has the /status subresource
};

// resourceslices, resourceclaims, resourceclaimtemplates, deviceclasses;
// null for another name.
const ResourceInfo* Find(const std::string& resource);

// `object` (as a client of `version` wrote it) in the stored (v1) form;
// `warnings` gets each dropped field's path.
nlohmann::json ToStorage(const std::string& resource, const std::string& version, nlohmann::json object,
                         std::vector<std::string>* warnings);
// A stored object as `version` shows it (apiVersion set).
nlohmann::json FromStorage(const std::string& resource, const std::string& version, nlohmann::json object);

// kube-apiserver's validation of a stored-form object, the part rpci can
// get wrong: for a ResourceSlice, spec.driver, spec.pool.{name,
// resourceSliceCount >= 1, generation >= 0}, exactly one of nodeName,
// nodeSelector (exactly one term), allNodes: true, perDeviceNodeSelection;
// at most 128 devices with unique DNS-label names, each attribute holding
// exactly one of int, bool, string, version, at most 32 attributes and
// capacities per device, every capacity a quantity string. Each violation as
// "<field path>: <message>"; empty when valid.
std::vector<std::string> Validate(const std::string& resource, const nlohmann::json& object);

// Discovery documents, in the legacy JSON shapes (APIGroup, the group's
// entry in APIGroupList, APIResourceList). `versions` in preference order.
nlohmann::json Group(const std::vector<std::string>& versions);
nlohmann::json ResourceList(const std::string& version);

}  // namespace resource_group
}  // namespace rpci::kubetest

#endif  // RPCI_TESTS_KUBE_RESOURCE_GROUP_H_
