#pragma once

#include <cstdint>
#include <optional>
#include "absl/strings/string_view.h"

#include "common/types.h"

namespace kiq {

class LazyJson;

// One consumed Kafka record, borrowed from the consumer's message for the time it is
// processed. A null key or value (Kafka's null, not an empty byte string) is nullopt.
struct Record {
  absl::string_view topic;
  PartitionId partition;
  Offset offset;
  int64_t timestamp_ms = 0;
  std::optional<absl::string_view> key;
  std::optional<absl::string_view> value;
  // The value parsed as JSON, shared by the stores of a JSON source (set by CompiledTopology,
  // which owns it); nullptr: a processor that needs it parses the value itself.
  LazyJson* json = nullptr;
};

}  // namespace kiq
