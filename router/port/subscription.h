#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/topology/window_key.h"
#include "common/types.h"
#include "router/port/local_stores.h"

namespace kiq::router {

// Which keys a subscription follows.
struct KeyMatch {
  enum class Kind { kAll, kKey, kPrefix };
  Kind kind = Kind::kAll;
  std::string text;  // the key (kKey) or the prefix (kPrefix)
  // Stored keys are window keys (router/window_key.h): match their user key, and never the
  // partition's stream-time entry.
  bool windowed = false;

  // `key` is a stored key.
  bool Matches(absl::string_view stored_key) const {
    absl::string_view key = stored_key;
    if (windowed) {
      std::optional<DecodedWindowKey> w = DecodeWindowKey(stored_key);
      if (!w) return false;
      key = w->user_key;
    }
    switch (kind) {
      case Kind::kAll:
        return true;
      case Kind::kKey:
        return key == text;
      case Kind::kPrefix:
        return key.size() >= text.size() && key.substr(0, text.size()) == text;
    }
    return false;
  }
};

// One materialized change to a store entry, as a subscriber receives it. Raw bytes: rendering
// (RenderEntry) happens on the subscriber's side, never on the ingestion thread.
struct ChangeEvent {
  PartitionId partition;
  std::string key;
  std::optional<std::string> old_value;
  std::optional<std::string> new_value;  // nullopt: deleted
  // The source record whose processing made the change (the last one, after coalescing).
  std::string topic;
  int64_t offset = -1;
};

// Where a subscription stands: partition → the next source offset. Every change made by a
// record before it has been handed out (Take). A subscription that moves to another owner
// resumes from here.
using Progress = std::map<int32_t, int64_t>;

// One page of a subscription's snapshot. Empty and not done: the next entries are not there
// yet (they come from another node); the subscription notifies when they are.
struct SnapshotPage {
  std::vector<KeyValue> entries;
  bool done = false;
};

struct SubscribeSpec {
  std::string store;
  KeyMatch match;
  // The partitions to follow; empty: every partition of the store.
  std::vector<int32_t> partitions;
  // Resume a subscription that was following these partitions elsewhere, from these
  // positions: changes before them are not delivered again, none after them is skipped (or
  // ABORTED if this node cannot replay them). No snapshot is taken of resumed partitions.
  Progress resume;
  bool snapshot = false;
  // On overflow: keep the latest pending change per key instead of ending the subscription.
  bool coalesce = false;
  size_t buffer_size = 0;  // 0: the server's default
};

// A registered subscriber. Changes are queued by the ingestion thread right after each local
// commit (never blocking it); the stream drains them. If `snapshot` was asked, the snapshot is
// the committed state at the very batch boundary where queuing started: snapshot + queued
// changes have no gap and no duplicate. Destroying it unregisters. Thread-safe.
class Subscription {
 public:
  virtual ~Subscription() = default;

  // The next page of snapshot entries (partition by partition, key order within one),
  // strictly after the previous page; `done` once the snapshot is exhausted. Only for
  // subscriptions made with `snapshot`. May read the store: never call it from a notify
  // callback while a local snapshot is pending.
  virtual absl::StatusOr<SnapshotPage> NextSnapshotPage(size_t limit) = 0;

  // Moves up to `max` pending changes into `out`. Returns OK while the subscription is live;
  // once it has ended (overflow: RESOURCE_EXHAUSTED; partitions lost: ABORTED/UNAVAILABLE)
  // and no change is left before the end, returns that status. When the queue is drained
  // and `progress` is given, it receives the subscription's progress.
  virtual absl::Status Take(size_t max, std::vector<ChangeEvent>* out,
                            Progress* progress = nullptr) = 0;

  // `notify` runs (on the ingestion thread; it must not block) whenever changes become
  // pending or the subscription ends. Replaces any previous callback; nullptr clears it, and
  // after SetNotify returns the previous callback is no longer running nor will run.
  virtual void SetNotify(std::function<void()> notify) = 0;
};

}  // namespace kiq::router
