#include "controller/local_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/files.h"
#include "common/log.h"
#include "controller/crd_codec.h"

namespace rpci::controller {
namespace {

using nlohmann::json;

absl::Status ErrnoError(const std::string& what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::StatusOr<std::string> ReadFileIfExists(const std::string& path, bool* exists) {
  std::ifstream in(path, std::ios::binary);
  *exists = in.good();
  if (!*exists) return std::string();
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return absl::UnavailableError("read " + path);
  return out.str();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LocalStore>> LocalStore::Open(const std::string& dir, const Clock* clock,
                                                              size_t min_compact_bytes) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return ErrnoError("create state dir " + dir);
  const std::string lock_path = dir + "/lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) return ErrnoError("open " + lock_path);
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(lock_fd);
    return absl::FailedPreconditionError(absl::StrCat("state dir ", dir, " is in use by another controller"));
  }
  std::unique_ptr<LocalStore> store(new LocalStore(dir, clock, lock_fd, min_compact_bytes));
  if (absl::Status s = store->Replay(); !s.ok()) return s;
  return store;
}

LocalStore::LocalStore(std::string dir, const Clock* clock, int lock_fd, size_t min_compact_bytes)
    : dir_(std::move(dir)), clock_(clock), lock_fd_(lock_fd), min_compact_bytes_(min_compact_bytes) {}

LocalStore::~LocalStore() {
  std::lock_guard<std::mutex> lock(mu_);
  if (journal_fd_ >= 0) ::close(journal_fd_);
  ::close(lock_fd_);
}

absl::Status LocalStore::Replay() {
  std::lock_guard<std::mutex> lock(mu_);
  const std::string snap_path = dir_ + "/state.json";
  bool exists = false;
  absl::StatusOr<std::string> snap = ReadFileIfExists(snap_path, &exists);
  if (!snap.ok()) return snap.status();
  if (exists) {
    if (!Apply(*snap)) return absl::DataLossError(absl::StrCat(snap_path, ": not a JSON object"));
    snapshot_bytes_ = snap->size();
    snap->clear();
    snap->shrink_to_fit();
  }
  const std::string journal_path = dir_ + "/journal.jsonl";
  absl::StatusOr<std::string> journal = ReadFileIfExists(journal_path, &exists);
  if (!journal.ok()) return journal.status();
  std::vector<absl::string_view> lines = absl::StrSplit(*journal, '\n');
  size_t good_bytes = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].empty()) continue;
    const bool last = i + 1 == lines.size() || (i + 2 == lines.size() && lines[i + 1].empty());
    const bool complete = i + 1 < lines.size();  // followed by a newline
    if (!complete || !Apply(lines[i])) {
      if (last) {
        Logger("controller").Warn("ignoring torn journal tail", {{"file", journal_path}, {"line", i + 1}});
        break;
      }
      return absl::DataLossError(absl::StrCat(journal_path, ":", i + 1, ": not a JSON object"));
    }
    good_bytes += lines[i].size() + 1;
  }
  journal_fd_ = ::open(journal_path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (journal_fd_ < 0) return ErrnoError("open " + journal_path);
  // Cut a torn tail so the next append starts on a line of its own.
  if (::ftruncate(journal_fd_, static_cast<off_t>(good_bytes)) != 0) return ErrnoError("truncate " + journal_path);
  if (::lseek(journal_fd_, 0, SEEK_END) < 0) return ErrnoError("seek " + journal_path);
  journal_bytes_ = good_bytes;
  return absl::OkStatus();
}

bool LocalStore::Apply(absl::string_view text) {
  // Parsed element by element: each object of the top level's arrays is
  // kept as its text and dropped from the document at once, so a snapshot of
  // 100k objects is never one DOM (~10 KB per object). Applied only once the
  // whole text parsed.
  struct Change {
    std::string array;  // the top-level key
    std::string name;   // metadata.name, or the deleted key
    std::string text;   // the object, for puts
  };
  std::vector<Change> changes;
  std::string array;
  auto keep = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key) array = parsed.get<std::string>();
    if (depth != 2) return true;
    if (event == json::parse_event_t::object_end) {
      const json& meta = parsed.value("metadata", json::object());
      const json name = meta.is_object() ? meta.value("name", json()) : json();
      changes.push_back(Change{array, name.is_string() ? name.get<std::string>() : "", parsed.dump()});
      return false;
    }
    if (event == json::parse_event_t::value && parsed.is_string()) {
      changes.push_back(Change{array, parsed.get<std::string>(), ""});
      return false;
    }
    return event != json::parse_event_t::value;  // nothing else belongs in the arrays
  };
  const json top = json::parse(text.begin(), text.end(), keep, false);
  if (top.is_discarded() || !top.is_object()) return false;
  for (Change& c : changes) {
    // A snapshot's "devices" and "attachments" are puts, like a journal
    // line's; puts take objects (a text), deletes names (no text).
    const bool put = !c.text.empty();
    if (put && (c.array == "put_devices" || c.array == "devices")) {
      devices_[c.name] = std::move(c.text);
    } else if (!put && c.array == "delete_devices") {
      devices_.erase(c.name);
    } else if (put && (c.array == "put_attachments" || c.array == "attachments")) {
      attachments_[c.name] = std::move(c.text);
    } else if (!put && c.array == "delete_attachments") {
      // Journals of earlier versions name "<namespace>/<grant id>".
      attachments_.erase(c.name.substr(c.name.find('/') + 1));
    }
  }
  return true;
}

absl::StatusOr<StoreSnapshot> LocalStore::Load() {
  std::lock_guard<std::mutex> lock(mu_);
  StoreSnapshot snap;
  snap.devices.reserve(devices_.size());
  snap.attachments.reserve(attachments_.size());
  Logger log("controller");
  for (const auto& [name, text] : devices_) {
    absl::StatusOr<Device> d = DeviceFromObject(json::parse(text, nullptr, false));
    if (!d.ok()) {
      log.Error("skipping undecodable PcieDevice", {{"name", name}, {"error", d.status().ToString()}});
      continue;
    }
    snap.devices.push_back(*std::move(d));
  }
  for (const auto& [key, text] : attachments_) {
    const json o = json::parse(text, nullptr, false);
    absl::StatusOr<Attachment> a = AttachmentFromObject(o);
    if (!a.ok()) {
      log.Error("skipping undecodable DeviceAttachment", {{"name", key}, {"error", a.status().ToString()}});
      continue;
    }
    if (auto secret = o.find("grantSecret"); secret != o.end()) {
      absl::StatusOr<std::string> token = TokenFromGrantSecret(*secret);
      if (!token.ok()) {
        log.Error("skipping DeviceAttachment with a bad grant secret", {{"name", key}, {"error", token.status().ToString()}});
        continue;
      }
      a->token = *token;
    }
    snap.attachments.push_back(*std::move(a));
  }
  return snap;
}

CommitOutcome LocalStore::Commit(const StoreBatch& batch) {
  CommitOutcome outcome;
  absl::Status s = Write(batch);
  if (s.ok()) return outcome;
  // One journal line: all or nothing.
  for (const Device& d : batch.put_devices) outcome.failed[DeviceStoreKey(d.id())] = s;
  for (const std::string& id : batch.delete_devices) outcome.failed[DeviceStoreKey(id)] = s;
  for (const Attachment& a : batch.put_attachments) outcome.failed[AttachmentStoreKey(a.grant_id)] = s;
  for (const Attachment& a : batch.delete_attachments) outcome.failed[AttachmentStoreKey(a.grant_id)] = s;
  return outcome;
}

absl::Status LocalStore::Write(const StoreBatch& batch) {
  if (batch.empty()) return absl::OkStatus();
  const absl::Time now = clock_->Now();
  // Every object is encoded once, to the text the maps keep; the journal
  // line is those texts joined (keys in json::dump()'s sorted order).
  std::vector<std::pair<std::string, std::string>> devices, attachments;
  devices.reserve(batch.put_devices.size());
  for (const Device& d : batch.put_devices) devices.emplace_back(d.id(), DeviceToText(d, now));
  for (const Attachment& a : batch.put_attachments) {
    // The state directory is the controller's alone (0700): the grant
    // token's Secret is kept next to its attachment.
    json o = AttachmentToObject(a, "");
    o["grantSecret"] = GrantSecretToObject(a, "");
    attachments.emplace_back(a.grant_id, o.dump());
  }
  json adel = json::array();
  for (const Attachment& a : batch.delete_attachments) adel.push_back(a.grant_id);
  auto add_all = [](BufferedFileWriter& w, const std::vector<std::pair<std::string, std::string>>& objects) {
    w.Add("[");
    for (size_t i = 0; i < objects.size(); ++i) {
      if (i > 0) w.Add(",");
      w.Add(objects[i].second);
    }
    w.Add("]");
  };

  std::lock_guard<std::mutex> lock(mu_);
  const std::string journal_path = dir_ + "/journal.jsonl";
  BufferedFileWriter w(journal_fd_, journal_path);
  w.Add(absl::StrCat("{\"delete_attachments\":", adel.dump(), ",\"delete_devices\":",
                     json(batch.delete_devices).dump(), ",\"put_attachments\":"));
  add_all(w, attachments);
  w.Add(",\"put_devices\":");
  add_all(w, devices);
  w.Add("}\n");
  if (absl::Status s = w.Flush(); !s.ok()) return absl::UnavailableError(s.message());
  if (::fdatasync(journal_fd_) != 0) return ErrnoError("fsync " + journal_path);
  journal_bytes_ += w.written();
  for (auto& [name, o] : devices) devices_[name] = std::move(o);
  for (const std::string& name : batch.delete_devices) devices_.erase(name);
  for (auto& [key, o] : attachments) attachments_[key] = std::move(o);
  for (const Attachment& a : batch.delete_attachments) attachments_.erase(a.grant_id);
  if (journal_bytes_ > std::max(min_compact_bytes_, snapshot_bytes_)) return WriteSnapshot();
  return absl::OkStatus();
}

// The same text as json{{"attachments", [...]}, {"devices", [...]}}.dump(),
// written object by object instead of copying every object into one document.
void LocalStore::WriteSnapshotText(BufferedFileWriter& w) const {
  auto add = [&w](absl::string_view text) { w.Add(text); };
  add("{\"attachments\":[");
  const char* sep = "";
  for (const auto& [key, o] : attachments_) {
    add(sep);
    add(o);
    sep = ",";
  }
  add("],\"devices\":[");
  sep = "";
  for (const auto& [name, o] : devices_) {
    add(sep);
    add(o);
    sep = ",";
  }
  add("]}");
}

absl::Status LocalStore::WriteSnapshot() {
  absl::StatusOr<size_t> written =
      WriteFileAtomically(dir_ + "/state.json", [this](BufferedFileWriter& w) { WriteSnapshotText(w); }, 0600);
  if (!written.ok()) return absl::UnavailableError(written.status().message());
  // The snapshot now holds everything; an old journal replayed over it would
  // be harmless (puts and deletes are absolute), so emptying it last is safe.
  if (::ftruncate(journal_fd_, 0) != 0) return ErrnoError("truncate journal in " + dir_);
  if (::lseek(journal_fd_, 0, SEEK_SET) < 0) return ErrnoError("seek journal in " + dir_);
  if (::fsync(journal_fd_) != 0) return ErrnoError("fsync journal in " + dir_);
  journal_bytes_ = 0;
  snapshot_bytes_ = *written;
  return absl::OkStatus();
}

size_t LocalStore::journal_bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  return journal_bytes_;
}

}  // namespace rpci::controller
