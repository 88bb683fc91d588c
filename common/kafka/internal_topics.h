#pragma once

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

#include "common/kafka/client_config.h"
#include "common/topology/plan.h"

namespace kiq {

// Makes sure every topic kiq itself owns exists before anything is produced or subscribed:
// the members topic (compacted), the dead-letter topic, and the changelogs (compacted) and
// repartition topics, which must have exactly the sources' partition count (their partition p
// holds store partition p; another count is refused). Missing ones are created through the
// Admin API — when several nodes start at once one creates and the others find it exists; a
// creation the broker refuses (ACLs, a policy) is FAILED_PRECONDITION naming the topic and the
// broker's reason. The members and dead-letter topics are first asked for by name, which makes
// a broker that auto-creates topics (librdkafka's mock cluster has no Admin API) create them.
// Returns once every topic is in the cluster's metadata, so a consumer subscribing next sees
// them all.
absl::Status EnsureInternalTopics(const KafkaClientConfig& kafka,
                                  const std::vector<InternalTopic>& topics, absl::Duration timeout);

}  // namespace kiq
