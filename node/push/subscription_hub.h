#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <prometheus/gauge.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "node/store/staged_batch.h"
#include "router/port/change_queue.h"
#include "router/port/subscription.h"

namespace kiq::node {

inline constexpr size_t kDefaultSubscriberBuffer = 10000;

// One registered subscriber: which changes it follows and its queue.
struct Subscriber {
  StoreHandle store;
  router::KeyMatch match;
  std::vector<bool> partitions;  // by partition id
  // Resumed behind where the subscription stood: changes of records before these offsets
  // were delivered by the previous owner.
  absl::flat_hash_map<int32_t, int64_t> skip_below;
  std::shared_ptr<router::ChangeQueue> queue;
  absl::Time next_progress_notify;  // guarded by the hub's mu_

  bool Follows(int32_t p) const {
    return p >= 0 && static_cast<size_t>(p) < partitions.size() && partitions[p];
  }
};

// The position a batch committed a store partition at (the next source offset).
struct CommittedPosition {
  StoreHandle store;
  PartitionId partition;
  int64_t next = 0;
};

// What a standby replica's (or a restore's) commit did to one store partition: it now stands at
// `next`, and the changes it reported are exactly those of the records from `from` on (the
// changes before `from`, if any, were folded: not the ones the owner pushed).
struct ReplicaProgress {
  StoreHandle store;
  PartitionId partition;
  int64_t from = 0;
  int64_t next = 0;
};

struct SubscriptionHubOptions {
  // Optional: set to the number of open subscriptions (kiq_subscriptions).
  prometheus::Gauge* subscriptions = nullptr;
  // How long after a partition is assigned its changes are kept for subscriptions that
  // resume here (following the partition from its previous owner), and how many at most.
  absl::Duration replay_window = absl::Seconds(30);
  size_t replay_capacity = 20000;  // changes per store partition
  // Memory of every replay log of the node together (keys, values, old values): the log that
  // grows past it drops its oldest records.
  size_t replay_max_bytes = 16 << 20;
  // Ingestion threads that commit through the hub, each with its own lane (0, 1, ...): a
  // registration waits for a boundary of every lane at once.
  int lanes = 1;
};

// Fans committed changes out to push subscribers, with one batch-boundary protocol: a
// subscriber registers (and takes its snapshot) either before a batch is committed or after
// it is published, never in between, so everything committed before is in its snapshot and
// everything after is queued. The ingestion thread brackets each batch with BeginBatch and
// CommitAndPublish; a subscriber comes in through Subscribe. The store write itself runs
// outside every lock: registrations wait while a commit is under way.
//
// Partition moves: a subscription that followed a partition on its previous owner resumes
// here from the position it had reached. When this node is past that position, the changes
// in between come from the replay log: for `replay_window` after a partition is assigned
// (and after it becomes ACTIVE), every change of it is kept; the log starts exactly where the
// partition was restored to, which is where its previous owner stopped, or continues the log
// this node kept when it last had the partition if it comes back at that log's end.
// Thread-safe.
class SubscriptionHub {
 public:
  explicit SubscriptionHub(SubscriptionHubOptions options = {})
      : options_(options), lanes_(static_cast<size_t>(std::max(1, options.lanes))) {}

  // Ingestion thread of `lane`, at the start of each batch: whether the batch must log its
  // changes (someone listens, is about to, or replay logs are kept). A batch that does not
  // keeps registrations out until it is committed: its changes would reach a subscriber folded.
  // Every commit call below names the lane of the calling ingestion thread; each lane has one
  // batch committing at a time.
  bool BeginBatch(int lane = 0) ABSL_LOCKS_EXCLUDED(commit_mu_);
  // Ingestion thread: runs `write_ahead` (if given: the changelog, made durable before the
  // commit; told whether it must hold every write of the batch, in order, because someone
  // subscribes), commits `batch` (both outside every lock; registrations wait meanwhile), then
  // queues its changes for the subscribers registered before it and records where each store
  // partition now stands (`positions`). An empty batch only ends the batch. The first error,
  // if any; nothing is published then.
  absl::Status CommitAndPublish(StagedBatch& batch, const std::vector<CommittedPosition>& positions,
                                const std::function<absl::Status(bool exact)>& write_ahead = {},
                                int lane = 0) ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  // CommitAndPublish in two steps, for a pipelined ingestor that stages the next batch while
  // this one's changelog is delivered. StartCommit: registrations wait from here (the batch
  // is no longer "untracked": it is committing; a batch begun after it may be untracked in
  // its own right); whether its changelog must be exact. FinishCommit: commits `batch` if
  // `write_ahead` is OK (else returns it), publishes, and lets registrations in again.
  // With a registration waiting for a boundary, StartCommit of a batch that logs its changes
  // waits until it has registered: lanes that commit in turn would otherwise never all be at
  // a boundary at once.
  bool StartCommit(const StagedBatch& batch, int lane = 0) ABSL_LOCKS_EXCLUDED(commit_mu_);
  absl::Status FinishCommit(StagedBatch& batch, const std::vector<CommittedPosition>& positions,
                            absl::Status write_ahead, int lane = 0)
      ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);

  // A subscriber of `store` (named `store_name` in errors) for `partitions`, registered at a
  // batch boundary: waits up to `wait` for a commit under way (UNAVAILABLE past it), then, with
  // no commit until it returns, runs `check` (the partitions are readable here), registers,
  // and runs `snapshot` (reads the state the subscriber starts from). Partitions in `resume`
  // continue from there: replayed from the replay log if this node is past it, ABORTED naming
  // the partition if it cannot be.
  absl::StatusOr<std::shared_ptr<Subscriber>> Subscribe(
      StoreHandle store, absl::string_view store_name, router::KeyMatch match,
      const std::vector<int32_t>& partitions, const router::Progress& resume, size_t capacity,
      bool coalesce, absl::Duration wait, const std::function<absl::Status()>& check,
      const std::function<absl::Status()>& snapshot) ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  // Subscribe with no check and no snapshot.
  absl::StatusOr<std::shared_ptr<Subscriber>> Register(
      StoreHandle store, absl::string_view store_name, router::KeyMatch match,
      const std::vector<int32_t>& partitions, const router::Progress& resume, size_t capacity,
      bool coalesce) ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);
  void Unregister(const Subscriber* subscriber) ABSL_LOCKS_EXCLUDED(mu_);

  // True if anyone is subscribed, about to, or changes are kept for replay (lets the
  // ingestor skip logging changes otherwise).
  bool active() const { return count_.load() + announced_.load() + recording_.load() > 0; }
  size_t size() const { return static_cast<size_t>(count_.load()); }
  // Registrations waiting for a batch boundary now.
  int waiting() const ABSL_LOCKS_EXCLUDED(commit_mu_) {
    absl::MutexLock lock(&commit_mu_);
    return waiting_;
  }

  // Queues each change (of a batch already committed) for the subscribers it matches and
  // records where each store partition now stands. Never blocks on a subscriber.
  void Publish(std::vector<Change> changes, const std::vector<CommittedPosition>& positions)
      ABSL_LOCKS_EXCLUDED(commit_mu_, mu_);

  // Partition `p` of `store` was assigned here and stands at `next` (ingestion thread,
  // between batches): starts its replay log.
  void PartitionAssigned(StoreHandle store, PartitionId p, int64_t next) ABSL_LOCKS_EXCLUDED(mu_);
  // A standby replica of partition `p` of `store` starts at `next` (the replicator's thread):
  // its replay log starts there, so that if this node gains the partition, subscriptions that
  // follow it from its previous owner can resume from the replica's changes.
  void ReplicaStarted(StoreHandle store, PartitionId p, int64_t next) ABSL_LOCKS_EXCLUDED(mu_);
  // The replica (or a restore of the partition) committed `changes` (every write, in order,
  // with its record offset) and moved as `progress` says: the changes from each partition's
  // `from` on are kept in its replay log, which is kept for replay_window more. A log that does
  // not end at `from` (expired while the replica was idle, or the changes before were folded)
  // starts again there.
  void ReplicaApplied(std::vector<Change> changes, const std::vector<ReplicaProgress>& progress)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Changes a replay log holds at most.
  size_t replay_capacity() const { return options_.replay_capacity; }
  // Whether partition `p` of `store` has a replay log now (a restore continues it).
  bool KeepsReplayLog(StoreHandle store, PartitionId p) ABSL_LOCKS_EXCLUDED(mu_);

  // Partition `p` became ACTIVE (restored and caught up): the replay window of its stores
  // starts now, when routers can first find it.
  void PartitionActive(PartitionId p) ABSL_LOCKS_EXCLUDED(mu_);
  // `partitions` left this node (a rebalance, or a lost assignment of an ingestion thread):
  // forgets their positions. Replay logs stay until they expire: a partition that comes back
  // at the very position its log ends at (rebalances often hand the same partitions back)
  // continues it.
  void PartitionsRevoked(const std::vector<int32_t>& partitions) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends every subscriber that follows any of `partitions` with `status`.
  void EndPartitions(const std::vector<int32_t>& partitions, const absl::Status& status)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Ends every subscriber with `status`.
  void EndAll(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // The changes of one store partition since `start`: every change of a record at or after
  // `start` and before the partition's committed position.
  struct ReplayLog {
    int64_t start = 0;
    int64_t end = 0;  // the partition's committed position when the last change was logged
    std::deque<router::ChangeEvent> changes;
    size_t bytes = 0;
    absl::Time until;
  };
  using StorePartition = std::pair<int, int32_t>;  // (store index, partition)

  void UpdateGauge() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Record(Change change, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireReplayLogs(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the replay log of `sp` at `next`, or continues it if it ends there (kept from when
  // this node last had the partition, or by a standby replica of it), for replay_window more.
  void StartReplayLog(StorePartition sp, int64_t next) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Empties `log`, keeping replay_bytes_ right.
  void ClearLog(ReplayLog& log) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::shared_ptr<Subscriber>> RegisterAtBoundary(
      StoreHandle store, absl::string_view store_name, router::KeyMatch match,
      const std::vector<int32_t>& partitions, const router::Progress& resume, size_t capacity,
      bool coalesce) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  void PublishAtBoundary(std::vector<Change> changes,
                         const std::vector<CommittedPosition>& positions)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the batch under way on `lane`: registrations may come in again.
  void EndBatch(int lane) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  // Some lane is committing, or has a batch under way that does not log its changes.
  bool AnyLaneBusy() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);
  struct Lane {
    bool committing = false;
    bool untracked = false;
  };
  Lane& LaneOf(int lane) ABSL_EXCLUSIVE_LOCKS_REQUIRED(commit_mu_);

  const SubscriptionHubOptions options_;
  // The batch boundary: held by a registration from its check to its snapshot, and by the
  // ingestion thread to start and to publish a commit (never across the store write).
  mutable absl::Mutex commit_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  absl::CondVar boundary_;  // signalled with commit_mu_ when a batch ends
  // Per lane: a commit is being written, or a batch is under way without logging its
  // changes; registrations wait while any lane is busy.
  std::vector<Lane> lanes_ ABSL_GUARDED_BY(commit_mu_);
  // Registrations waiting for every lane to be at a boundary.
  int waiting_ ABSL_GUARDED_BY(commit_mu_) = 0;
  // Subscribers on their way: batches started from now on log every change.
  std::atomic<int> announced_{0};
  absl::Mutex mu_;
  std::vector<std::shared_ptr<Subscriber>> subscribers_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<StorePartition, int64_t> positions_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<StorePartition, ReplayLog> replay_ ABSL_GUARDED_BY(mu_);
  size_t replay_bytes_ ABSL_GUARDED_BY(mu_) = 0;  // of every log
  std::atomic<int64_t> count_{0};
  std::atomic<int64_t> recording_{0};
};

router::ChangeEvent ToEvent(Change change);

}  // namespace kiq::node
