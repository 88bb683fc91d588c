#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <list>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "router/port/subscription.h"

namespace kiq::router {

// The pending changes of one subscriber: a bounded queue filled by a producer that must never
// block (the ingestion thread, or a peer stream) and drained by the subscriber's stream.
// Thread-safe.
//
// Overflow: with `coalesce`, a change to a key that already has a pending change replaces it
// in place (keeping the older old_value, so the subscriber still sees "from → to"); a change
// to a key with nothing pending is still queued, so memory stays bounded by the number of
// matching keys and per-key order is kept. Without `coalesce`, the queue is dropped and the
// subscription ends with RESOURCE_EXHAUSTED.
//
// Progress: the producer also records, per partition, the source offset up to which every
// change has been queued; Take hands it out once the queue is drained, so the consumer knows
// exactly where it stands even in partitions whose records matched nothing.
class ChangeQueue {
 public:
  ChangeQueue(size_t capacity, bool coalesce) : capacity_(capacity), coalesce_(coalesce) {}

  // Queues a change. Returns false if the subscription has ended (now or before).
  bool Push(ChangeEvent change) ABSL_LOCKS_EXCLUDED(mu_);
  // Every change of `partition` made by a record before `next_offset` is queued. Monotonic:
  // a smaller offset is ignored. Returns true if the progress moved.
  bool Advance(int32_t partition, int64_t next_offset) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the subscription with `status` after the changes already queued; runs the notify.
  void End(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_);
  // See Subscription::Take.
  absl::Status Take(size_t max, std::vector<ChangeEvent>* out, Progress* progress = nullptr)
      ABSL_LOCKS_EXCLUDED(mu_);
  // See Subscription::SetNotify.
  void SetNotify(std::function<void()> notify) ABSL_LOCKS_EXCLUDED(notify_mu_);
  // Runs the notify callback, if any.
  void Notify() ABSL_LOCKS_EXCLUDED(notify_mu_);

  bool ended() const { return ended_.load(); }
  size_t pending() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using KeyId = std::pair<int32_t, std::string>;

  const size_t capacity_;
  const bool coalesce_;

  mutable absl::Mutex mu_;
  std::list<ChangeEvent> queue_ ABSL_GUARDED_BY(mu_);
  // With coalesce: the latest pending change of each key.
  absl::flat_hash_map<KeyId, std::list<ChangeEvent>::iterator> latest_ ABSL_GUARDED_BY(mu_);
  Progress progress_ ABSL_GUARDED_BY(mu_);
  absl::Status end_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> ended_{false};

  // Separate from mu_: the callback may call Take (which locks mu_).
  absl::Mutex notify_mu_;
  std::function<void()> notify_ ABSL_GUARDED_BY(notify_mu_);
};

}  // namespace kiq::router
