#pragma once

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/kafka/client_config.h"

namespace kiq {

// Looks up the partition count of every topic of the cluster through a short-lived client,
// waiting up to `timeout` until all of `topics` are there: FAILED_PRECONDITION "<what> do not
// exist: ..." naming the missing ones. Asks for all topics, never by name: a broker that
// auto-creates topics must not create a misspelled source topic.
absl::StatusOr<absl::flat_hash_map<std::string, int32_t>> FetchPartitionCounts(
    const KafkaClientConfig& kafka, const std::vector<std::string>& topics, absl::Duration timeout,
    absl::string_view what = "source topics");

// Asks for the metadata of each of `topics` by name, which makes a broker that auto-creates
// topics (librdkafka's mock cluster) create the missing ones. Best effort.
void RequestTopicsByName(const KafkaClientConfig& kafka, const std::vector<std::string>& topics);

}  // namespace kiq
