#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace kiq::node {

// Makes sure kiq's own topics that must be co-partitioned with the sources (changelogs) exist
// with exactly `partitions` partitions: creates missing ones through the Admin API (compacted,
// as changelogs keep only the newest value per key), and refuses a topic with another count
// (its partition p would not hold store partition p). Brokers that do not answer CreateTopics
// (e.g. librdkafka's mock cluster) get a clear error naming the topics to create by hand.
absl::Status EnsureInternalTopics(const std::string& bootstrap_servers,
                                  const std::vector<std::pair<std::string, int32_t>>& topics,
                                  absl::Duration timeout);

}  // namespace kiq::node
