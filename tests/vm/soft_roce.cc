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
    roce.owned_.Take();
  }
  for (int tries = 0; tries < 100 && !(Ready(roce.nic_[0]) && Ready(roce.nic_[1])); ++tries) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (!Ready(roce.nic_[0]) || !Ready(roce.nic_[1])) {
    return absl::DeadlineExceededError(absl::StrCat(roce.nic_[0], "/", roce.nic_[1], " not ACTIVE with a GID in 10 s"));
  }
  return roce;
}

SoftRoce::~SoftRoce() {
  if (!owned_) return;
  for (const std::string& nic : nic_) {
    if (!nic.empty()) (void)CommandOutput({"rdma", "link", "delete", nic});
  }
}

absl::StatusOr<RocePair> RocePair::Create(int subnet) {
  if (std::system("modprobe rdma_rxe") != 0) return absl::UnavailableError("modprobe rdma_rxe failed");
  RocePair p;
  p.subnet_ = subnet;
  const std::string id = absl::StrCat(getpid() % 10000);
  for (int i = 0; i < 2; ++i) {
    p.addr_[i] = absl::StrCat("10.", subnet, ".0.", i + 1);
    p.dev_[i] = absl::StrCat("rr", id, i ? "b" : "a");
    p.nic_[i] = absl::StrCat("rxr", id, i ? "b" : "a");
  }
  const std::string table[2] = {absl::StrCat(1000 + subnet), absl::StrCat(2000 + subnet)};
  std::vector<std::vector<std::string>> steps = {
      {"ip", "link", "add", p.dev_[0], "type", "veth", "peer", "name", p.dev_[1]},
      {"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.all.accept_local=1"}};
  for (int i = 0; i < 2; ++i) {
    const std::string& dev = p.dev_[i];
    const std::string& other = p.addr_[1 - i];
    steps.push_back({"ip", "addr", "add", p.addr_[i] + "/32", "dev", dev});
    steps.push_back({"sysctl", "-qw", "net.ipv4.conf." + dev + ".rp_filter=0",
                     "net.ipv4.conf." + dev + ".accept_local=1"});
    steps.push_back({"ip", "link", "set", dev, "up"});
    steps.push_back({"ip", "rule", "add", "pref", "100", "iif", dev, "lookup", "local"});
    steps.push_back({"ip", "route", "add", other, "dev", dev, "src", p.addr_[i], "table", table[i]});
    steps.push_back({"ip", "rule", "add", "pref", "200", "to", other, "lookup", table[i]});
  }
  // Local delivery only after the policy rules below (once per machine).
  absl::StatusOr<std::string> rules = CommandOutput({"ip", "rule", "show"});
  if (!rules.ok()) return rules.status();
  if (rules->find("32000:") == std::string::npos) {
    steps.insert(steps.begin() + 1, {"ip", "rule", "add", "pref", "32000", "lookup", "local"});
    steps.insert(steps.begin() + 2, {"ip", "rule", "del", "pref", "0", "lookup", "local"});
  }
  for (const auto& step : steps) {
    absl::StatusOr<std::string> out = CommandOutput(step);
    if (!out.ok()) return out.status();
    p.owned_.Take();
  }
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::string> out =
        CommandOutput({"rdma", "link", "add", p.nic_[i], "type", "rxe", "netdev", p.dev_[i]});
    if (!out.ok()) return out.status();
  }
  for (int tries = 0; tries < 100 && !(Ready(p.nic_[0]) && Ready(p.nic_[1])); ++tries) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (!Ready(p.nic_[0]) || !Ready(p.nic_[1])) {
    return absl::DeadlineExceededError(absl::StrCat(p.nic_[0], "/", p.nic_[1], " not ACTIVE with a GID in 10 s"));
  }
  // Both directions go over the link (ARP included) before anyone relies on it.
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::string> out = CommandOutput({"ping", "-c", "1", "-W", "5", "-I", p.addr_[i], p.addr_[1 - i]});
    if (!out.ok()) return out.status();
  }
  return p;
}

RocePair::~RocePair() {
  if (!owned_) return;
  for (int i = 0; i < 2; ++i) {
    (void)CommandOutput({"rdma", "link", "delete", nic_[i]});
    (void)CommandOutput({"ip", "rule", "del", "pref", "100", "iif", dev_[i], "lookup", "local"});
    (void)CommandOutput({"ip", "rule", "del", "pref", "200", "to", addr_[1 - i]});
  }
  (void)CommandOutput({"ip", "link", "delete", dev_[0]});
}

absl::Status RocePair::CutWire(absl::Duration down) {
  // One shell and one `tc -batch` each way: under TCG on a busy machine each
  // process start can take seconds, and the outage should last `down`. (`%%`:
  // printf's percent sign; no single quotes: CommandOutput quotes with them.)
  std::string cut, restore;
  for (int i = 0; i < 2; ++i) {
    cut += absl::StrCat("qdisc add dev ", dev_[i], " root netem loss 100%%\\n");
    restore += absl::StrCat("qdisc del dev ", dev_[i], " root\\n");
  }
  const std::string script =
      absl::StrCat("printf \"", cut, "\" | tc -batch - && sleep ", absl::ToDoubleSeconds(down), " && printf \"",
                   restore, "\" | tc -batch -");
  absl::StatusOr<std::string> out = CommandOutput({"sh", "-c", script});
  return out.ok() ? absl::OkStatus() : out.status();
}

}  // namespace rpci::testing
