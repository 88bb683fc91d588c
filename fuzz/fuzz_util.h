#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

#include <google/protobuf/stubs/logging.h>

#include "common/logging.h"

// Helpers shared by the fuzz targets (fuzz/README in the top-level README, "Fuzzing").
namespace kiq::fuzz {

// A property every input must keep: reported as a crash, so libFuzzer saves the input.
#define KIQ_FUZZ_CHECK(cond)                                                             \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

// Silences kiq's and protobuf's logs (protobuf logs an ERROR for every string field that is not
// UTF-8 it parses, which would drown libFuzzer's output and slow it down).
inline void DropProtobufLog(google::protobuf::LogLevel, const char*, int, const std::string&) {}
inline void QuietLogs() {
  spdlog::set_level(spdlog::level::off);
  google::protobuf::SetLogHandler(&DropProtobufLog);
}

}  // namespace kiq::fuzz
