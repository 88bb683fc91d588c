#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kiq/v1/peer.pb.h"
#include "router/peer_pool.h"
#include "router/port/change_queue.h"
#include "router/port/local_stores.h"
#include "router/port/subscription.h"
#include "router/query_metrics.h"
#include "router/routing_table.h"

namespace kiq::router {

class SubscriptionPlacer;

// Where a fan-in finds the owners of its partitions.
struct FanInCluster {
  const RoutingTable* table = nullptr;  // optional: without it, only local partitions
  PeerPool* peers = nullptr;
  std::string self_node_id;
  QueryMetrics* metrics = nullptr;  // optional
};

// A subscription over every partition of a store, wherever they are: this process's own
// partitions through LocalStores::Subscribe, the others through a PeerService
// SubscribePartitions stream from each owner, merged into one bounded queue.
//
// Following partitions: every source reports, per partition, the source offset up to which
// it has sent every change (PROGRESS). When a source ends UNAVAILABLE (the partitions were
// revoked, the node shut down or died), its partitions are placed again at their next
// ACTIVE owner and resume from that offset; the owner replays what it made since (see
// node/subscription_hub.h) or, if it cannot, the subscription ends ABORTED naming the
// partition. A partition moving in the middle of its snapshot ends it ABORTED too. A
// partition without an ACTIVE owner is waited for, up to `give_up`, then UNAVAILABLE.
//
// Snapshot (FROM_SNAPSHOT): the sources' snapshots are handed out one source after the other,
// this process's first (so that a notify never has to read RocksDB); changes that arrive
// meanwhile wait in the queue until the whole snapshot is out. Thread-safe.
class FanIn : public std::enable_shared_from_this<FanIn> {
 public:
  FanIn(const LocalStores& local, FanInCluster cluster, StoreInfo info, SubscribeSpec spec,
        absl::Duration give_up);
  ~FanIn();

  // Places every partition it can now. Returns false once nothing is left to place (or the
  // subscription has ended).
  bool PlacePending() ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the subscription with `status` (if it has not ended) and lets go of every source.
  void Close(absl::Status status) ABSL_LOCKS_EXCLUDED(mu_);

  absl::StatusOr<SnapshotPage> NextSnapshotPage(size_t limit) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Take(size_t max, std::vector<ChangeEvent>* out, Progress* progress) {
    return queue_.Take(max, out, progress);
  }
  void SetNotify(std::function<void()> notify) { queue_.SetNotify(std::move(notify)); }

  void set_placer(SubscriptionPlacer* placer) { placer_ = placer; }

 private:
  class RemoteStream;
  struct Source;
  struct PartitionState {
    Source* source = nullptr;  // nullptr: pending
    // The offset every change before which has been queued; set from the first PROGRESS.
    std::optional<int64_t> at;
    // The record (source offset) of the last change queued, and how many of its changes were:
    // an owner sends a change before the PROGRESS that covers it, so one that dies in between
    // (kill -9) leaves `at` below changes already delivered, and its successor, resuming from
    // `at`, sends them again. `resent` counts the changes of that record the current source
    // has sent (reset when the partition is placed); see Redelivered.
    int64_t last_offset = -1;
    int64_t last_count = 0;
    int64_t resent = 0;
    bool logged_redelivery = false;  // since it was placed
    // FROM_SNAPSHOT and its snapshot not received in full yet.
    bool snapshot_needed = false;
    int attempts = 0;
    absl::Time next_attempt;
    absl::Time pending_since;
  };

  // What a callback let go of under mu_, acted on after it is released: remote streams to
  // stop (with whether they were paused) and local subscriptions to destroy (never from their
  // own notify: destroying one waits for its notify to return).
  struct Released {
    std::vector<std::pair<RemoteStream*, bool>> stops;
    std::vector<std::shared_ptr<Subscription>> locals;
  };

  void OnLocalNotify(Source* source) ABSL_LOCKS_EXCLUDED(mu_);
  // Whether `change` (from its partition's current source) was already queued: sent again by
  // a source that resumed below it. Counts it otherwise. Changes of a partition come in record
  // order, each record's changes the same every time they are made (a new owner re-makes or
  // replays them), so a record's changes are told apart by their rank. Not with coalescing
  // (a coalesced change carries a later offset than those queued behind it).
  bool Redelivered(const ChangeEvent& change) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A message of a remote source. Returns true if the stream should read on.
  bool OnPeerMessage(Source* source, kiq::v1::PeerChange message) ABSL_LOCKS_EXCLUDED(mu_);
  // A remote stream has nothing more to read: lets gRPC finish it.
  void OnStreamFinished(Source* source) ABSL_LOCKS_EXCLUDED(mu_);
  // A source ended with `status` (a remote stream's OnDone: `remote_done`).
  void OnSourceEnd(Source* source, absl::Status status, bool remote_done) ABSL_LOCKS_EXCLUDED(mu_);
  void EndLocked(absl::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Detaches `source` from its partitions (pending again) and lets go of it.
  void Unplace(Source* source) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Acts on what was let go of; `destroy_locals` false from a local notify.
  void Release(bool destroy_locals) ABSL_LOCKS_EXCLUDED(mu_);
  // The resume positions known for `partitions` (into `resume`); true if any of them still
  // needs its snapshot.
  bool ResumeOf(const std::vector<int32_t>& partitions, Progress* resume) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Attaches a new source to its partitions (snapshot_received follows from snapshot).
  void Install(std::shared_ptr<Source> source) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::shared_ptr<Source> Find(const Source* source) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Retry(int32_t p, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool ended() ABSL_LOCKS_EXCLUDED(mu_);

  const LocalStores& local_;
  const FanInCluster cluster_;
  const StoreInfo info_;
  const SubscribeSpec spec_;
  const absl::Duration give_up_;
  SubscriptionPlacer* placer_ = nullptr;

  ChangeQueue queue_;
  absl::Mutex place_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // one PlacePending at a time
  absl::Mutex mu_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<PartitionState> partitions_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<Source>> sources_ ABSL_GUARDED_BY(mu_);
  // Sources whose snapshot is not fully handed out yet, in hand-out order.
  std::deque<Source*> snapshot_order_ ABSL_GUARDED_BY(mu_);
  // Ended sources, kept while a remote stream may still call back or entries of their
  // snapshot remain to be handed out.
  std::vector<std::shared_ptr<Source>> ended_sources_ ABSL_GUARDED_BY(mu_);
  Released released_ ABSL_GUARDED_BY(mu_);
};

// The Subscription face of a FanIn: destroying it ends the fan-in.
class FanInSubscription final : public Subscription {
 public:
  explicit FanInSubscription(std::shared_ptr<FanIn> fan_in) : fan_in_(std::move(fan_in)) {}
  ~FanInSubscription() override;
  absl::StatusOr<SnapshotPage> NextSnapshotPage(size_t limit) override {
    return fan_in_->NextSnapshotPage(limit);
  }
  absl::Status Take(size_t max, std::vector<ChangeEvent>* out, Progress* progress) override {
    return fan_in_->Take(max, out, progress);
  }
  void SetNotify(std::function<void()> notify) override { fan_in_->SetNotify(std::move(notify)); }

 private:
  std::shared_ptr<FanIn> fan_in_;
};

// Places the pending partitions of fan-ins in the background: every 100 ms while some are
// pending, and at once when woken. One thread per process, started on first use.
class SubscriptionPlacer {
 public:
  SubscriptionPlacer() = default;
  ~SubscriptionPlacer();
  void Wake(std::weak_ptr<FanIn> fan_in) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run();

  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::weak_ptr<FanIn>> pending_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<std::thread> thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiq::router
