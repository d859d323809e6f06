#ifndef RPCI_PLUGIN_PREFERRED_H_
#define RPCI_PLUGIN_PREFERRED_H_

// The plugin's answer to GetPreferredAllocation: best fabric locality first,
// and devices of one device server together for multi-device requests.

#include <string>
#include <vector>

#include "proto/rpci/v1/controller.pb.h"

namespace rpci::plugin {

// A device the kubelet may pick, with what ranks it.
struct Candidate {
  std::string id;
  std::string device_server;  // the agent's node
  int locality = 0;           // lower is closer; see LocalityRank
};

// 0: shm (same host); 1: verbs with an RDMA NIC beside the device on its
// server; 2: verbs; 3: tcp; 4: anything else or unknown.
int LocalityRank(const rpci::v1::Assignment& a);

// Chooses `size` ids: every `must_include` id first, then devices from the
// device servers already chosen, then from one server that can supply the
// rest (the closest such), then from the largest remaining groups; within a
// server by locality, then id. Fewer than `size` when not enough exist.
std::vector<std::string> PreferDevices(const std::vector<Candidate>& available,
                                       const std::vector<std::string>& must_include, int size);

}  // namespace rpci::plugin

#endif  // RPCI_PLUGIN_PREFERRED_H_
