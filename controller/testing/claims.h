#ifndef RPCI_CONTROLLER_TESTING_CLAIMS_H_
#define RPCI_CONTROLLER_TESTING_CLAIMS_H_

#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "proto/rpci/v1/controller.pb.h"

namespace rpci::controller::testing {

// One allocation result of a ResourceClaim: `device` of `pool`, driver
// rpci.io, for request `request`.
inline nlohmann::json ClaimResult(const std::string& request, const std::string& pool, const std::string& device) {
  return {{"request", request}, {"driver", "rpci.io"}, {"pool", pool}, {"device", device}};
}

// ResourceClaim `name` of resource.k8s.io/`version`, allocated as the
// scheduler writes it: status.allocation.devices.results = `results`.
inline nlohmann::json AllocatedClaim(const std::string& name, const std::vector<nlohmann::json>& results,
                                     const std::string& version = "v1") {
  return {{"apiVersion", "resource.k8s.io/" + version},
          {"kind", "ResourceClaim"},
          {"metadata", {{"name", name}}},
          {"spec", {{"devices", {{"requests", {{{"name", "r0"}, {"exactly", {{"deviceClassName", "rpci-gpu"}}}}}}}}}},
          {"status", {{"allocation", {{"devices", {{"results", nlohmann::json(results)}}}}}}}};
}

// What PrepareClaim and UnprepareClaim take: claim `ns`/`name` with `uid` on
// `node`.
inline rpci::v1::NodeClaimRequest ClaimOn(const std::string& node, const std::string& ns, const std::string& name,
                                          const std::string& uid) {
  rpci::v1::NodeClaimRequest req;
  req.set_node(node);
  req.set_claim_namespace(ns);
  req.set_claim_name(name);
  req.set_claim_uid(uid);
  return req;
}

}  // namespace rpci::controller::testing

#endif  // RPCI_CONTROLLER_TESTING_CLAIMS_H_
