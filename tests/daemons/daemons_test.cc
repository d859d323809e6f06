// Each daemon as its users run it: the binary's --help and bad-flag
// behaviour, and the series its /metrics serves (names, label names, types)
// against the list recorded before metrics moved to prometheus-cpp
// (testdata/<daemon>.series), with the scrape passing the exposition-format
// check.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/testing/exposition_format.h"
#include "common/testing/temp_dir.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/harness/free_port.h"
#include "tests/harness/subprocess.h"

namespace rpci::testing {
namespace {

std::string Abs(const std::string& runfile) { return std::filesystem::absolute(runfile).string(); }


struct Exit {
  int code;
  std::string out, err;
};

Exit RunToExit(const std::vector<std::string>& argv) {
  std::string dir = MakeTempDir("cli");
  Subprocess p(argv, dir + "/out", dir + "/err");
  int code = p.Wait(absl::Seconds(20));
  return {code, p.out(), p.err()};
}

struct Cli {
  std::string name;
  std::vector<std::string> argv;  // the binary and its subcommand, if any
  std::string usage;              // the first line of its --help
  std::string a_flag;             // one flag its --help lists
};

std::vector<Cli> Clis() {
  return {
      {"controller", {Abs("controller/rpci-controller")}, "usage: rpci-controller [flags]", "--state-dir"},
      {"plugin", {Abs("plugin/rpci-plugin")}, "usage: rpci-plugin [flags]", "--plugin-dir"},
      {"agent serve", {Abs("agent/rpci-agent"), "serve"}, "usage: rpci-agent serve [flags]", "--session-listen"},
      {"agent inventory", {Abs("agent/rpci-agent"), "inventory"}, "usage: rpci-agent inventory [flags]",
       "--sysfs-root"},
  };
}

// `cli` run with one more argument, to its exit.
Exit RunWith(const Cli& cli, const std::string& arg) {
  std::vector<std::string> argv = cli.argv;
  argv.push_back(arg);
  return RunToExit(argv);
}

TEST(DaemonCliTest, HelpPrintsUsageAndEveryFlagToStdoutAndExitsZero) {
  for (const Cli& cli : Clis()) {
    Exit r = RunWith(cli, "--help");
    EXPECT_EQ(r.code, 0) << cli.name << r.err;
    EXPECT_EQ(r.out.rfind(cli.usage + "\n", 0), 0u) << cli.name << ":\n" << r.out;
    EXPECT_NE(r.out.find("\n  " + cli.a_flag + "\n"), std::string::npos) << cli.name << ":\n" << r.out;
    EXPECT_NE(r.out.find("(default "), std::string::npos) << cli.name;
    EXPECT_EQ(r.err, "") << cli.name;
  }
}

TEST(DaemonCliTest, AnUnknownFlagIsAUsageErrorNamingItOnStderrWithExitTwo) {
  for (const Cli& cli : Clis()) {
    Exit r = RunWith(cli, "--no-such-flag=1");
    EXPECT_EQ(r.code, 2) << cli.name << r.err;
    EXPECT_NE(r.err.find("--no-such-flag"), std::string::npos) << cli.name << ":\n" << r.err;
    EXPECT_NE(r.err.find(cli.usage), std::string::npos) << cli.name << ": the help follows the error";
    EXPECT_EQ(r.out, "") << cli.name;
  }
}

TEST(DaemonCliTest, AFlagMissingItsValueOrABadNumberIsAUsageError) {
  Exit missing = RunToExit({Abs("controller/rpci-controller"), "--state-dir"});
  EXPECT_EQ(missing.code, 2) << missing.err;
  EXPECT_NE(missing.err.find("--state-dir"), std::string::npos) << missing.err;
  Exit bad_number = RunToExit({Abs("plugin/rpci-plugin"), "--nic-numa-node=two"});
  EXPECT_EQ(bad_number.code, 2) << bad_number.err;
  EXPECT_NE(bad_number.err.find("--nic-numa-node"), std::string::npos) << bad_number.err;
}

TEST(DaemonCliTest, TheAgentWithoutOrWithAnUnknownSubcommandIsAUsageError) {
  Exit none = RunToExit({Abs("agent/rpci-agent")});
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("usage: rpci-agent <subcommand>"), std::string::npos) << none.err;
  Exit unknown = RunToExit({Abs("agent/rpci-agent"), "frobnicate"});
  EXPECT_EQ(unknown.code, 2);
  EXPECT_NE(unknown.err.find("\"frobnicate\""), std::string::npos) << unknown.err;
  Exit help = RunToExit({Abs("agent/rpci-agent"), "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("serve"), std::string::npos) << help.out;
}

// "<type> <name>{<label names>}" of every sample, the way the golden files
// list them.
std::set<std::string> SeriesOf(const Exposition& e) {
  std::set<std::string> out;
  for (const Sample& s : e.samples) {
    std::vector<std::string> names;
    for (const auto& [name, value] : s.labels) names.push_back(name);
    std::string family = e.FamilyOf(s.name);
    std::string type = e.types.count(family) ? e.types.at(family) : "untyped";
    out.insert(absl::StrCat(type, " ", s.name, "{", absl::StrJoin(names, ","), "}"));
  }
  return out;
}

std::set<std::string> Golden(const std::string& daemon) {
  std::ifstream in("tests/daemons/testdata/" + daemon + ".series");
  std::set<std::string> out;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty() && line[0] != '#') out.insert(line);
  }
  return out;
}

// The checked exposition at 127.0.0.1:port/metrics; a failed check or a
// failed GET fails the test.
std::optional<Exposition> Scrape(int port) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(1);
  auto r = client.Get("/metrics");
  if (!r || r->status != 200) return std::nullopt;
  EXPECT_NE(r->get_header_value("Content-Type").find("text/plain; version=0.0.4"), std::string::npos);
  absl::StatusOr<Exposition> e = CheckExpositionFormat(r->body);
  EXPECT_TRUE(e.ok()) << e.status() << "\n" << r->body;
  if (!e.ok()) return std::nullopt;
  return *e;
}

class DaemonMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("rpci-daemons", TempDirUse::kSockets);
    for (const char* d : {"controller", "agent", "kubelet", "cdi", "plugin-state"}) {
      std::filesystem::create_directories(dir_ + "/" + d);
    }
  }

  // Scrapes until the daemon serves every golden series (or 20 s pass); the
  // last scrape's series.
  std::set<std::string> ScrapeUntilGolden(int port, const std::set<std::string>& golden) {
    std::set<std::string> got;
    absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline) {
      if (std::optional<Exposition> e = Scrape(port)) {
        got = SeriesOf(*e);
        bool all = true;
        for (const std::string& g : golden) all = all && got.count(g);
        if (all) break;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    return got;
  }

  std::string dir_;
};

TEST_F(DaemonMetricsTest, EachDaemonServesTheSameSeriesAsBeforeInTheExpositionFormat) {
  const int grpc = FreeLoopbackPort(), controller_http = FreeLoopbackPort(), agent_session = FreeLoopbackPort(),
            agent_http = FreeLoopbackPort(), plugin_http = FreeLoopbackPort();
  Subprocess controller({Abs("controller/rpci-controller"), "--store=local", "--state-dir=" + dir_ + "/controller",
                         absl::StrCat("--listen=127.0.0.1:", grpc), absl::StrCat("--http-listen=127.0.0.1:", controller_http),
                         "--insecure", "--reconcile-interval-ms=100", "--log-level=warn"},
                        dir_ + "/controller.out", dir_ + "/controller.err");
  std::ofstream(dir_ + "/agent.yaml") << "node: device-0\n"
                                      << "controller: {address: \"127.0.0.1:" << grpc << "\", insecure: true}\n"
                                      << "session: {listen: \"127.0.0.1:" << agent_session
                                      << "\", state_dir: " << dir_ << "/agent}\n"
                                      << "fabric: {provider: \"tcp;ofi_rxm\", address: 127.0.0.1}\n"
                                      << "emu:\n  - {pool: emu, count: 2, dma_size: 1048576}\n"
                                      << "http: {listen: \"127.0.0.1:" << agent_http << "\"}\n";
  Subprocess agent({Abs("agent/rpci-agent"), "serve", "--config=" + dir_ + "/agent.yaml", "--log-level=warn"},
                   dir_ + "/agent.out", dir_ + "/agent.err");
  Subprocess plugin({Abs("plugin/rpci-plugin"), "--node=compute-0", absl::StrCat("--controller=127.0.0.1:", grpc),
                     "--pools=emu", "--plugin-dir=" + dir_ + "/kubelet",
                     "--pod-resources-socket=" + dir_ + "/kubelet/pod-resources.sock", "--cdi-dir=" + dir_ + "/cdi",
                     "--state-dir=" + dir_ + "/plugin-state", "--container-dir=" + dir_ + "/plugin-state",
                     absl::StrCat("--health-addr=127.0.0.1:", plugin_http), "--insecure", "--log-level=warn"},
                    dir_ + "/plugin.out", dir_ + "/plugin.err");

  for (const auto& [daemon, port] : std::vector<std::pair<std::string, int>>{
           {"agent", agent_http}, {"plugin", plugin_http}, {"controller", controller_http}}) {
    std::set<std::string> golden = Golden(daemon);
    EXPECT_FALSE(golden.empty()) << "no testdata/" << daemon << ".series";
    std::set<std::string> got = ScrapeUntilGolden(port, golden);
    if (got != golden && std::getenv("TEST_UNDECLARED_OUTPUTS_DIR") != nullptr) {
      // What the daemon served, for a reviewer to compare or adopt.
      std::ofstream(std::string(std::getenv("TEST_UNDECLARED_OUTPUTS_DIR")) + "/" + daemon + ".series")
          << absl::StrJoin(got, "\n") << "\n";
    }
    EXPECT_EQ(absl::StrJoin(got, "\n"), absl::StrJoin(golden, "\n"))
        << daemon << " logs:\n" << ReadWholeFile(dir_ + "/" + daemon + ".err");
  }
}

}  // namespace
}  // namespace rpci::testing
