#include "common/flags.h"

#include <sstream>

#include "gtest/gtest.h"

namespace rpci {
namespace {

TEST(FlagSetTest, ParsesAllFormsAndAppliesOnlyGivenFlags) {
  std::string root = "/sys", provider = "auto";
  bool json = false, verbose = true;
  int64_t port = 9000;
  FlagSet flags("rpci-agent inventory [flags]", "Prints the inventory.");
  flags.String("sysfs-root", &root, "sysfs root");
  flags.String("provider", &provider, "fabric provider");
  flags.Bool("json", &json, "JSON output");
  flags.Bool("verbose", &verbose, "more logs");
  flags.Int("port", &port, "port");
  auto pos = flags.Parse({"inventory", "--sysfs-root", "/tmp/sys", "--json", "--no-verbose", "--port=1"});
  ASSERT_TRUE(pos.ok()) << pos.status();
  EXPECT_EQ(*pos, std::vector<std::string>{"inventory"});
  EXPECT_EQ(root, "/sys");  // not applied yet
  flags.Apply();
  EXPECT_EQ(root, "/tmp/sys");
  EXPECT_EQ(provider, "auto");
  EXPECT_TRUE(json);
  EXPECT_FALSE(verbose);
  EXPECT_EQ(port, 1);
  EXPECT_TRUE(flags.IsSet("port"));
  EXPECT_FALSE(flags.IsSet("provider"));
}

TEST(FlagSetTest, UnknownFlagMissingValueAndBadNumberAreErrors) {
  int64_t port = 0;
  std::string s;
  FlagSet flags("x", "y");
  flags.Int("port", &port, "p");
  flags.String("name", &s, "n");
  EXPECT_EQ(flags.Parse({"--prot=1"}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(flags.Parse({"--name"}).status().message().find("--name: missing value"), std::string::npos);
  EXPECT_NE(flags.Parse({"--port=abc"}).status().message().find("expected integer"), std::string::npos);
}

TEST(FlagSetTest, HelpListsFlagsWithDefaults) {
  std::string root = "/sys";
  FlagSet flags("rpci-agent", "Agent.");
  flags.String("sysfs-root", &root, "where sysfs is");
  ASSERT_TRUE(flags.Parse({"--help"}).ok());
  EXPECT_TRUE(flags.help_requested());
  std::string help = flags.Help();
  EXPECT_NE(help.find("usage: rpci-agent"), std::string::npos);
  EXPECT_NE(help.find("--sysfs-root"), std::string::npos);
  EXPECT_NE(help.find("(default \"/sys\")"), std::string::npos);
}

TEST(FlagSetTest, ParseOrExitAppliesOrSaysHowToExit) {
  std::string name = "a";
  std::ostringstream out, err;
  FlagSet ok("x", "y");
  ok.String("name", &name, "n");
  std::vector<std::string> positional;
  EXPECT_EQ(ok.ParseOrExit({"run", "--name=b"}, out, err, &positional), std::nullopt);
  EXPECT_EQ(name, "b");
  EXPECT_EQ(positional, std::vector<std::string>{"run"});

  FlagSet help("x", "y");
  help.String("name", &name, "n");
  EXPECT_EQ(help.ParseOrExit({"--help"}, out, err), 0);
  EXPECT_NE(out.str().find("--name"), std::string::npos);

  FlagSet bad("x", "y");
  bad.String("name", &name, "n");
  EXPECT_EQ(bad.ParseOrExit({"--nmae=c"}, out, err), 2);
  EXPECT_NE(err.str().find("unknown flag --nmae"), std::string::npos);
  EXPECT_EQ(name, "b");
}

TEST(FlagSetTest, AStrayWordIsRefusedWhereTheCommandTakesFlagsOnly) {
  std::string name = "a";
  std::ostringstream out, err;
  FlagSet flags("x", "y");
  flags.String("name", &name, "n");
  EXPECT_EQ(flags.ParseOrExit({"--name=b", "extra"}, out, err), 2);
  EXPECT_NE(err.str().find("unexpected argument \"extra\""), std::string::npos);
  EXPECT_EQ(name, "a");  // nothing applied
}

TEST(FlagSetTest, ARequirementNotMetSaysItsMessageAndExitsTwo) {
  int64_t count = 1;
  std::string name;
  std::ostringstream out, err;
  FlagSet flags("x", "y");
  flags.Int("count", &count, "c");
  flags.String("name", &name, "n");
  flags.Require([&] { return count > 0; }, "--count must be positive");
  flags.Require([&] { return !name.empty(); }, "--name is required");
  EXPECT_EQ(flags.ParseOrExit({"--count=0"}, out, err), 2);
  EXPECT_EQ(err.str(), "--count must be positive\n");  // the first unmet one only
  err.str("");
  EXPECT_EQ(flags.ParseOrExit({"--count=2"}, out, err), 2);
  EXPECT_EQ(err.str(), "--name is required\n");
  EXPECT_EQ(flags.ParseOrExit({"--count=2", "--name=a"}, out, err), std::nullopt);
  EXPECT_EQ(flags.ParseOrExit({"--count=0", "--help"}, out, err), 0);  // --help is before any check
}

}  // namespace
}  // namespace rpci
