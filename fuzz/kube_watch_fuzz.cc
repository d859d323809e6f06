// What the API server streams to the controller's informers: a list
// response, then watch-event lines. The input's first line is parsed as the
// list, every further line as one event applied to the cache, as
// Informer::Run does.
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

#include "absl/strings/str_split.h"
#include "controller/kube/client.h"
#include "controller/kube/informer.h"

using nlohmann::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  size_t nl = text.find('\n');
  std::string rv;
  rpci::kube::Informer::Cache cache;
  json list = json::parse(text.substr(0, nl), nullptr, /*allow_exceptions=*/false);
  if (!list.is_discarded()) cache = rpci::kube::CacheFromList(list, &rv);
  if (nl == std::string::npos) return 0;
  for (absl::string_view line : absl::StrSplit(absl::string_view(text).substr(nl + 1), '\n')) {
    std::optional<rpci::kube::WatchEvent> event = rpci::kube::ParseWatchEvent(std::string(line));
    if (!event.has_value()) continue;
    const size_t before = cache.size();
    rpci::kube::WatchOutcome outcome = rpci::kube::ApplyWatchEvent(*event, &cache, &rv);
    if (outcome != rpci::kube::WatchOutcome::kChanged && cache.size() != before) std::abort();
  }
  return 0;
}
