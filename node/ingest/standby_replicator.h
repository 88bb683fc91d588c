#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <librdkafka/rdkafkacpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/kafka/client_config.h"
#include "common/log_limiter.h"
#include "node/ingest/changelog_batches.h"
#include "node/ingest/ingest_metrics.h"
#include "node/process/compiled_topology.h"
#include "node/push/subscription_hub.h"
#include "node/store/staged_batch.h"
#include "node/store/standby_partitions.h"
#include "node/store/store_engine.h"

namespace kiq::node {

struct StandbyOptions {
  KafkaClientConfig kafka{""};
  std::string node_id;
  // The partitions this node should keep replicas of now (see StandbyNodes), asked about once
  // a second on the replicator's thread. Partitions owned here are left out by the replicator.
  std::function<std::vector<int32_t>()> placement;
  // A batch of applied records is committed once this old (or this large).
  absl::Duration max_batch_delay = absl::Milliseconds(20);
  size_t max_batch_records = 50000;
  IngestMetrics* metrics = nullptr;  // optional; must outlive the replicator
  // Optional; must outlive the replicator. The changes a replica of a table applies are kept
  // in its replay log, so that a subscription following the partition from its previous owner
  // resumes here without a gap once this node gains it.
  SubscriptionHub* hub = nullptr;
  // Called on the replicator's thread when replicas start, stop or begin serving (the
  // membership advertisement is refreshed then). Must not block.
  std::function<void()> on_change;
};

// Keeps standby replicas (Kafka Streams' standby tasks): for each partition the placement
// names and this node does not own, it tails the changelog of every aggregate store (applying
// only complete batches, as a restore does, with the changelog and source offsets they
// reflect) and the source topic of every table, into the node's own stores. The state on
// disk is then exactly what a restore would have built so far: when the node gains the
// partition, the ingestion restores only the tail from the checkpoint.
//
// Its own thread and its own consumer (explicit assignment, no group); its own `topology`
// instance (processors are single-threaded); commits bracketed by `standby`'s positions.
// The ingestion thread hands partitions over with SetOwned before touching them.
class StandbyReplicator {
 public:
  static absl::StatusOr<std::unique_ptr<StandbyReplicator>> Create(
      std::unique_ptr<CompiledTopology> topology, StoreEngine& engine, StandbyPartitions& standby,
      StandbyOptions options);
  ~StandbyReplicator();

  void Start();
  void Stop();

  // The partitions the ingestion owns from now on: the replicas of those stop (their state
  // stays, committed up to a batch) and are never started while owned. With `wait`, blocks
  // until the replicator has let go of them (at most a batch commit; bounded by 30 s). Each
  // ingestion thread (`lane`) sets its own partitions; the node owns their union.
  void SetOwned(std::vector<int32_t> owned, bool wait, int lane = 0) ABSL_LOCKS_EXCLUDED(mu_);
  const StandbyPartitions& partitions() const { return standby_; }

 private:
  // One store of one replicated partition.
  struct Tail {
    int store_index = 0;
    std::string topic;         // the store's changelog, or its source topic for a table
    int64_t next = 0;          // next offset to read
    int64_t caught_up_at = 0;  // the high watermark when the replica started
    std::optional<ChangelogBatches> batches;  // changelogged stores
    // The source position the replica's committed state reflects: its uncommitted changes are
    // those of the records from here on, unless a folded changelog batch came since (their
    // replay log then starts after it, at `folded_through`).
    int64_t log_from = 0;
    std::optional<int64_t> folded_through;
    // The schema registry did not answer for the record at `next`: the tail skips what it
    // reads until it is assigned again from `next` (see registry_retry_at_).
    bool registry_blocked = false;
    // A table read from a repartition topic (a join on a field): the next upstream offset per
    // upstream partition, as the owner keeps them, so that re-forwarded duplicates are dropped
    // here too (an old record applied again would hide a newer value).
    bool repartition = false;
    absl::flat_hash_map<int32_t, int64_t> upstream_next;
  };
  struct Replica {
    std::vector<Tail> tails;
    bool serving = false;
  };

  StandbyReplicator(std::unique_ptr<CompiledTopology> topology, StoreEngine& engine,
                    StandbyPartitions& standby, StandbyOptions options);
  void Run();
  // Starts and stops replicas to match the placement minus the owned partitions.
  void Reconcile(const absl::btree_set<int32_t>& owned, bool ask_placement);
  absl::Status StartReplica(int32_t p);
  void StopReplica(int32_t p);
  void Assign();
  absl::Status Apply(const RdKafka::Message& m);
  absl::Status Commit();
  void UpdateLags();

  const std::unique_ptr<CompiledTopology> topology_;
  // When blocked tails are read again from where they stopped (InfiniteFuture: none is).
  absl::Time registry_retry_at_ = absl::InfiniteFuture();
  StoreEngine& engine_;
  StandbyPartitions& standby_;
  const StandbyOptions options_;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;

  // The replicator's thread only.
  std::map<int32_t, Replica> replicas_;  // node-stable: by_topic_ points into it
  // (topic, partition) → the tails it feeds.
  absl::flat_hash_map<std::pair<std::string, int32_t>, std::vector<Tail*>> by_topic_;
  absl::flat_hash_map<std::pair<int, int32_t>, Tail*> touched_;
  StagedBatch batch_;
  absl::Time batch_started_ = absl::InfiniteFuture();
  LogLimiter errors_{20};

  absl::Mutex mu_;
  absl::btree_set<int32_t> owned_ ABSL_GUARDED_BY(mu_);  // of every lane
  absl::flat_hash_map<int, absl::btree_set<int32_t>> lanes_ ABSL_GUARDED_BY(mu_);
  uint64_t epoch_ ABSL_GUARDED_BY(mu_) = 0;  // bumped by SetOwned
  uint64_t acked_ ABSL_GUARDED_BY(mu_) = 0;  // the epoch the thread has acted on
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace kiq::node
