#include "session/checkpoint.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_format.h"
#include "common/files.h"
#include "nlohmann/json.hpp"

namespace rpci::session {
namespace {

using nlohmann::json;

absl::Status Bad(size_t i, const std::string& why) {
  return absl::DataLossError(absl::StrFormat("checkpoint: session %u: %s", i, why));
}

}  // namespace

std::string EncodeCheckpoint(absl::Span<const SessionRecord> records) {
  json sessions = json::array();
  for (const SessionRecord& r : records) {
    sessions.push_back({{"session_id", r.session_id.ToString()},
                        {"key", r.key.Hex()},
                        {"grant_id", r.grant_id},
                        {"device_id", r.device_id},
                        {"compute_node", r.compute_node},
                        {"applied_seq", r.applied_seq},
                        {"completion_seq", r.completion_seq},
                        {"opened_unix_seconds", r.opened_unix_seconds},
                        {"last_seen_unix_seconds", r.last_seen_unix_seconds},
                        {"ever_attached", r.ever_attached}});
  }
  json doc = {{"format", kCheckpointFormat}, {"sessions", sessions}};
  return doc.dump(2) + "\n";
}

absl::StatusOr<std::vector<SessionRecord>> DecodeCheckpoint(std::string_view text) {
  json doc = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) return absl::DataLossError("checkpoint: not a JSON object");
  auto format = doc.find("format");
  if (format == doc.end() || !format->is_number_integer() ||
      (format->get<int64_t>() != 1 && format->get<int64_t>() != kCheckpointFormat)) {
    return absl::DataLossError(absl::StrFormat("checkpoint: format is not 1 or %d", kCheckpointFormat));
  }
  const bool has_ever_attached = format->get<int64_t>() >= 2;
  auto sessions = doc.find("sessions");
  if (sessions == doc.end() || !sessions->is_array()) return absl::DataLossError("checkpoint: no sessions array");
  std::vector<SessionRecord> out;
  std::set<SessionId> seen;
  for (size_t i = 0; i < sessions->size(); ++i) {
    const json& s = (*sessions)[i];
    if (!s.is_object()) return Bad(i, "not an object");
    auto str = [&](const char* name, std::string* v) -> absl::Status {
      auto it = s.find(name);
      if (it == s.end() || !it->is_string()) return Bad(i, absl::StrFormat("%s missing or not a string", name));
      *v = it->get<std::string>();
      return absl::OkStatus();
    };
    auto u64 = [&](const char* name, uint64_t* v) -> absl::Status {
      auto it = s.find(name);
      if (it == s.end() || !it->is_number_unsigned()) {
        return Bad(i, absl::StrFormat("%s missing or not a non-negative integer", name));
      }
      *v = it->get<uint64_t>();
      return absl::OkStatus();
    };
    auto i64 = [&](const char* name, int64_t* v) -> absl::Status {
      auto it = s.find(name);
      if (it == s.end() || !it->is_number_integer()) return Bad(i, absl::StrFormat("%s missing or not an integer", name));
      *v = it->get<int64_t>();
      return absl::OkStatus();
    };
    auto flag = [&](const char* name, bool* v) -> absl::Status {
      auto it = s.find(name);
      if (it == s.end() || !it->is_boolean()) return Bad(i, absl::StrFormat("%s missing or not a boolean", name));
      *v = it->get<bool>();
      return absl::OkStatus();
    };
    SessionRecord r;
    std::string id, key;
    for (absl::Status st : {str("session_id", &id), str("key", &key), str("grant_id", &r.grant_id),
                            str("device_id", &r.device_id), str("compute_node", &r.compute_node),
                            u64("applied_seq", &r.applied_seq), u64("completion_seq", &r.completion_seq),
                            i64("opened_unix_seconds", &r.opened_unix_seconds),
                            i64("last_seen_unix_seconds", &r.last_seen_unix_seconds),
                            has_ever_attached ? flag("ever_attached", &r.ever_attached) : absl::OkStatus()}) {
      if (!st.ok()) return st;
    }
    absl::StatusOr<SessionId> parsed_id = SessionId::Parse(id);
    if (!parsed_id.ok()) return Bad(i, std::string(parsed_id.status().message()));
    r.session_id = *parsed_id;
    absl::StatusOr<SessionKey> parsed_key = SessionKey::FromHex(key);
    if (!parsed_key.ok()) return Bad(i, std::string(parsed_key.status().message()));
    r.key = *parsed_key;
    if (!seen.insert(r.session_id).second) return Bad(i, "duplicate session id " + id);
    out.push_back(std::move(r));
  }
  return out;
}

absl::Status WriteCheckpoint(const std::string& path, absl::Span<const SessionRecord> records) {
  if (absl::Status s = WriteFileAtomically(path, EncodeCheckpoint(records), 0600); !s.ok()) {
    return absl::UnavailableError(absl::StrFormat("checkpoint %s: %s", path, s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SessionRecord>> ReadCheckpoint(const std::string& path) {
  if (::access(path.c_str(), F_OK) != 0 && errno == ENOENT) return std::vector<SessionRecord>{};
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::UnavailableError(absl::StrFormat("checkpoint %s: open: %s", path, std::strerror(errno)));
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<std::vector<SessionRecord>> records = DecodeCheckpoint(buf.str());
  if (!records.ok()) {
    return absl::DataLossError(absl::StrFormat("%s: %s", path, records.status().message()));
  }
  return records;
}

}  // namespace rpci::session
