#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <librdkafka/rdkafkacpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/kafka/client_config.h"
#include "common/kafka/dead_letter_queue.h"
#include "common/log_limiter.h"
#include "kiq/v1/topology.pb.h"
#include "node/ingest/changelog_writer.h"
#include "node/ingest/fetch_waker.h"
#include "node/ingest/ingest_metrics.h"
#include "node/ingest/restorer.h"
#include "node/ingest/standby_replicator.h"
#include "node/process/compiled_topology.h"
#include "node/push/subscription_hub.h"
#include "node/store/committed_cache.h"
#include "node/store/partition_states.h"
#include "node/store/position_tracker.h"
#include "node/store/staged_batch.h"
#include "node/store/store_engine.h"

namespace kiq::node {

// What to do when a stored offset lies outside the partition's log (topic recreated,
// retention passed): the state would silently mix two histories if we just went on.
enum class OutOfRangePolicy {
  kFail,   // mark the partition FAILED (queries: UNAVAILABLE with the reason), do not consume it
  kReset,  // drop the partition's state and rebuild it from the start of the log
};

inline constexpr size_t kDefaultIngestCacheBytes = size_t{4} << 20;

struct IngestorOptions {
  // Every Kafka client of the ingestion (group consumer, restore consumer, changelog and
  // dead-letter producers) is configured from here.
  KafkaClientConfig kafka{""};
  std::string node_id;
  // Which of the node's ingestion threads this is (0, 1, ...; see Node's ingest_threads):
  // each is a member of the group of its own (group.instance.id <node_id> for 0,
  // <node_id>-<lane> for the others), owns the partitions the group assigns it, and commits
  // through its own lane of the SubscriptionHub and StandbyReplicator. The stores, positions
  // and partition states are shared; the topology (its processors) must be this thread's own.
  int lane = 0;
  OutOfRangePolicy out_of_range = OutOfRangePolicy::kFail;
  // A batch is committed (one WriteBatch, one changelog flush) after this many records, or
  // as soon as it is `idle_batch_delay` old and no further record is waiting in the local
  // queue: nothing would be coalesced with it, and a record should be readable within
  // milliseconds of its delivery (records that arrive during a commit form the next batch, so
  // batches grow with the rate, as a group commit does). Records that keep arriving extend a
  // batch up to `max_batch_delay`; while behind (records already queued when it is due), up to
  // `max_batch_records` or `max_backlog_batch_delay`: fewer, larger batches coalesce more
  // updates per key and pay the changelog round trip less often.
  size_t max_batch_records = 50000;
  absl::Duration idle_batch_delay = absl::Milliseconds(1);
  absl::Duration max_batch_delay = absl::Milliseconds(20);
  absl::Duration max_backlog_batch_delay = absl::Milliseconds(250);
  // Batches whose changelog may be unconfirmed at once, counting the one being staged. 1: a
  // batch's changelog is produced and flushed, then it is committed, then the next batch is
  // staged (one sequential loop). 2 (pipelined): once batch N's changelog is produced,
  // batch N+1 is consumed and staged (reading N's staged values) while N's records are
  // delivered; N is committed as soon as they all are, always before N+1, never before its
  // own changelog is durable. Anything else is refused by Create.
  int changelog_batches_in_flight = 2;
  // Budget of the cache of committed values the ingestion reads before RocksDB (see
  // CommittedCache; keys, values and a per-entry overhead), 0 for none. 4 MiB holds ~20k
  // small aggregates (a count over 10k keys stays cached) and adds little to a node whose
  // stores do not fit (1M table keys).
  size_t ingest_cache_bytes = kDefaultIngestCacheBytes;
  // Called on the ingestion thread whenever owned partitions or their states change (the
  // membership advertisement is refreshed then). Must not block.
  std::function<void()> on_ownership_change;
  // Called once on the ingestion thread when it ends (Stop, or a fatal error), with the status
  // Wait() returns. Must not block.
  std::function<void(const absl::Status&)> on_end;
  // Optional; must outlive the ingestor.
  IngestMetrics* metrics = nullptr;
  // Optional; must outlive the ingestor. Committed changes are published to it.
  SubscriptionHub* hub = nullptr;
  // Optional; must outlive the ingestor. Gained partitions are taken from it before they are
  // restored (only their tail then), and given back to it when revoked.
  StandbyReplicator* standby = nullptr;
};

// Counters kept by the ingestion thread; read from anywhere.
struct IngestStats {
  std::atomic<int64_t> records{0};
  std::atomic<int64_t> restored_records{0};
  std::atomic<int64_t> batches{0};
  std::atomic<int64_t> bad_records{0};
  std::atomic<int64_t> wrong_partition{0};
  // Records staged while the previous batch's changelog was still being delivered (the
  // pipeline at work; always 0 with changelog_batches_in_flight = 1).
  std::atomic<int64_t> staged_in_flight{0};
};

// Consumes the source topics as a member of the consumer group <application_id> and
// materializes them: records are applied to a StagedBatch and committed with each store's
// next source offset in one RocksDB WriteBatch; then positions advance and offsets are
// committed to Kafka too (RocksDB stays the authority: consumption resumes from the stored
// offsets).
//
// Changelogs are written ahead: before a batch is committed locally, every changed entry of
// an aggregate store is produced (idempotent producer, delivered) to `<app>-<store>-changelog`,
// partition p, carrying the source offset the batch ends at; the last record of a batch for a
// (store, partition) is marked `kiq.batch.end`. A node that gains a partition restores such
// stores from its changelog checkpoint, applying only complete batches, so state and source
// offset always agree and the source resumes exactly after the restored state. Tables are
// rebuilt from their source topic. Pipelined (changelog_batches_in_flight = 2), the next
// batch is consumed and staged while a batch's changelog is being delivered: at most one batch
// is in flight, it commits before the next is produced, and anything that needs the committed
// state complete (rebalance, offset reset, shutdown) first commits it via Flush().
// A gained partition is RESTORING until every store of it
// has caught up with the high watermarks seen at assignment, then ACTIVE.
//
// Ownership follows the group's assignment of the lead source topic (the first one), made
// incrementally (cooperative-sticky, KIP-429): a gained partition p brings partition p of
// every source topic, assigned by number, and a rebalance pauses only the partitions that
// move. One ingestion thread does all the work of its partitions, including rebalance
// callbacks, so their state never needs a lock on the write side. A node may run several
// Ingestors (IngestorOptions::lane), each a member of the group with its own partitions, as
// Kafka Streams runs several stream threads; what they share (stores, positions, partition
// states, the hub) is thread-safe and knows each one's commits apart.
class Ingestor {
 public:
  static absl::StatusOr<std::unique_ptr<Ingestor>> Create(CompiledTopology& topology,
                                                          StoreEngine& engine,
                                                          PartitionStates& states,
                                                          PositionTracker& positions,
                                                          IngestorOptions options);
  ~Ingestor();

  void Start();
  // Commits what was processed, closes the consumer (with static membership the group keeps
  // this node's partitions for the session timeout) and joins the thread. Idempotent.
  void Stop();
  // Tells the thread to stop without waiting for it (Stop() then waits).
  void RequestStop() { stop_.store(true); }
  // Blocks until the ingestion thread ends on its own (a fatal error) or Stop() is called.
  absl::Status Wait();
  const IngestStats& stats() const { return stats_; }
  // The consumer group generation of the current assignment (0 before the first).
  Generation generation() const { return Generation(generation_.load()); }
  // True once the group has assigned partitions to this node (possibly none), until the
  // assignment is lost or the ingestion ends: the node is a member of the group.
  bool joined() const { return joined_.load(); }
  // True between a lost assignment (the group session ended while no broker answered) and the
  // next assignment: the partitions it had stay readable at their committed positions.
  bool assignment_lost() const { return assignment_lost_.load(); }
  // The high watermark librdkafka last saw for (topic, p), without a broker round trip.
  std::optional<int64_t> CachedHighWatermark(const std::string& topic, PartitionId p) const;

 private:
  class RebalanceHandler;
  class StatsHandler;
  Ingestor(CompiledTopology& topology, StoreEngine& engine, PartitionStates& states,
           PositionTracker& positions, IngestorOptions options);

  void Run();
  // Commits everything: the batch in flight (waiting for its changelog), then the staged
  // batch (produced, flushed, committed). Afterwards nothing is pending.
  absl::Status Flush();
  // Pipelined: the staged batch is due. Completes the batch in flight (waiting for its
  // changelog), then produces the staged batch's changelog and puts it in flight.
  absl::Status Dispatch();
  // Produces the staged batch's changelog and moves it in flight (the staged batch is then
  // empty, reading through the one in flight).
  absl::Status StartInFlight();
  // Waits (up to kChangelogFlushTimeoutMs) until the batch in flight is durable, then commits
  // it locally and publishes it. An error means neither it nor the staged batch (built on
  // it) may commit.
  absl::Status FinishInFlight();
  // Forgets the staged batch and the one in flight, uncommitted.
  void DiscardPending();
  absl::Status HandleMessage(const RdKafka::Message& message);
  void OnAssign(std::vector<RdKafka::TopicPartition*>& partitions);
  void OnRevoke(const std::vector<RdKafka::TopicPartition*>& partitions);
  // Restores the stores with a changelog of the gained `partitions`, all together; the
  // (store index, partition) pairs whose restore failed (their partitions are FAILED).
  absl::flat_hash_set<std::pair<int, int32_t>> RestorePartitions(
      const std::vector<int32_t>& partitions);
  // Loads a store's next source offset for a gained partition (restored first, if it has a
  // changelog). False if the partition must not be consumed (FAILED).
  bool PreparePartition(int store_index, PartitionId p);
  // Checks the stores' offsets of (source, p) against the log; the offset to consume from, or
  // nullopt if the partition must not be consumed.
  std::optional<int64_t> StartOffset(const CompiledSource& source, PartitionId p);
  void HandleOutOfRange(const std::string& topic, PartitionId p, const std::string& detail);
  // Counts the records `store` dropped (late for a window, or with a null group_by key) since
  // the last call, in the metrics and in a log line at most once a minute per store and kind.
  void NoteDrops(int index, const CompiledStore& store);
  // Produces the staged batch's changelog and repartition records (`exact`: every write, not
  // one per key; see SubscriptionHub::CommitAndPublish), without waiting for them.
  absl::Status ProduceChangelog(bool exact);
  // Pauses the partitions of streams that join a table still catching up on them, so that no
  // record is joined with a table that is not yet complete (Kafka Streams restores tables
  // before processing).
  void PauseJoinsBehindTables();
  void ResumeJoins(bool all);
  void CheckCaughtUp();
  // The next source offset of (store, partition) as committed in RocksDB.
  int64_t CommittedNext(int store_index, int32_t p) const;
  void NotifyOwnershipChange();
  // Reports the handover of gained partition `p`, now ACTIVE.
  void NoteHandover(int32_t p);
  // Forgets the owned partitions `gone`: their state, positions and bookkeeping (their data
  // stays on disk).
  void DropPartitions(const absl::flat_hash_set<int32_t>& gone);
  // Forgets the state and positions of the owned partitions `which` selects.
  void ForgetPartitions(const std::function<bool(PartitionId)>& which);
  // Drops the cached values of partitions someone else may have written (or will).
  void InvalidateCache(const std::function<bool(int32_t)>& which);
  // Exports the cache's hits, misses and bytes since the last call.
  void PublishCacheMetrics();
  int32_t ReadGeneration();

  CompiledTopology& topology_;
  StoreEngine& engine_;
  OwnedPartitions states_;  // this thread's partitions (mirrored into the node's)
  PositionTracker& positions_;
  const IngestorOptions options_;

  std::unique_ptr<RebalanceHandler> rebalance_;  // must outlive consumer_
  std::unique_ptr<StatsHandler> stats_handler_;  // must outlive consumer_
  std::unique_ptr<RdKafka::KafkaConsumer> consumer_;
  // consumer_'s queued.max.messages.kbytes (see Create()).
  static constexpr int64_t kQueuedMaxKbytes = 32768;
  // Ingestion thread only. Wakes consumer_'s fetcher after each quarter of its queue is read.
  FetchWaker fetch_waker_{kQueuedMaxKbytes * 1024 / 4};
  // Commits the offsets lag tools read, for the memberless group `<app>-offsets`.
  std::unique_ptr<RdKafka::KafkaConsumer> offsets_;
  std::unique_ptr<DeadLetterQueue> dlq_;
  std::unique_ptr<Restorer> restorer_;
  std::unique_ptr<ChangelogWriter> changelog_;

  // Used by the ingestion thread only.
  // Next source offset of each (store index, partition) owned here.
  absl::flat_hash_map<std::pair<int, int32_t>, int64_t> next_;
  // Gained partitions still catching up: (store index, high watermark at assignment).
  absl::flat_hash_map<int32_t, std::vector<std::pair<int, int64_t>>> catching_up_;
  // Gained partitions not ACTIVE yet: when they were assigned, and whether a standby replica
  // of them was here then (for the handover metric).
  absl::flat_hash_map<int32_t, std::pair<absl::Time, bool>> handover_;
  std::vector<int32_t> revoked_;  // owned until the last revoke
  // Grouped stores: next upstream offset per (store index, partition, upstream partition). A
  // re-processed upstream batch forwards its records again; these watermarks drop them.
  absl::flat_hash_map<std::tuple<int, int32_t, int32_t>, int64_t> upstream_next_;
  // Stream partitions paused until the tables they join have caught up: partition → topics.
  absl::flat_hash_map<int32_t, std::vector<std::string>> paused_for_join_;
  // Source partitions paused because the schema id of their next record is not cached: the
  // SchemaDecoder fetches it on its own thread; they resume, from that record, once it has
  // the registry's answer. Records of them still in the fetch queue are dropped meanwhile
  // (they are read again).
  struct RegistryWait {
    int32_t schema_id = 0;
    int64_t offset = 0;  // the record that waits
    absl::Time since;
    absl::Time next_try;  // of a fetch again, after one that could not reach the registry
    absl::Duration backoff;
    bool warned = false;  // that the registry does not answer (once per wait)
  };
  std::map<std::pair<std::string, int32_t>, RegistryWait> registry_waits_;
  // Pauses (topic, p) at `offset` until the registry answers for `schema_id`.
  void WaitForRegistry(const std::string& topic, PartitionId p, int64_t offset, int32_t schema_id,
                       const absl::Status& why);
  // Resumes the partitions whose schema id the decoder now has (a schema or a definitive
  // no); starts a fetch again (with backoff, 100 ms doubling to 5 s) for those whose fetch
  // could not reach the registry. Never calls the registry itself.
  void RetryRegistry();
  // (store index, partition) touched by the pending batch.
  absl::flat_hash_set<std::pair<int, int32_t>> touched_;
  absl::Time next_progress_log_ = absl::InfinitePast();
  // Committed values of owned partitions (null with ingest_cache_bytes 0); shared by batch_
  // and inflight_.batch, so declared before them.
  std::unique_ptr<CommittedCache> cache_;
  int64_t cache_hits_published_ = 0;
  int64_t cache_misses_published_ = 0;
  StagedBatch batch_;
  absl::Time batch_started_ = absl::InfiniteFuture();
  // A batch whose changelog is produced but not yet known durable, with what its commit
  // needs from the time it was staged (next_ moves on with the next batch). `batch` is empty
  // when none is in flight.
  struct InFlight {
    InFlight(StoreEngine& engine, CommittedCache* cache) : batch(engine, cache) {}
    StagedBatch batch;
    bool active = false;
    absl::flat_hash_set<std::pair<int, int32_t>> touched;
    absl::flat_hash_map<std::pair<int, int32_t>, int64_t> next;          // next_ of touched
    absl::flat_hash_map<std::pair<int, int32_t>, int64_t> materialized;  // staged counts
  };
  InFlight inflight_;
  std::vector<BadRecord> bad_;
  LogLimiter bad_record_log_{100};
  LogLimiter wrong_partition_log_{5};

  IngestStats stats_;
  std::atomic<int32_t> generation_{0};
  std::atomic<bool> joined_{false};
  std::atomic<bool> assignment_lost_{false};
  // Per-record counters, looked up once (ingestion thread only).
  absl::flat_hash_map<std::pair<const CompiledSource*, int32_t>, prometheus::Counter*> consumed_;
  // kiq_records_materialized_total per (store index, partition), and the records the batch
  // under way staged for it (counted once committed).
  struct Materialized {
    prometheus::Counter* counter = nullptr;
    int64_t staged = 0;
  };
  absl::flat_hash_map<std::pair<int, int32_t>, Materialized> materialized_;
  // Per store index: drops (late records, null group_by keys) not yet logged, and when they
  // last were.
  struct DropSummary {
    int64_t pending = 0;
    absl::Time logged_at = absl::InfinitePast();
  };
  absl::flat_hash_map<int, DropSummary> late_;
  absl::flat_hash_map<int, DropSummary> null_keys_;
  std::atomic<bool> stop_{false};
  // Ingestion thread only: Run ended on a fatal error (the final revoke keeps the partitions).
  bool failed_ = false;
  // Ingestion thread only: a batch that could not be committed in a rebalance callback (its
  // changelog failed). Its records were consumed and are not in the state, so the loop stops
  // on it as on any failed batch; a restart consumes them again from the committed offsets.
  absl::Status rebalance_failure_;
  std::thread thread_;
  absl::Notification done_;
  absl::Mutex mu_;
  absl::Status final_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiq::node
