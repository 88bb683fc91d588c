#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "router/local_stores.h"
#include "router/types.h"

namespace kiq::router {

// Which keys a subscription follows.
struct KeyMatch {
  enum class Kind { kAll, kKey, kPrefix };
  Kind kind = Kind::kAll;
  std::string text;  // the key (kKey) or the prefix (kPrefix)

  bool Matches(absl::string_view key) const {
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

struct SubscribeSpec {
  std::string store;
  KeyMatch match;
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
  // strictly after the previous page; empty when the snapshot is exhausted. Only for
  // subscriptions made with `snapshot`.
  virtual absl::StatusOr<std::vector<KeyValue>> NextSnapshotPage(size_t limit) = 0;

  // Moves up to `max` pending changes into `out`. Returns OK while the subscription is live;
  // once it has ended (overflow: RESOURCE_EXHAUSTED; a partition moved away: ABORTED) and no
  // change is left before the end, returns that status.
  virtual absl::Status Take(size_t max, std::vector<ChangeEvent>* out) = 0;

  // `notify` runs (on the ingestion thread; it must not block) whenever changes become
  // pending or the subscription ends. Replaces any previous callback; nullptr clears it, and
  // after SetNotify returns the previous callback is no longer running nor will run.
  virtual void SetNotify(std::function<void()> notify) = 0;
};

}  // namespace kiq::router
