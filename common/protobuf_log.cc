#include "common/protobuf_log.h"

#include <cstdint>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "common/log_limiter.h"
#include "common/logging.h"

namespace kiq {
namespace {

void ProtobufLogHandler(google::protobuf::LogLevel level, const char* filename, int line,
                        const std::string& message) {
  static LogLimiter* const limiter = new LogLimiter(kProtobufLogLinesPerMinute);
  int64_t suppressed = 0;
  // FATAL aborts right after: never held back.
  if (level != google::protobuf::LOGLEVEL_FATAL && !limiter->Allow(&suppressed)) return;
  spdlog::level::level_enum spd = spdlog::level::info;
  switch (level) {
    case google::protobuf::LOGLEVEL_INFO:
      spd = spdlog::level::info;
      break;
    case google::protobuf::LOGLEVEL_WARNING:
      spd = spdlog::level::warn;
      break;
    case google::protobuf::LOGLEVEL_ERROR:
      spd = spdlog::level::err;
      break;
    case google::protobuf::LOGLEVEL_FATAL:
      spd = spdlog::level::critical;
      break;
  }
  if (suppressed > 0) {
    spdlog::log(spd, "libprotobuf {}:{}: {} ({} similar lines held back)", filename, line, message,
                suppressed);
  } else {
    spdlog::log(spd, "libprotobuf {}:{}: {}", filename, line, message);
  }
}

}  // namespace

void RouteProtobufLogs() { google::protobuf::SetLogHandler(&ProtobufLogHandler); }

}  // namespace kiq
