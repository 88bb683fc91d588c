#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kiq::testing {

// The harness's own admin requests to a Kafka cluster (librdkafka's C Admin API), for tests
// that run against an external broker: it creates their topics, waits for them, and deletes
// them. Each call uses a short-lived client; every error names the request and the topic.
// Thread-compatible (no shared state).

struct TopicSpec {
  std::string name;
  int partitions = 1;
  bool compacted = false;  // cleanup.policy=compact, else the broker's default (delete)
};

// Creates `topics` (replication factor: the broker's default) and waits until every partition
// of each has a leader. ALREADY_EXISTS naming the topic if one exists already.
absl::Status CreateTopics(const std::string& bootstrap_servers,
                          const std::vector<TopicSpec>& topics, absl::Duration timeout);

// Asks for `topics` to be deleted; OK once the broker accepted (deletion itself is
// asynchronous on real brokers) or if a topic does not exist.
absl::Status DeleteTopics(const std::string& bootstrap_servers,
                          const std::vector<std::string>& topics, absl::Duration timeout);

// Deletes consumer groups; OK for groups that do not exist. A group with live members (e.g. a
// static member whose session has not expired yet) is not deleted: NOT_EMPTY is an error.
absl::Status DeleteGroups(const std::string& bootstrap_servers,
                          const std::vector<std::string>& groups, absl::Duration timeout);

// Topic name → partitions that have a leader, of every topic the cluster lists, from one
// metadata request of a fresh client (so nothing is cached). UNAVAILABLE if no broker answered
// within `timeout`.
absl::StatusOr<std::map<std::string, int>> ListTopics(const std::string& bootstrap_servers,
                                                      absl::Duration timeout);

}  // namespace kiq::testing
