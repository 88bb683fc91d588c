#include "node/store/rocksdb_logger.h"

#include <cstdio>
#include <string>

#include "common/logging.h"

namespace kiq::node {
namespace {

spdlog::level::level_enum ToSpdlog(rocksdb::InfoLogLevel level) {
  switch (level) {
    case rocksdb::InfoLogLevel::DEBUG_LEVEL:
      return spdlog::level::trace;
    case rocksdb::InfoLogLevel::INFO_LEVEL:
    case rocksdb::InfoLogLevel::HEADER_LEVEL:
      return spdlog::level::debug;
    default:  // WARN_LEVEL, ERROR_LEVEL, FATAL_LEVEL
      // Context for kiq's own error line, which says what failed and what happens next (on a
      // full disk RocksDB repeats "Cannot clear hard error" every 5 s).
      return spdlog::level::warn;
  }
}

}  // namespace

// Every level reaches Logv(level, ...), which decides for itself what to drop.
RocksDbLogger::RocksDbLogger() : rocksdb::Logger(rocksdb::InfoLogLevel::DEBUG_LEVEL) {}

void RocksDbLogger::Logv(const char* format, va_list ap) {
  Logv(rocksdb::InfoLogLevel::INFO_LEVEL, format, ap);
}

void RocksDbLogger::Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) {
  const spdlog::level::level_enum to = ToSpdlog(level);
  if (!spdlog::should_log(to)) return;
  int64_t suppressed = 0;
  if (to >= spdlog::level::warn && !limiter_.Allow(&suppressed)) return;
  char buf[1024];
  va_list copy;
  va_copy(copy, ap);
  const int n = std::vsnprintf(buf, sizeof(buf), format, copy);
  va_end(copy);
  if (n < 0) return;
  std::string line(buf, std::min(static_cast<size_t>(n), sizeof(buf) - 1));
  while (!line.empty() && line.back() == '\n') line.pop_back();
  if (suppressed > 0) {
    spdlog::log(to, "rocksdb: {} ({} similar suppressed)", line, suppressed);
  } else {
    spdlog::log(to, "rocksdb: {}", line);
  }
}

std::shared_ptr<rocksdb::Logger> NewRocksDbLogger() { return std::make_shared<RocksDbLogger>(); }

}  // namespace kiq::node
