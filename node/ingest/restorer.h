#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <librdkafka/rdkafkacpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/kafka/client_config.h"
#include "common/types.h"
#include "node/process/compiled_topology.h"
#include "node/push/subscription_hub.h"
#include "node/store/store_engine.h"

namespace kiq::node {

// Rebuilds a store partition from its changelog (written by ChangelogWriter): reads from the
// store's changelog checkpoint to the high watermark seen at the start and applies only
// complete batches, each atomically with the changelog offset, the source offset and the
// upstream dedup watermarks it reflects — so state and source offset always agree and the
// source resumes exactly after the restored state. A trailing incomplete batch (its writer
// died before its flush succeeded) is never applied: that writer never committed it either.
//
// Reads by explicit assignment with its own consumer; never joins a group. Not thread-safe:
// used by the ingestion thread only.
class Restorer {
 public:
  static absl::StatusOr<std::unique_ptr<Restorer>> Create(const KafkaClientConfig& kafka,
                                                          const std::string& group_id,
                                                          const std::string& client_id);
  ~Restorer();

  // Restores partition `p` of `store` (built from `source_topic`) into `engine`; the number of
  // entries applied. The changes of the last records restored (and all of them if `hub` keeps
  // a replay log of the partition: a standby replica's, when this node takes over from it) go
  // to the partition's replay log in `hub`.
  absl::StatusOr<int64_t> Restore(const CompiledStore& store, const std::string& source_topic,
                                  PartitionId p, StoreEngine& engine, SubscriptionHub* hub);
  // The low and high watermarks of `topic`/`p`, asking the broker.
  absl::StatusOr<std::pair<int64_t, int64_t>> Watermarks(const std::string& topic, PartitionId p);
  // Leaves the consumer's connections; called once the ingestion loop has ended.
  void Close();

 private:
  explicit Restorer(std::unique_ptr<RdKafka::KafkaConsumer> consumer)
      : consumer_(std::move(consumer)) {}

  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;
};

}  // namespace kiq::node
