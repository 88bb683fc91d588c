#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <spdlog/common.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiq {

// Checks a command line against the abseil flags linked into the binary before
// absl::ParseCommandLine sees it: abseil exits 1 on an unknown flag or a bad value, and kiq's
// binaries promise 2 for a bad command line. `args` are as NormalizeFlagNames returns them
// (args[0] is the program). INVALID_ARGUMENT naming the flag (with dashes) and the reason:
// unknown flag, missing or bad value, or an operand (the binaries take none). Valid values are
// set on the flags already (ParseCommandLine then sets them again).
absl::Status CheckFlags(const std::vector<std::string>& args);

// The spdlog level `name` (trace, debug, info, warn, error, critical, off); INVALID_ARGUMENT
// naming `flag` and the valid names otherwise (spdlog maps an unknown name to off).
absl::StatusOr<spdlog::level::level_enum> ParseLogLevel(absl::string_view flag,
                                                        absl::string_view name);

// A flag's integer value checked against [min, max]: INVALID_ARGUMENT naming `flag` (as users
// spell it, e.g. "--max-json-depth"), the bounds and the value otherwise. CheckFlags has checked
// the value is an integer; this checks it is a sensible one.
absl::Status CheckFlagRange(absl::string_view flag, int64_t value, int64_t min, int64_t max);

// A real broker's bounds on an id that becomes a Kafka client or group instance id
// (group.instance.id, like a topic name): at most 249 characters of [a-zA-Z0-9._-].
// INVALID_ARGUMENT naming `flag` and what is wrong (the value clipped).
absl::Status CheckKafkaId(absl::string_view flag, absl::string_view id);

}  // namespace kiq
