#ifndef RPCI_COMMON_DRA_DRIVER_NAME_H_
#define RPCI_COMMON_DRA_DRIVER_NAME_H_

namespace rpci {

// rpci's Dynamic Resource Allocation driver name, which the controller and the
// plugin must agree on: ResourceSlices' spec.driver and allocation results'
// driver (controller), the name the plugin registers with the kubelet, and the
// CDI vendor of its specs.
inline constexpr char kDraDriverName[] = "rpci.io";

}  // namespace rpci

#endif  // RPCI_COMMON_DRA_DRIVER_NAME_H_
