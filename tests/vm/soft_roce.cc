#include "tests/vm/soft_roce.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace rpci::testing {
namespace {

std::string ReadAttr(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return std::string(absl::StripTrailingAsciiWhitespace(text.str()));
}

// Port 1 ACTIVE and an IPv4-mapped GID (::ffff:a.b.c.d) present.
bool Ready(const std::string& nic) {
  const std::string port = "/sys/class/infiniband/" + nic + "/ports/1/";
  if (ReadAttr(port + "state") != "4: ACTIVE") return false;
  for (int i = 0; i < 8; ++i) {
    if (ReadAttr(absl::StrCat(port, "gids/", i)).rfind("0000:0000:0000:0000:0000:ffff:", 0) == 0) return true;
  }
  return false;
}

}  // namespace

absl::StatusOr<std::string> CommandOutput(const std::vector<std::string>& argv) {
  char out_tmpl[] = "/tmp/rpci-cmd-out-XXXXXX", err_tmpl[] = "/tmp/rpci-cmd-err-XXXXXX";
  int out_fd = mkstemp(out_tmpl), err_fd = mkstemp(err_tmpl);
  if (out_fd < 0 || err_fd < 0) return absl::InternalError("mkstemp failed");
  close(out_fd);
  close(err_fd);
  std::string cmd;
  for (const std::string& a : argv) absl::StrAppend(&cmd, "'", a, "' ");
  absl::StrAppend(&cmd, ">", out_tmpl, " 2>", err_tmpl);
  const int rc = std::system(cmd.c_str());
  std::string out = ReadAttr(out_tmpl) + "\n", err = ReadAttr(err_tmpl);
  unlink(out_tmpl);
  unlink(err_tmpl);
  if (rc != 0) return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), ": exit ", rc, ": ", err));
  return out;
}

absl::StatusOr<SoftRoce> SoftRoce::Create(const VethPair& pair, const std::string& tag) {
  if (std::system("modprobe rdma_rxe") != 0) return absl::UnavailableError("modprobe rdma_rxe failed");
  SoftRoce roce;
  for (int i = 0; i < 2; ++i) {
    roce.nic_[i] = absl::StrCat("rxe", tag, getpid() % 100000, i ? "b" : "a");
    const std::string& ns = i ? pair.ns_b() : pair.ns_a();
    absl::StatusOr<std::string> out = CommandOutput(
        {"ip", "netns", "exec", ns, "rdma", "link", "add", roce.nic_[i], "type", "rxe", "netdev", pair.dev(i)});
    if (!out.ok()) return out.status();
    roce.owned_ = true;
  }
  for (int tries = 0; tries < 100 && !(Ready(roce.nic_[0]) && Ready(roce.nic_[1])); ++tries) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (!Ready(roce.nic_[0]) || !Ready(roce.nic_[1])) {
    return absl::DeadlineExceededError(absl::StrCat(roce.nic_[0], "/", roce.nic_[1], " not ACTIVE with a GID in 10 s"));
  }
  return roce;
}

SoftRoce::SoftRoce(SoftRoce&& other) noexcept {
  for (int i = 0; i < 2; ++i) nic_[i] = std::move(other.nic_[i]);
  owned_ = other.owned_;
  other.owned_ = false;
}

SoftRoce::~SoftRoce() {
  if (!owned_) return;
  for (const std::string& nic : nic_) {
    if (!nic.empty()) (void)CommandOutput({"rdma", "link", "delete", nic});
  }
}

}  // namespace rpci::testing
