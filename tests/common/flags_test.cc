#include "common/flags.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

ABSL_FLAG(int, test_port, 7, "for the test");
ABSL_FLAG(absl::Duration, test_window, absl::Seconds(1), "for the test");
ABSL_FLAG(bool, test_switch, false, "for the test");
ABSL_FLAG(std::string, test_name, "", "for the test");

namespace kiq {
namespace {

using ::kiq::testing::StatusIs;

std::vector<std::string> Args(std::vector<std::string> flags) {
  flags.insert(flags.begin(), "prog");
  return flags;
}

TEST(CheckFlagsTest, AcceptsEveryFormAbseilAccepts) {
  EXPECT_OK(CheckFlags(Args({"--test_port=8", "--test_window", "2s", "--test_switch"})));
  EXPECT_OK(CheckFlags(Args({"--notest_switch", "-test_name=x", "--test_switch=false"})));
  EXPECT_EQ(absl::GetFlag(FLAGS_test_port), 8);
  EXPECT_EQ(absl::GetFlag(FLAGS_test_window), absl::Seconds(2));
  EXPECT_OK(CheckFlags(Args({"--test_port=1", "--"})));
}

TEST(CheckFlagsTest, UnknownFlagIsNamedWithDashes) {
  EXPECT_THAT(CheckFlags(Args({"--no_such_flag=1"})),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown flag --no-such-flag"));
  EXPECT_THAT(CheckFlags(Args({"--notest_port"})),
              StatusIs(absl::StatusCode::kInvalidArgument, "unknown flag --notest-port"));
}

TEST(CheckFlagsTest, BadValueNamesTheFlagAndWhatItWants) {
  EXPECT_THAT(
      CheckFlags(Args({"--test_port=abc"})),
      StatusIs(absl::StatusCode::kInvalidArgument, "--test-port: \"abc\" is not an integer"));
  EXPECT_THAT(CheckFlags(Args({"--test_window=forever"})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--test-window: \"forever\" is not a duration such as 30s"));
  EXPECT_THAT(CheckFlags(Args({"--test_switch=maybe"})),
              StatusIs(absl::StatusCode::kInvalidArgument, "is not true or false"));
  EXPECT_THAT(CheckFlags(Args({"--test_port"})),
              StatusIs(absl::StatusCode::kInvalidArgument, "--test-port: missing value"));
}

TEST(CheckFlagsTest, OperandsAreRefused) {
  EXPECT_THAT(CheckFlags(Args({"--test_port=1", "extra"})),
              StatusIs(absl::StatusCode::kInvalidArgument, "unexpected argument \"extra\""));
  EXPECT_THAT(CheckFlags(Args({"--", "extra"})),
              StatusIs(absl::StatusCode::kInvalidArgument, "unexpected argument \"extra\""));
}

TEST(ParseLogLevelTest, KnownLevelsAndNoOther) {
  EXPECT_THAT(ParseLogLevel("--log-level", "info"),
              ::kiq::testing::IsOkAndHolds(spdlog::level::info));
  EXPECT_THAT(ParseLogLevel("--log-level", "WARN"),
              ::kiq::testing::IsOkAndHolds(spdlog::level::warn));
  EXPECT_THAT(ParseLogLevel("--log-level", "error"),
              ::kiq::testing::IsOkAndHolds(spdlog::level::err));
  EXPECT_THAT(ParseLogLevel("--log-level", "loud"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--log-level: unknown level \"loud\"; one of trace, debug, info, warn, "
                       "error, critical, off"));
}

TEST(CheckFlagRangeTest, ValuesOutsideTheBoundsNameTheFlagTheBoundsAndTheValue) {
  EXPECT_OK(CheckFlagRange("--max-json-depth", 1, 1, 1000));
  EXPECT_OK(CheckFlagRange("--max-json-depth", 1000, 1, 1000));
  EXPECT_THAT(CheckFlagRange("--max-json-depth", 0, 1, 1000),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--max-json-depth: must be between 1 and 1000, got 0"));
  EXPECT_THAT(CheckFlagRange("--max-value-bytes", int64_t{1} << 40, 1, int64_t{64} << 20),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--max-value-bytes: must be between 1 and 67108864, got 1099511627776"));
}

TEST(CheckKafkaIdTest, BrokerBoundsOnGroupInstanceIds) {
  EXPECT_OK(CheckKafkaId("--node-id", "kiq-node-0.example_1"));
  EXPECT_OK(CheckKafkaId("--node-id", std::string(249, 'n')));
  EXPECT_THAT(CheckKafkaId("--node-id", std::string(300, 'n')),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--node-id: 300 characters, over Kafka's limit of 249"));
  EXPECT_THAT(CheckKafkaId("--node-id", "a b/c"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--node-id: \"a b/c\" has \" \" at offset 1; Kafka allows only"));
}

}  // namespace
}  // namespace kiq
