#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "node/staged_batch.h"
#include "router/subscription.h"

namespace kiq::node {

class IngestMetrics;

inline constexpr size_t kDefaultSubscriberBuffer = 10000;

// The pending changes of one subscriber: a bounded queue filled by the ingestion thread
// (Push never blocks) and drained by the subscriber's stream. Thread-safe.
//
// Overflow: with `coalesce`, a change to a key that already has a pending change replaces it
// in place (keeping the older old_value, so the subscriber still sees "from → to"); a change
// to a key with nothing pending is still queued, so memory stays bounded by the number of
// matching keys and per-key order is kept. Without `coalesce`, the queue is dropped and the
// subscription ends with RESOURCE_EXHAUSTED.
class SubscriberQueue {
 public:
  SubscriberQueue(StoreHandle store, router::KeyMatch match, size_t capacity, bool coalesce)
      : store_(store), match_(std::move(match)), capacity_(capacity), coalesce_(coalesce) {}

  StoreHandle store() const { return store_; }
  const router::KeyMatch& match() const { return match_; }

  // Queues a change (ingestion thread). Returns false if the subscriber has ended.
  bool Push(const Change& change) ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the subscription with `status` after the changes already queued.
  void End(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_);
  // See router::Subscription::Take.
  absl::Status Take(size_t max, std::vector<router::ChangeEvent>* out) ABSL_LOCKS_EXCLUDED(mu_);
  // See router::Subscription::SetNotify.
  void SetNotify(std::function<void()> notify) ABSL_LOCKS_EXCLUDED(notify_mu_);
  // Runs the notify callback, if any.
  void Notify() ABSL_LOCKS_EXCLUDED(notify_mu_);

  bool ended() const { return ended_.load(); }
  size_t pending() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  using KeyId = std::pair<int32_t, std::string>;

  const StoreHandle store_;
  const router::KeyMatch match_;
  const size_t capacity_;
  const bool coalesce_;

  mutable absl::Mutex mu_;
  std::list<router::ChangeEvent> queue_ ABSL_GUARDED_BY(mu_);
  // With coalesce: the latest pending change of each key.
  absl::flat_hash_map<KeyId, std::list<router::ChangeEvent>::iterator> latest_ ABSL_GUARDED_BY(mu_);
  absl::Status end_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> ended_{false};

  // Separate from mu_: the callback may call Take (which locks mu_).
  absl::Mutex notify_mu_;
  std::function<void()> notify_ ABSL_GUARDED_BY(notify_mu_);
};

// Fans committed changes out to push subscribers. The ingestion thread calls Publish right
// after each local commit, holding commit_mutex() around commit and publish; a subscriber
// registers (and takes its snapshot) holding the same mutex, so it starts exactly at a batch
// boundary: everything committed before is in its snapshot, everything after is queued.
// Thread-safe.
class SubscriptionHub {
 public:
  explicit SubscriptionHub(IngestMetrics* metrics = nullptr) : metrics_(metrics) {}

  absl::Mutex& commit_mutex() { return commit_mu_; }

  // Registers a subscriber; call with commit_mutex() held.
  std::shared_ptr<SubscriberQueue> Register(StoreHandle store, router::KeyMatch match,
                                            size_t capacity, bool coalesce)
      ABSL_LOCKS_EXCLUDED(mu_);
  void Unregister(const SubscriberQueue* queue) ABSL_LOCKS_EXCLUDED(mu_);

  // True if anyone is subscribed or about to (lets the ingestor skip logging changes).
  bool active() const { return count_.load() + announced_.load() > 0; }

  // A subscriber on its way: batches started from now on log every change.
  void Announce(int delta) { announced_ += delta; }
  // The ingestor started a batch without logging its changes (nobody listened): a subscriber
  // must not register before it is committed, or that batch's changes would reach it folded.
  // Set before checking active() at the start of a batch (and cleared if it is tracked after
  // all): with Announce-then-check on the subscriber's side, one of the two always sees the
  // other (sequentially consistent atomics).
  void SetUntrackedBatch(bool untracked) { untracked_batch_.store(untracked); }
  bool untracked_batch() const { return untracked_batch_.load(); }
  // Called by the ingestor with commit_mutex() held, after each commit and publish.
  void BatchCommitted() {
    untracked_batch_.store(false);
    committed_.SignalAll();
  }
  // Signalled (with commit_mutex()) after each commit.
  absl::CondVar& committed() { return committed_; }
  size_t size() const { return static_cast<size_t>(count_.load()); }

  // Queues each change for the subscribers it matches (call with commit_mutex() held, right
  // after the commit that made them). Never blocks on a subscriber.
  void Publish(const std::vector<Change>& changes) ABSL_LOCKS_EXCLUDED(mu_);

  // Ends every subscriber with `status` (partitions are leaving this node: their subscribers
  // can no longer be served without a gap).
  void EndAll(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void UpdateGauge() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  IngestMetrics* const metrics_;
  absl::Mutex commit_mu_;
  absl::CondVar committed_;
  std::atomic<int> announced_{0};
  std::atomic<bool> untracked_batch_{false};
  absl::Mutex mu_;
  std::vector<std::shared_ptr<SubscriberQueue>> subscribers_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> count_{0};
};

}  // namespace kiq::node
