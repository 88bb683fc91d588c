#pragma once

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/kafka/client_config.h"

namespace kiq {

// Looks up the partition count of each topic through a short-lived client, waiting up to
// `timeout` for topics that do not exist yet. FAILED_PRECONDITION naming the missing topics.
// With no `topics`, the counts of every topic the cluster has.
absl::StatusOr<absl::flat_hash_map<std::string, int32_t>> FetchPartitionCounts(
    const KafkaClientConfig& kafka, const std::vector<std::string>& topics, absl::Duration timeout);

}  // namespace kiq
