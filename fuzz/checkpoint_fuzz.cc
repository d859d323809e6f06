// The agent's session checkpoint file is read back after a restart, possibly
// truncated or edited: any bytes give records or a Status, and records that
// decode survive an encode/decode round trip unchanged.
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "session/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<std::vector<rpci::session::SessionRecord>> records = rpci::session::DecodeCheckpoint(text);
  if (!records.ok()) return 0;
  absl::StatusOr<std::vector<rpci::session::SessionRecord>> again =
      rpci::session::DecodeCheckpoint(rpci::session::EncodeCheckpoint(*records));
  if (!again.ok() || again->size() != records->size()) std::abort();
  for (size_t i = 0; i < records->size(); ++i) {
    const auto& a = (*records)[i];
    const auto& b = (*again)[i];
    if (a.session_id != b.session_id || a.key.bytes() != b.key.bytes() || a.grant_id != b.grant_id || a.device_id != b.device_id ||
        a.compute_node != b.compute_node || a.applied_seq != b.applied_seq ||
        a.completion_seq != b.completion_seq || a.opened_unix_seconds != b.opened_unix_seconds ||
        a.last_seen_unix_seconds != b.last_seen_unix_seconds || a.ever_attached != b.ever_attached) {
      std::abort();
    }
  }
  return 0;
}
