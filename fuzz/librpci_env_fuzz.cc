// The environment the device plugin gives a workload (RPCI_DEVICE_COUNT,
// RPCI_<i>_SESSION_ID, ...), as librpci reads it. The input is NAME=value
// lines; a line "KEY=<text>" gives the contents of the session key file
// every *_SESSION_KEY_FILE variable then names.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/testing/temp_dir.h"
#include "librpci/device.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string key_file = rpci::testing::MakeTempDir("rpci-env-fuzz") + "/key";
  std::map<std::string, std::string> vars;
  std::string key_text;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(reinterpret_cast<const char*>(data), size), '\n')) {
    size_t eq = line.find('=');
    if (eq == absl::string_view::npos) continue;
    std::string name(line.substr(0, eq));
    std::string value(line.substr(eq + 1));
    if (name == "KEY") {
      key_text = value;
    } else {
      if (absl::EndsWith(name, "_SESSION_KEY_FILE")) value = key_file;
      vars[name] = value;
    }
  }
  std::ofstream(key_file, std::ios::binary | std::ios::trunc) << key_text;
  rpci::lib::EnvLookup env = rpci::lib::MapEnv(vars);
  absl::StatusOr<int> count = rpci::lib::DeviceCountFromEnv(env);
  int n = count.ok() ? std::min(*count, 4) : 1;
  for (int i = -1; i < n; ++i) (void)rpci::lib::ConfigFromEnv(i, env);
  return 0;
}
