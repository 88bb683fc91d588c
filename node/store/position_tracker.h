#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/types.h"
#include "kiq/v1/query.pb.h"

namespace kiq::node {

// The in-memory position of each store: for each (store, source topic, partition), the next
// offset to process, as of the last committed batch. Stores are tracked apart because after a
// restore from their changelogs two stores of one topic may stand at different offsets.
// Advanced by the ingestion thread after each commit, read by queries (the position an answer
// reflects) and waited on (read your writes). Thread-safe.
class PositionTracker {
 public:
  void Advance(absl::string_view store, absl::string_view topic, PartitionId p, Offset next)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Forget(absl::string_view store, absl::string_view topic, PartitionId p)
      ABSL_LOCKS_EXCLUDED(mu_);
  std::optional<Offset> Get(absl::string_view store, absl::string_view topic, PartitionId p) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Bracket each batch commit (the RocksDB write and the Advance calls after it), on an
  // ingestion thread; no lock is held in between. Several ingestion threads may commit at
  // once (brackets nest). A reader that sees the same CommitSequence() before and after its
  // reads, with no commit under way (!Committing), read state and positions of committed
  // batches only: the position is exact.
  void BeginCommit() ABSL_LOCKS_EXCLUDED(mu_);
  void EndCommit() ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t CommitSequence() const { return commits_.load(std::memory_order_acquire); }
  // Whether a CommitSequence() value was taken while some batch was committing.
  static bool Committing(uint64_t sequence) { return (sequence & kActiveMask) != 0; }
  // Waits until no batch is committing (or `timeout` passes) and returns CommitSequence().
  uint64_t AwaitNoCommit(absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until `store` has reached every entry of `min` or `deadline` passes
  // (DEADLINE_EXCEEDED naming the first partition still behind).
  absl::Status WaitFor(absl::string_view store, const kiq::v1::Position& min,
                       absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);

  // Changes on every Advance and Forget; WaitForChange returns once it differs from `seen` or
  // at `deadline`. For a thread that watches many waits at once (router/position_waiter.h).
  uint64_t version() const ABSL_LOCKS_EXCLUDED(mu_);
  void WaitForChange(uint64_t seen, absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using Key = std::tuple<std::string, std::string, int32_t>;
  // The first entry of `min` not reached, or nullptr.
  const kiq::v1::PartitionOffset* Behind(absl::string_view store, const kiq::v1::Position& min,
                                         int64_t* at) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The low 16 bits count the commits under way; the rest counts every Begin and End, so
  // that the word changes whenever a commit starts or ends (a seqlock for many writers).
  static constexpr uint64_t kActiveMask = 0xFFFF;
  static constexpr uint64_t kEvent = uint64_t{1} << 16;
  std::atomic<uint64_t> commits_{0};
  mutable absl::Mutex mu_;
  absl::flat_hash_map<Key, int64_t> next_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace kiq::node
