#ifndef RPCI_CONTROLLER_TESTING_REGISTRATIONS_H_
#define RPCI_CONTROLLER_TESTING_REGISTRATIONS_H_

#include <string>

#include "common/testing/temp_dir.h"
#include "common/testing/wait.h"
#include "proto/rpci/v1/controller.pb.h"

namespace rpci::controller::testing {

using ::rpci::testing::MakeTempDir;
using ::rpci::testing::WaitFor;

// An agent registration for `server` exporting `count` devices of `pool`.
inline rpci::v1::RegisterAgentRequest AgentWith(const std::string& server, const std::string& pool, int count) {
  rpci::v1::RegisterAgentRequest req;
  req.set_node(server);
  req.set_session_endpoint(server + ":7443");
  req.set_fabric_provider("tcp");
  for (int i = 0; i < count; ++i) {
    rpci::v1::ExportedDevice* d = req.add_devices();
    d->set_id(server + "-0000-3b-00-" + std::to_string(i));
    d->set_node(server);
    d->set_pool(pool);
    d->set_backend("emu");
    d->set_health(rpci::v1::DEVICE_HEALTH_HEALTHY);
    d->mutable_function()->set_bdf("0000:3b:00." + std::to_string(i));
  }
  return req;
}

inline rpci::v1::RegisterNodeRequest NodeWith(const std::string& node, const std::string& pool) {
  rpci::v1::RegisterNodeRequest req;
  req.set_node(node);
  req.add_pools(pool);
  return req;
}

// A claim by `node` of `device` for container "main" of pod `ns`/`pod`.
inline rpci::v1::ClaimRequest ClaimOf(const std::string& node, const std::string& device, const std::string& pod,
                                      const std::string& ns = "default") {
  rpci::v1::ClaimRequest req;
  req.set_node(node);
  req.set_device_id(device);
  req.set_pod_namespace(ns);
  req.set_pod_name(pod);
  req.set_container_name("main");
  return req;
}

}  // namespace rpci::controller::testing

#endif  // RPCI_CONTROLLER_TESTING_REGISTRATIONS_H_
