#include "tests/harness/netns.h"

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/testing/command.h"

namespace rpci::testing {
namespace {

// Runs argv with its output captured; returns exit status and output.
int Run(const std::vector<std::string>& argv, std::string* output) {
  // Bazel's strict test environment leaves sbin (tc, iptables) off PATH.
  std::string cmd = "PATH=/usr/sbin:/usr/bin:/sbin:/bin ";
  for (const auto& a : argv) absl::StrAppend(&cmd, "'", a, "' ");
  CommandResult result = RunCommand(cmd + "2>&1");
  output->append(result.output);
  return result.exit_code;
}

std::atomic<int> counter{0};

}  // namespace

absl::Status RunCommand(const std::vector<std::string>& argv) {
  std::string output;
  int rc = Run(argv, &output);
  if (rc == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(absl::StrJoin(argv, " "), ": exit ", rc, ": ", output));
}

bool CanUseNetworkNamespaces(std::string* why_not) {
  if (geteuid() != 0) {
    *why_not = "network namespaces need root";
    return false;
  }
  std::string ns = absl::StrCat("rpci-probe-", getpid());
  absl::Status s = RunCommand({"ip", "netns", "add", ns});
  if (!s.ok()) {
    *why_not = std::string(s.message());
    return false;
  }
  (void)RunCommand({"ip", "netns", "delete", ns});
  return true;
}

absl::StatusOr<VethPair> VethPair::Create(const std::string& tag) {
  int n = counter.fetch_add(1);
  // Interface names are limited to 15 characters.
  std::string id = absl::StrCat(tag.substr(0, 6), getpid() % 100000, n);
  VethPair pair;
  // Subnet from pid and counter so parallel tests don't collide.
  int subnet = (getpid() * 7 + n) % 250 + 1;
  for (int i = 0; i < 2; ++i) {
    pair.ns_[i] = absl::StrCat("rpci-", id, i ? "b" : "a");
    pair.dev_[i] = absl::StrCat("v", id, i ? "b" : "a").substr(0, 15);
    pair.addr_[i] = absl::StrCat("10.", subnet, ".", (n % 250) + 1, ".", i + 1);
  }
  pair.owned_.Take();
  for (int i = 0; i < 2; ++i) {
    absl::Status s = RunCommand({"ip", "netns", "add", pair.ns_[i]});
    if (!s.ok()) return s;
  }
  std::vector<std::vector<std::string>> steps = {
      {"ip", "link", "add", pair.dev_[0], "netns", pair.ns_[0], "type", "veth", "peer", "name",
       pair.dev_[1], "netns", pair.ns_[1]},
  };
  for (int i = 0; i < 2; ++i) {
    steps.push_back({"ip", "-n", pair.ns_[i], "addr", "add", pair.addr_[i] + "/24", "dev", pair.dev_[i]});
    steps.push_back({"ip", "-n", pair.ns_[i], "link", "set", pair.dev_[i], "up"});
    steps.push_back({"ip", "-n", pair.ns_[i], "link", "set", "lo", "up"});
  }
  for (const auto& step : steps) {
    absl::Status s = RunCommand(step);
    if (!s.ok()) return s;
  }
  return pair;
}

VethPair::~VethPair() {
  if (!owned_) return;
  // Deleting a namespace destroys its end of the veth, and with it the peer.
  for (int i = 0; i < 2; ++i) (void)RunCommand({"ip", "netns", "delete", ns_[i]});
}

std::vector<std::string> VethPair::ExecIn(int host, const std::vector<std::string>& argv) const {
  std::vector<std::string> out = {"ip", "netns", "exec", ns_[host]};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

absl::Status VethPair::SetLinkUp(bool up) {
  for (int i = 0; i < 2; ++i) {
    absl::Status s = RunCommand({"ip", "-n", ns_[i], "link", "set", dev_[i], up ? "up" : "down"});
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::Status VethPair::SetImpairment(double loss_percent, int delay_ms) {
  for (int i = 0; i < 2; ++i) {
    // Loss: iptables' statistic match drops packets at random on input; it
    // works on kernels without sch_netem (as this project's CI machines are).
    (void)RunCommand({"ip", "netns", "exec", ns_[i], "iptables", "-F", "INPUT"});
    if (loss_percent > 0) {
      absl::Status s = RunCommand({"ip", "netns", "exec", ns_[i], "iptables", "-A", "INPUT", "-i",
                                   dev_[i], "-m", "statistic", "--mode", "random", "--probability",
                                   absl::StrCat(loss_percent / 100.0), "-j", "DROP"});
      if (!s.ok()) return s;
    }
    (void)RunCommand({"tc", "-n", ns_[i], "qdisc", "del", "dev", dev_[i], "root"});
    if (delay_ms > 0) {
      absl::Status s = RunCommand({"tc", "-n", ns_[i], "qdisc", "replace", "dev", dev_[i], "root",
                                   "netem", "delay", absl::StrCat(delay_ms, "ms")});
      if (!s.ok()) {
        return absl::UnimplementedError(absl::StrCat("delay needs tc netem: ", s.message()));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace rpci::testing
