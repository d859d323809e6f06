#ifndef RPCI_COMMON_FABRIC_FABRIC_FLAGS_H_
#define RPCI_COMMON_FABRIC_FABRIC_FLAGS_H_

// The data-path flags of a tool that opens its own fabric (the benchmarks):
// one declaration, so every tool names and explains them alike.

#include "common/fabric/fabric.h"
#include "common/flags.h"

namespace rpci::fabric {

// --provider (config->provider) and --node (config->node); the config's
// current values are the defaults --help shows.
void AddFlags(FlagSet& flags, FabricConfig* config);

}  // namespace rpci::fabric

#endif  // RPCI_COMMON_FABRIC_FABRIC_FLAGS_H_
