#pragma once

#include <cstdarg>
#include <memory>

#include <rocksdb/env.h>

#include "common/log_limiter.h"

namespace kiq::node {

// RocksDB's info log, written through kiq's logger (`rocksdb: ...` lines, leveled) instead of a
// LOG file in the data dir. Why not the file: on a full or read-only disk its first failed
// write leaves RocksDB's file writer in error, and Debian's librocksdb 7.8 (built with
// assertions) aborts the process on the next line — typically the "Background IO error" line
// that reports the failure of a commit (`sync_without_flush_called_`), and again on the restart.
// A logger that writes no file cannot fail that way.
//
// Levels: RocksDB's WARN, ERROR and FATAL → warn (context for kiq's own error line; at most 20
// lines a minute, with the count held back), INFO and HEADER → debug (flushes, compactions,
// options, statistics), DEBUG → trace. Thread-safe (RocksDB logs from its background threads).
class RocksDbLogger : public rocksdb::Logger {
 public:
  RocksDbLogger();

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override;
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override;

 private:
  LogLimiter limiter_{20};
};

std::shared_ptr<rocksdb::Logger> NewRocksDbLogger();

}  // namespace kiq::node
