#include "common/testing/exposition_format.h"

#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace rpci::testing {
namespace {

// The example of the official format description
// (prometheus.io/docs/instrumenting/exposition_formats), verbatim.
std::string OfficialExample() {
  std::ifstream in("common/testing/testdata/official_example.prom");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ExpositionFormatTest, AcceptsTheOfficialExample) {
  const std::string example = OfficialExample();
  ASSERT_FALSE(example.empty()) << "common/testing/testdata/official_example.prom unreadable";
  absl::StatusOr<Exposition> e = CheckExpositionFormat(example);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->types.at("http_requests_total"), "counter");
  EXPECT_EQ(e->help.at("http_requests_total"), "The total number of HTTP requests.");
  EXPECT_EQ(*e->Value("http_requests_total", {{"method", "post"}, {"code", "400"}}), 3);
  EXPECT_EQ(*e->Value("msdos_file_access_time_seconds",
                      {{"path", "C:\\DIR\\FILE.TXT"}, {"error", "Cannot find file:\n\"FILE.TXT\""}}),
            1.458255915e9);
  EXPECT_TRUE(std::isinf(*e->Value("something_weird", {{"problem", "division by zero"}})));
  EXPECT_EQ(*e->Value("http_request_duration_seconds_bucket", {{"le", "+Inf"}}), 144320);
  EXPECT_EQ(e->FamilyOf("http_request_duration_seconds_bucket"), "http_request_duration_seconds");
  EXPECT_EQ(e->FamilyOf("rpc_duration_seconds_count"), "rpc_duration_seconds");
  EXPECT_EQ(e->FamilyOf("metric_without_timestamp_and_labels"), "metric_without_timestamp_and_labels");
}

TEST(ExpositionFormatTest, AcceptsGoFloatSpellingsAndATrailingCommaInLabels) {
  EXPECT_TRUE(CheckExpositionFormat("a NaN\nb -Inf\nc 1e-3\nd{x=\"1\",} 0x1p-2\ne Nan\n").ok());
}

TEST(ExpositionFormatTest, RejectsEachBrokenRule) {
  const char* broken[] = {
      "m 1",                                         // no final newline
      "1m 1\n",                                      // bad metric name
      "m{1a=\"x\"} 1\n",                             // bad label name
      "m{__x=\"x\"} 1\n",                            // reserved label name
      "m{a=x} 1\n",                                  // unquoted label value
      "m{a=\"x} 1\n",                                // unterminated label value
      "m{a=\"\\t\"} 1\n",                            // escape the format does not have
      "m{a=\"x\",a=\"y\"} 1\n",                      // label twice
      "m{a=\"x\" b=\"y\"} 1\n",                      // missing comma
      "m one\n",                                     // bad value
      "m 1 12.5\n",                                  // bad timestamp
      "m 1 2 3\n",                                   // trailing text
      "m 1\nm 2\n",                                  // series twice
      "# TYPE m bogus\n",                            // unknown type
      "# TYPE m counter\n# TYPE m counter\n",        // TYPE twice
      "# HELP m a\n# HELP m b\n",                    // HELP twice
      "# HELP m bad \\q escape\n",                   // bad escape in HELP
      "m 1\n# TYPE m counter\n",                     // TYPE after samples
      "a 1\nb 1\na{x=\"1\"} 1\n",                    // family split in two groups
      "# TYPE h histogram\nh 1\n",                   // histogram sample without suffix
      "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",  // bucket without le
      "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  // no +Inf bucket
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",  // decreasing
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 1\n",  // count != +Inf bucket
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",           // no sum
  };
  for (const char* text : broken) {
    EXPECT_FALSE(CheckExpositionFormat(text).ok()) << text;
  }
}

TEST(ExpositionFormatTest, ErrorsNameTheLine) {
  absl::StatusOr<Exposition> e = CheckExpositionFormat("# TYPE m counter\nm 1\nm{a=x} 2\n");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(e.status().message().find("line 3"), std::string::npos) << e.status();
}

}  // namespace
}  // namespace rpci::testing
