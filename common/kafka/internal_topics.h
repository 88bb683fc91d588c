#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

#include "common/kafka/client_config.h"
#include "common/topology/plan.h"

namespace kiq {

// Makes sure kiq's own topics that must be co-partitioned with the sources (changelogs,
// repartition topics) exist with exactly their partition count: creates missing ones through
// the Admin API (changelogs compacted, as they need only the newest value per key; repartition
// topics with the broker's default delete policy), and refuses a topic with another count
// (its partition p would not hold store partition p). Brokers that do not answer CreateTopics
// (e.g. librdkafka's mock cluster) get a clear error naming the topics to create by hand.
absl::Status EnsureInternalTopics(const KafkaClientConfig& kafka,
                                  const std::vector<InternalTopic>& topics, absl::Duration timeout);

}  // namespace kiq
