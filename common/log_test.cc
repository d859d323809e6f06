#include "common/log.h"

#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace rpci {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { Logger::SetSink(&out_); }
  void TearDown() override {
    Logger::SetSink(&std::cerr);
    Logger::SetMinLevel(LogLevel::kInfo);
  }
  std::ostringstream out_;
};

TEST_F(LogTest, WritesOneJsonObjectPerLineWithComponentAndContext) {
  Logger log = Logger("agent").With("session", "s-1");
  log.Info("opened", {{"device", "0000:3b:00.0"}, {"bytes", 4096}});
  log.Warn("second");
  std::istringstream lines(out_.str());
  std::string first, second, extra;
  ASSERT_TRUE(std::getline(lines, first));
  ASSERT_TRUE(std::getline(lines, second));
  EXPECT_FALSE(std::getline(lines, extra));
  nlohmann::json j = nlohmann::json::parse(first);
  EXPECT_EQ(j["component"], "agent");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["msg"], "opened");
  EXPECT_EQ(j["session"], "s-1");
  EXPECT_EQ(j["device"], "0000:3b:00.0");
  EXPECT_EQ(j["bytes"], 4096);
  EXPECT_TRUE(j["time"].get<std::string>().find('T') != std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(second)["level"], "warn");
}

TEST_F(LogTest, DropsLinesBelowMinimumLevel) {
  Logger::SetMinLevel(LogLevel::kWarn);
  Logger("x").Info("hidden");
  Logger("x").Error("shown");
  EXPECT_EQ(out_.str().find("hidden"), std::string::npos);
  EXPECT_NE(out_.str().find("shown"), std::string::npos);
}

TEST_F(LogTest, EachLevelPrintsTheNameThatParsesBackToIt) {
  Logger::SetMinLevel(LogLevel::kDebug);
  for (LogLevel level : {LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn, LogLevel::kError}) {
    out_.str("");
    Logger("x").Log(level, "m", {});
    const std::string name = nlohmann::json::parse(out_.str())["level"].get<std::string>();
    LogLevel parsed = level == LogLevel::kDebug ? LogLevel::kError : LogLevel::kDebug;
    ASSERT_TRUE(ParseLogLevel(name, &parsed)) << name;
    EXPECT_EQ(parsed, level) << name;
  }
}

TEST_F(LogTest, InvalidUtf8InFieldsIsReplacedNotThrown) {
  Logger("agent").Info("read", {{"raw", std::string("\xff\xfe ok")}});
  nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_NE(j["raw"].get<std::string>().find("ok"), std::string::npos);
}

TEST_F(LogTest, SetMinLogLevelByNameRejectsUnknownNames) {
  ASSERT_TRUE(SetMinLogLevel("error").ok());
  Logger("x").Warn("hidden");
  EXPECT_TRUE(out_.str().empty());
  absl::Status s = SetMinLogLevel("loud");
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("\"loud\""), std::string::npos);
}

TEST(LogLimiterTest, LetsOneLineThroughPerIntervalAndCountsTheRest) {
  LogLimiter limiter(absl::Seconds(1));
  const absl::Time t0 = absl::FromUnixSeconds(1700000000);
  uint64_t suppressed = 99;
  ASSERT_TRUE(limiter.Allow(t0, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  for (int i = 0; i < 1000; ++i) EXPECT_FALSE(limiter.Allow(t0 + absl::Milliseconds(i % 999), &suppressed));
  ASSERT_TRUE(limiter.Allow(t0 + absl::Seconds(1), &suppressed));
  EXPECT_EQ(suppressed, 1000u);
  EXPECT_FALSE(limiter.Allow(t0 + absl::Milliseconds(1500), &suppressed));
  ASSERT_TRUE(limiter.Allow(t0 + absl::Seconds(5), &suppressed));
  EXPECT_EQ(suppressed, 1u);
}

TEST(ParseLogLevelTest, AcceptsKnownNamesOnly) {
  LogLevel level;
  EXPECT_TRUE(ParseLogLevel("debug", &level));
  EXPECT_EQ(level, LogLevel::kDebug);
  EXPECT_FALSE(ParseLogLevel("verbose", &level));
}

}  // namespace
}  // namespace rpci
