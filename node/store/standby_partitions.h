#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/types.h"
#include "node/store/position_tracker.h"

namespace kiq::node {

// The standby replicas this node keeps (num_standby_replicas): partitions it does not own but
// tails the changelogs of, with each store's lag. Written by the standby replicator's thread,
// read by queries that allow stale answers and by the advertiser. A partition is never both
// here and owned (PartitionStates): the ingestion thread claims it from the replicator before
// restoring it. Thread-safe.
//
// `positions` are the standby copies' own (store, topic, partition) positions, bracketed by
// their own commits: the replicator is a second writer, and a seqlock has one.
class StandbyPartitions {
 public:
  // The replica of `p` is being built: listed, not served until MarkServing.
  void Add(PartitionId p) ABSL_LOCKS_EXCLUDED(mu_);
  // Its first catch-up is done (or its state committed at least once): reads may use it.
  void MarkServing(PartitionId p) ABSL_LOCKS_EXCLUDED(mu_);
  void SetLag(PartitionId p, absl::string_view store, int64_t lag) ABSL_LOCKS_EXCLUDED(mu_);
  void Remove(PartitionId p) ABSL_LOCKS_EXCLUDED(mu_);

  // The replica's lag for `store` if `p` is served here within `max_lag_records` (0: any);
  // UNAVAILABLE with the reason otherwise.
  absl::StatusOr<int64_t> CheckReadable(absl::string_view store, PartitionId p,
                                        int64_t max_lag_records) const ABSL_LOCKS_EXCLUDED(mu_);

  struct Replica {
    PartitionId partition;
    bool serving = false;
    int64_t lag = 0;  // the largest over its stores
  };
  std::vector<Replica> Snapshot() const ABSL_LOCKS_EXCLUDED(mu_);
  // Lag per (store, partition), for the metrics.
  std::vector<std::tuple<std::string, int32_t, int64_t>> Lags() const ABSL_LOCKS_EXCLUDED(mu_);

  PositionTracker& positions() { return positions_; }
  const PositionTracker& positions() const { return positions_; }

 private:
  struct Entry {
    bool serving = false;
    absl::flat_hash_map<std::string, int64_t> lag;  // store → records behind
  };
  mutable absl::Mutex mu_;
  absl::btree_map<int32_t, Entry> replicas_ ABSL_GUARDED_BY(mu_);
  PositionTracker positions_;
};

}  // namespace kiq::node
