#include "common/protobuf_log.h"

#include <memory>
#include <sstream>
#include <string>

#include <spdlog/sinks/ostream_sink.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/logging.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kiq/v1/query.pb.h"

namespace kiq {
namespace {

// A request whose proto3 string field `store` (field 1) holds a byte that is not UTF-8.
std::string InvalidUtf8GetRequest() { return std::string("\x0a\x01\xff", 3); }

TEST(ProtobufLogTest, ParseErrorsGoThroughKiqsLoggerRateLimited) {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  auto logger = std::make_shared<spdlog::logger>("protobuf-log-test", sink);
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
  spdlog::set_default_logger(logger);
  RouteProtobufLogs();

  for (int i = 0; i < 1000; ++i) {
    kiq::v1::GetRequest request;
    EXPECT_FALSE(request.ParseFromString(InvalidUtf8GetRequest()));
  }
  logger->flush();
  spdlog::set_default_logger(previous);

  int lines = 0;
  for (absl::string_view line : absl::StrSplit(out.str(), '\n', absl::SkipEmpty())) {
    ++lines;
    EXPECT_TRUE(absl::StrContains(line, "libprotobuf")) << line;
    EXPECT_TRUE(absl::StrContains(line, "invalid UTF-8")) << line;
  }
  EXPECT_GE(lines, 1);
  EXPECT_LE(lines, kProtobufLogLinesPerMinute);
}

}  // namespace
}  // namespace kiq
