#include "common/files.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"

namespace rpci {
namespace {

constexpr size_t kBufferBytes = size_t{1} << 20;

absl::Status Errno(const std::string& what) {
  return absl::Status(errno == ENOENT ? absl::StatusCode::kNotFound : absl::StatusCode::kInternal,
                      absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("write " + path);
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// The directory holding `path` ("." for a bare name).
std::string DirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

absl::Status SyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open directory " + dir);
  int rc = ::fsync(fd);
  absl::Status s = rc == 0 ? absl::OkStatus() : Errno("sync directory " + dir);
  ::close(fd);
  return s;
}

// Fills the open `tmp` (group, mode, contents, fsync); the bytes written.
absl::StatusOr<size_t> Fill(int fd, const std::string& tmp, const std::function<void(BufferedFileWriter&)>& produce,
                            int mode, int gid) {
  if (gid >= 0 && ::fchown(fd, static_cast<uid_t>(-1), static_cast<gid_t>(gid)) != 0) {
    return Errno(absl::StrCat("give ", tmp, " to group ", gid));
  }
  ::fchmod(fd, mode);  // O_CREAT's mode is filtered by the umask
  BufferedFileWriter writer(fd, tmp);
  produce(writer);
  if (absl::Status s = writer.Flush(); !s.ok()) return s;
  if (::fsync(fd) != 0) return Errno("sync " + tmp);
  return writer.written();
}

}  // namespace

BufferedFileWriter::BufferedFileWriter(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

void BufferedFileWriter::Add(absl::string_view text) {
  if (!status_.ok()) return;
  written_ += text.size();
  if (buf_.empty() && text.size() >= kBufferBytes) {  // no copy of a large piece
    status_ = WriteAll(fd_, text, path_);
    return;
  }
  buf_.append(text.data(), text.size());
  if (buf_.size() >= kBufferBytes) Flush().IgnoreError();
}

absl::Status BufferedFileWriter::Flush() {
  if (status_.ok()) status_ = WriteAll(fd_, buf_, path_);
  buf_.clear();
  return status_;
}

absl::StatusOr<size_t> WriteFileAtomically(const std::string& path,
                                           const std::function<void(BufferedFileWriter&)>& produce, int mode,
                                           int gid) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return Errno("create " + tmp);
  absl::StatusOr<size_t> written = Fill(fd, tmp, produce, mode, gid);
  if (::close(fd) != 0 && written.ok()) written = Errno("close " + tmp);
  if (written.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) written = Errno("rename " + tmp + " to " + path);
  if (!written.ok()) {
    ::unlink(tmp.c_str());
    return written;
  }
  if (absl::Status s = SyncDirectory(DirectoryOf(path)); !s.ok()) return s;
  return written;
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents, int mode, int gid) {
  return WriteFileAtomically(
             path, [&contents](BufferedFileWriter& w) { w.Add(contents); }, mode, gid)
      .status();
}

}  // namespace rpci
