#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <librdkafka/rdkafkacpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/kafka/client_config.h"
#include "common/types.h"
#include "node/process/compiled_topology.h"
#include "node/push/subscription_hub.h"
#include "node/store/store_engine.h"

namespace kiq::node {

// One store partition to rebuild: partition `partition` of `store`, built from `source_topic`.
struct RestoreTask {
  const CompiledStore* store = nullptr;
  std::string source_topic;
  PartitionId partition;
};

// How restoring one RestoreTask ended: the number of entries applied, or why it failed (that
// task alone), and how long it took from the start of the RestoreAll call until it was done.
struct RestoreOutcome {
  absl::StatusOr<int64_t> applied = int64_t{0};
  absl::Duration took;
};

// Rebuilds store partitions from their changelogs (written by ChangelogWriter): reads from each
// store's changelog checkpoint to the high watermark seen at the start and applies only
// complete batches, each atomically with the changelog offset, the source offset and the
// upstream dedup watermarks it reflects — so state and source offset always agree and the
// source resumes exactly after the restored state. A trailing incomplete batch (its writer
// died before its flush succeeded) is never applied: that writer never committed it either.
//
// All the partitions of one call are read together, through one assignment of their changelog
// partitions, as a bare consumer would read them: the fixed costs of a restore (watermarks,
// assignment, the first fetch) are paid once per call, not once per partition.
//
// Reads by explicit assignment with its own consumer; never joins a group. Not thread-safe:
// used by the ingestion thread only.
class Restorer {
 public:
  static absl::StatusOr<std::unique_ptr<Restorer>> Create(const KafkaClientConfig& kafka,
                                                          const std::string& group_id,
                                                          const std::string& client_id);
  ~Restorer();

  // Restores every task into `engine`; one outcome per task, in the order of `tasks`. A task
  // that fails (its changelog partition unreadable, no progress for a minute, a RocksDB error)
  // fails alone; the others go on. The changes of the last records restored of each partition
  // (and all of them if `hub` keeps a replay log of the partition: a standby replica's, when
  // this node takes over from it) go to the partition's replay log in `hub`. No two tasks may
  // share a changelog partition (each store has its own changelog topic).
  std::vector<RestoreOutcome> RestoreAll(const std::vector<RestoreTask>& tasks, StoreEngine& engine,
                                         SubscriptionHub* hub);
  // RestoreAll of one task: the number of entries applied.
  absl::StatusOr<int64_t> Restore(const CompiledStore& store, const std::string& source_topic,
                                  PartitionId p, StoreEngine& engine, SubscriptionHub* hub);
  // The low and high watermarks of `topic`/`p`, asking the broker.
  absl::StatusOr<std::pair<int64_t, int64_t>> Watermarks(const std::string& topic, PartitionId p);
  // The watermarks of every (topic, partition) of `partitions`, in their order, asked with one
  // ListOffsets request per broker for the low ones and one for the high ones (rather than a
  // round trip per partition); a partition whose answer is an error gets that error alone.
  std::vector<absl::StatusOr<std::pair<int64_t, int64_t>>> WatermarksOf(
      const std::vector<std::pair<std::string, PartitionId>>& partitions);
  // Sets up, in the background, the consumer's connections to the leaders of `partitions`
  // (the changelog partitions it may restore), by asking their end offsets once: the first
  // contact with a leader (metadata, connection, ~45 ms on the dev Kafka) is then paid at
  // start-up, not by the first restore. Errors are ignored (a restore asks again). Called at
  // most once, before the first RestoreAll; RestoreAll does not wait for it.
  void Warm(std::vector<std::pair<std::string, PartitionId>> partitions);
  // Leaves the consumer's connections; called once the ingestion loop has ended.
  void Close();

 private:
  struct Pending;

  explicit Restorer(std::unique_ptr<RdKafka::KafkaConsumer> consumer)
      : consumer_(std::move(consumer)) {}

  // Commits the complete batches `pending` has staged (one WriteBatch) and reports their
  // changes to `hub` when they are tracked for its replay log.
  absl::Status CommitStaged(Pending& pending, SubscriptionHub* hub);
  // Stops fetching the changelog partition of `pending`, which is done (restored or failed).
  void Finish(Pending& pending);

  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;
  std::thread warmer_;  // Warm's; joined by Close and the destructor
};

}  // namespace kiq::node
