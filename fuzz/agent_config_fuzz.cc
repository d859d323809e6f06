// The agent's config file (YAML or JSON): any bytes give options or a Status
// naming the bad keys, and the cross-field validation never crashes.
#include <cstdint>
#include <string>

#include "agent/app/agent_config.h"
#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  absl::StatusOr<nlohmann::json> parsed =
      rpci::ParseConfigText(std::string(reinterpret_cast<const char*>(data), size), "agent.yaml");
  if (!parsed.ok()) return 0;
  rpci::agent::AgentOptions options;
  if (!rpci::agent::ReadAgentConfig(*parsed, "agent.yaml", &options).ok()) return 0;
  (void)rpci::agent::ValidateAgentOptions(options);
  return 0;
}
