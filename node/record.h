#pragma once

#include <cstdint>
#include <optional>
#include "absl/strings/string_view.h"

#include "router/types.h"

namespace kiq::node {

// One consumed Kafka record, borrowed from the consumer's message for the time it is
// processed. A null key or value (Kafka's null, not an empty byte string) is nullopt.
struct Record {
  absl::string_view topic;
  PartitionId partition;
  Offset offset;
  int64_t timestamp_ms = 0;
  std::optional<absl::string_view> key;
  std::optional<absl::string_view> value;
};

}  // namespace kiq::node
