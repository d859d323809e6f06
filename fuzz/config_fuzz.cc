// Config files are outside input: any bytes give a value or a Status, never a crash.
#include <cstdint>
#include <string>

#include "common/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<nlohmann::json> parsed = rpci::ParseConfigText(text, "fuzz");
  if (!parsed.ok()) return 0;
  rpci::ConfigReader reader(*parsed, "fuzz");
  std::string s;
  int64_t i = 0;
  bool b = false;
  std::vector<std::string> list;
  reader.String("name", &s);
  reader.Int("count", &i, 0, 100);
  reader.Bool("enabled", &b);
  reader.StringList("pools", &list);
  rpci::ConfigReader nested = reader.Object("fabric");
  nested.Enum("provider", {"auto", "tcp;ofi_rxm"}, &s);
  for (rpci::ConfigReader& rule : reader.ObjectList("rules")) rule.String("pool", &s);
  (void)reader.Finish();
  return 0;
}
