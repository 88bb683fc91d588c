#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include <grpcpp/support/status.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kiq/v1/query.pb.h"
#include "router/peer_pool.h"
#include "router/query_metrics.h"

namespace kiq::router {

// Forward coalescing: concurrent forwarded Gets bound to the same owner (same store and read
// options) ride one forwarded GetMany (marked kToOwner) instead of one Get call each. On a
// small machine a forwarded Get is bounded by gRPC's per-call cost (client call, server call,
// their completion-queue hops) on both nodes, not by the read.
//
// Adaptive, without a timer (group commit, Nagle without the delay): while fewer than
// `window` coalesced calls to a lane are outstanding, a Get is sent at once (one in flight
// pays no added latency); otherwise it waits in the lane's queue, and the queue leaves as one
// GetMany (at most `max_keys` keys) when a call returns. A full queue leaves at once. A key
// that leaves alone goes as a plain forwarded Get (what the owner answers cheapest).
//
// The coalescer only carries keys: a key the coalesced call did not answer (the call failed:
// a partition moved, restoring, owner unreachable, deadline) is handed back unanswered, and
// its caller forwards it on its own, through the routing loop's usual retries. So every key's
// outcome is what a single forward would give, and no key's failure fails another.
//
// Deadlines and cancellation: a coalesced call carries the earliest deadline of its keys and
// no caller's cancellation (a caller that goes away does not cancel the others' keys; its
// answer is dropped by its own call). A key does not queue behind calls whose deadline is
// later than its own (by more than 100 ms): it is handed back at once, to be forwarded alone.
//
// Thread-safe; callbacks run on gRPC threads, never under the lock. `peers` and `metrics`
// (optional) outlive this object.
class ForwardCoalescer {
 public:
  struct Options {
    // Coalesced calls per lane in flight before keys queue. 0 disables coalescing.
    int window = 2;
    int max_keys = 256;
  };
  // Called once per coalesced call when it ends, with the owner's node id (peer metrics).
  using CallObserver = std::function<void(absl::string_view node_id, const grpc::Status&)>;

  ForwardCoalescer(PeerPool& peers, QueryMetrics* metrics, CallObserver observer, Options options)
      : peers_(peers), metrics_(metrics), observer_(std::move(observer)), options_(options) {}

  bool enabled() const { return options_.window > 0 && options_.max_keys > 0; }
  // Keys waiting in some lane's queue now.
  size_t queued() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    size_t n = 0;
    for (const auto& [key, lane] : lanes_) n += lane.queue.size();
    return n;
  }

  // How a key's forward ended. OK: `*response` holds the answer, as a forwarded Get gives it.
  // Otherwise, with `shared`: the call it shared failed (maybe for another key): forward it
  // alone. Without: it went alone (a plain forwarded Get) and failed with `status`.
  using Done = std::function<void(const grpc::Status& status, bool shared)>;
  // Reads `request.key()` (UTF-8) of `request`'s store with its allow_stale and
  // max_lag_records at the owner at `endpoint` (node `node_id`). `response` must stay valid
  // until `done` runs; `done` may run inline.
  void Forward(const std::string& endpoint, const std::string& node_id,
               const kiq::v1::GetRequest& request, absl::Time deadline,
               kiq::v1::GetResponse* response, Done done) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Waiter {
    std::string key;
    absl::Time deadline;
    kiq::v1::GetResponse* response;
    Done done;
  };
  // Endpoint, store, allow_stale, max_lag_records: what one GetMany forward carries.
  using LaneKey = std::tuple<std::string, std::string, bool, int64_t>;
  struct Lane {
    std::string node_id;
    int outstanding = 0;
    // The latest deadline among the outstanding calls: a key with an earlier deadline does
    // not wait behind them.
    absl::Time latest_deadline = absl::InfinitePast();
    std::vector<Waiter> queue;
  };
  // Sends `waiters` as one GetMany on `key`'s lane (counted outstanding by the caller).
  void Send(const LaneKey& key, const std::string& node_id, std::vector<Waiter> waiters)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Takes the next call's keys off `lane`'s queue and counts it outstanding; empty if none.
  std::vector<Waiter> TakeBatch(Lane& lane) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  PeerPool& peers_;
  QueryMetrics* const metrics_;
  const CallObserver observer_;
  const Options options_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<LaneKey, Lane> lanes_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiq::router
