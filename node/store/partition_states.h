#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "common/types.h"

namespace kiq::node {

enum class PartitionState { kRestoring, kActive, kFailed };
absl::string_view PartitionStateName(PartitionState s);

// The partitions this node owns (task = partition number, across every source topic and
// store) and the state of each. Written by the ingestion thread on assignment changes, read by
// every query. A partition absent from the map is not owned here. Thread-safe.
class PartitionStates {
 public:
  void Set(PartitionId p, PartitionState state, std::string reason = "") ABSL_LOCKS_EXCLUDED(mu_);
  void Remove(PartitionId p) ABSL_LOCKS_EXCLUDED(mu_);
  void Clear() ABSL_LOCKS_EXCLUDED(mu_);

  // OK iff owned and ACTIVE; FAILED_PRECONDITION "NOT_OWNER ..." if not owned here;
  // UNAVAILABLE with the reason if restoring or failed.
  absl::Status CheckReadable(PartitionId p) const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::pair<PartitionId, PartitionState>> Snapshot() const ABSL_LOCKS_EXCLUDED(mu_);
  // nullopt if not owned here.
  std::optional<PartitionState> StateOf(PartitionId p) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry {
    PartitionState state;
    std::string reason;
  };
  mutable absl::Mutex mu_;
  absl::flat_hash_map<int32_t, Entry> owned_ ABSL_GUARDED_BY(mu_);
};

// The partitions one ingestion thread owns, mirrored into the node's PartitionStates (which
// queries and the membership advertisement read): with several ingestion threads, each one
// tells its own partitions from the others' (which it must neither activate nor forget).
// Written by its ingestion thread only; thread-safe.
class OwnedPartitions {
 public:
  explicit OwnedPartitions(PartitionStates& node) : node_(node) {}
  void Set(PartitionId p, PartitionState state, std::string reason = "") {
    own_.Set(p, state, reason);
    node_.Set(p, state, std::move(reason));
  }
  // Unreadable on the node first.
  void Remove(PartitionId p) {
    node_.Remove(p);
    own_.Remove(p);
  }
  std::vector<std::pair<PartitionId, PartitionState>> Snapshot() const { return own_.Snapshot(); }
  std::optional<PartitionState> StateOf(PartitionId p) const { return own_.StateOf(p); }
  // Every partition of the node, this thread's and the others'.
  const PartitionStates& node() const { return node_; }

 private:
  PartitionStates own_;
  PartitionStates& node_;
};

}  // namespace kiq::node
