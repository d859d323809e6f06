#include "common/fabric/fabric_flags.h"

namespace rpci::fabric {

void AddFlags(FlagSet& flags, FabricConfig* config) {
  flags.String("provider", &config->provider, "data-path provider (tcp;ofi_rxm, verbs;ofi_rxm ...)");
  flags.String("node", &config->node, "local address to bind (the RDMA NIC's)");
}

}  // namespace rpci::fabric
