#include "bench/stats.h"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace rpci::bench {

void AddJsonFlag(FlagSet& flags, bool* json_only) {
  flags.Bool("json", json_only, "print only the JSON object");
}

void PrintResult(const nlohmann::json& result, bool json_only,
                 const std::function<void(const nlohmann::json&)>& table) {
  std::cout << result.dump() << "\n";
  if (!json_only) table(result);
}
namespace {

double StatusFieldMb(const char* field) {
  std::ifstream in("/proc/self/status");
  const std::string prefix = std::string(field) + ":";
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(prefix, 0) == 0) return std::strtod(line.c_str() + prefix.size(), nullptr) / 1024.0;  // kB
  }
  return 0;
}

}  // namespace

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

nlohmann::json TailSamples(const std::vector<double>& totals, const std::vector<nlohmann::json>& detail, double q) {
  const double from = Percentile(totals, q);
  std::vector<size_t> tail;
  for (size_t i = 0; i < totals.size() && i < detail.size(); ++i) {
    if (totals[i] >= from) tail.push_back(i);
  }
  std::sort(tail.begin(), tail.end(), [&](size_t a, size_t b) { return totals[a] > totals[b]; });
  nlohmann::json out = nlohmann::json::array();
  for (size_t i : tail) {
    nlohmann::json d = detail[i];
    d["ms"] = totals[i];
    d["index"] = i;
    out.push_back(std::move(d));
  }
  return out;
}

double RssMb() { return StatusFieldMb("VmRSS"); }
double PeakRssMb() { return StatusFieldMb("VmHWM"); }
double RssAnonMb() { return StatusFieldMb("RssAnon"); }
int Threads() { return static_cast<int>(StatusFieldMb("Threads") * 1024.0 + 0.5); }

nlohmann::json RunInChild(const std::function<absl::StatusOr<nlohmann::json>()>& fn, nlohmann::json incomplete,
                          int64_t max_seconds) {
  int fds[2];
  if (pipe(fds) != 0) return incomplete;
  const pid_t pid = fork();
  if (pid < 0) return incomplete;
  if (pid == 0) {
    close(fds[0]);
    absl::StatusOr<nlohmann::json> r = fn();
    nlohmann::json failed = incomplete;
    if (!r.ok()) failed["error"] = r.status().ToString();
    const std::string text = r.ok() ? r->dump() : failed.dump();
    size_t done = 0;
    while (done < text.size()) {
      ssize_t n = write(fds[1], text.data() + done, text.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    _exit(r.ok() ? 0 : 1);
  }
  close(fds[1]);
  std::string text;
  const absl::Time deadline = absl::Now() + absl::Seconds(max_seconds);
  bool timed_out = false;
  for (;;) {
    const int64_t left_ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    if (left_ms <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{fds[0], POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::min<int64_t>(left_ms, 1000))) <= 0) continue;
    char buf[65536];
    ssize_t n = read(fds[0], buf, sizeof(buf));
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  if (timed_out) {
    incomplete["error"] = absl::StrCat("did not finish within ", max_seconds, " s (killed)");
    return incomplete;
  }
  nlohmann::json out = nlohmann::json::parse(text, nullptr, false);
  return out.is_discarded() ? incomplete : out;
}

}  // namespace rpci::bench
