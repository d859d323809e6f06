// Provider choice: config names, "auto" through rdma-core, config parsing.

#include <infiniband/verbs.h>

#include "absl/strings/str_cat.h"
#include "common/fabric/fabric.h"

namespace rpci::fabric {
namespace {

// Asks rdma-core for every device's ports; an ACTIVE port means RDMA is usable.
class VerbsProbe : public RdmaProbe {
 public:
  bool HasActivePort() override {
    int count = 0;
    ibv_device** devices = ibv_get_device_list(&count);
    if (devices == nullptr) return false;
    bool active = false;
    for (int i = 0; i < count && !active; ++i) {
      ibv_context* ctx = ibv_open_device(devices[i]);
      if (ctx == nullptr) continue;
      ibv_device_attr attr{};
      if (ibv_query_device(ctx, &attr) == 0) {
        for (uint8_t port = 1; port <= attr.phys_port_cnt && !active; ++port) {
          ibv_port_attr port_attr{};
          active = ibv_query_port(ctx, port, &port_attr) == 0 && port_attr.state == IBV_PORT_ACTIVE;
        }
      }
      ibv_close_device(ctx);
    }
    ibv_free_device_list(devices);
    return active;
  }
};

}  // namespace

RdmaProbe* RdmaProbe::Default() {
  static VerbsProbe* probe = new VerbsProbe();
  return probe;
}

absl::StatusOr<std::string> ResolveProvider(absl::string_view configured, RdmaProbe* probe) {
  if (configured == kAuto) {
    if (probe == nullptr) probe = RdmaProbe::Default();
    return std::string(probe->HasActivePort() ? kVerbs : kTcp);
  }
  if (configured == kTcp || configured == kVerbs || configured == kShm) return std::string(configured);
  return absl::InvalidArgumentError(absl::StrCat("fabric: unknown provider \"", configured, "\" (want one of ", kAuto,
                                                 ", ", kTcp, ", ", kVerbs, ", ", kShm, ")"));
}

FabricConfig LoopbackConfig() {
  FabricConfig config;
  config.provider = kTcp;
  config.node = "127.0.0.1";
  return config;
}

void ReadFabricConfig(ConfigReader reader, FabricConfig* config) {
  reader.Enum("provider", {kAuto, kTcp, kVerbs, kShm}, &config->provider);
  reader.String("address", &config->node);
  int64_t universe = static_cast<int64_t>(config->universe_size);
  reader.Int("universe_size", &universe, 1, 1 << 20);
  config->universe_size = static_cast<size_t>(universe);
  int64_t busy_poll_us = absl::ToInt64Microseconds(config->busy_poll);
  reader.Int("busy_poll_us", &busy_poll_us, 0, 1000 * 1000);
  config->busy_poll = absl::Microseconds(busy_poll_us);
}

}  // namespace rpci::fabric
