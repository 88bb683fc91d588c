#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "kiq/v1/membership.pb.h"

namespace kiq::router {

// Who serves a partition, as the membership topic says.
struct PartitionOwner {
  kiq::v1::NodeInfo node;
  kiq::v1::PartitionState state = kiq::v1::PARTITION_STATE_UNSPECIFIED;
};

// A standby replica of a partition, as its node advertised it.
struct StandbyReplica {
  kiq::v1::NodeInfo node;
  int64_t lag_records = 0;
};

// The routing table: partition → owner, built from the records of the `<app>-members` topic
// (one per node, keyed by node id). The newest record per node wins (by written_at_ms); a
// record whose lease has passed is ignored at lookup time, so a node that died without a
// tombstone drops out when its lease runs out, without anyone writing anything; when two live
// records claim a partition (a rebalance in flight), the higher consumer group generation wins,
// then the newer record. If no live record claims a partition, there is no owner: the router
// answers UNAVAILABLE rather than guess.
//
// Thread-safe. Lookups copy a shared_ptr to an immutable snapshot under the mutex and read it
// outside, so one query costs one short lock; writers (the membership tailer, every few seconds
// per node) build a new snapshot and swap it in. The clock (injectable for tests) only decides
// lease expiry; WaitForChange deadlines are real time.
class RoutingTable {
 public:
  explicit RoutingTable(std::function<absl::Time()> clock = [] { return absl::Now(); });
  RoutingTable(const RoutingTable&) = delete;
  RoutingTable& operator=(const RoutingTable&) = delete;
  ~RoutingTable();

  // Takes a node's record unless a newer one (by written_at_ms) is already known for that node.
  // A record with an empty node_id is ignored.
  void Apply(const kiq::v1::MemberRecord& record) ABSL_LOCKS_EXCLUDED(mu_, write_mu_);
  // A tombstone: forgets the node.
  // A tombstone written at `written_at_ms` (known when tombstones are signed) does not remove a
  // record written after it: a replayed old tombstone cannot drop a live node.
  void Remove(absl::string_view node_id,
              int64_t written_at_ms = std::numeric_limits<int64_t>::max())
      ABSL_LOCKS_EXCLUDED(mu_, write_mu_);

  // The live owner of `partition`, nullopt if no live record claims it.
  std::optional<PartitionOwner> OwnerOf(int32_t partition) const ABSL_LOCKS_EXCLUDED(mu_);
  // The live, ACTIVE owner of `partition` if it is not `self_node_id`; UNAVAILABLE with the
  // reason (no owner, still `self_node_id`, restoring or failed) otherwise. Never a guess.
  absl::StatusOr<PartitionOwner> ActiveOwner(int32_t partition,
                                             absl::string_view self_node_id) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // The live standby replicas of `partition` (STANDBY entries of live records; never owners),
  // freshest first, then by node id.
  std::vector<StandbyReplica> Standbys(int32_t partition) const ABSL_LOCKS_EXCLUDED(mu_);
  // Live nodes, by node_id.
  std::vector<kiq::v1::NodeInfo> AllNodes() const ABSL_LOCKS_EXCLUDED(mu_);
  // Live nodes that list `store`, by node_id.
  std::vector<kiq::v1::NodeInfo> NodesForStore(absl::string_view store) const
      ABSL_LOCKS_EXCLUDED(mu_);
  // The live node `node_id`, nullopt if unknown or expired.
  std::optional<kiq::v1::NodeInfo> Node(absl::string_view node_id) const ABSL_LOCKS_EXCLUDED(mu_);

  // The members topic was just read (a broker answered the tailer, every second while it
  // can). When it has not been for kFeedStale, the feed is down and leases are judged as of the
  // last time it was read: a reader that cannot read cannot tell a dead node from one whose
  // renewals it does not see, so it keeps the last known owners (answers carry their
  // positions: a client sees how stale they are). Once the feed is back, lease time stays
  // behind real time by the outage until kLeaseCatchUp has passed (every live node has renewed
  // by then). Until the first call, leases follow the clock.
  void NoteFeedAlive() ABSL_LOCKS_EXCLUDED(lease_mu_);
  bool feed_down() const;
  static constexpr absl::Duration kFeedStale = absl::Milliseconds(2500);
  static constexpr absl::Duration kLeaseCatchUp = absl::Seconds(30);

  // Bumped by every Apply/Remove that changes the table (a renewed lease is a change). Leases
  // running out do not bump it: expiry is decided at lookup time.
  uint64_t version() const ABSL_LOCKS_EXCLUDED(mu_);
  // When the table last changed (the clock's time; InfinitePast before the first record).
  absl::Time changed_at() const ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until version() > seen or until `deadline`; true if it changed. Lets a router that
  // was told NOT_OWNER retry once the table has moved on.
  bool WaitForChange(uint64_t seen, absl::Time deadline) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Snapshot;

  std::shared_ptr<const Snapshot> Current() const ABSL_LOCKS_EXCLUDED(mu_);
  void Install(std::shared_ptr<const Snapshot> next) ABSL_LOCKS_EXCLUDED(mu_)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(write_mu_);
  int64_t NowMs() const;

  // Constant after construction.
  const std::function<absl::Time()> clock_;

  // Lease time = min(real time, last read + kFeedStale) - held_back_ms_. Written under
  // lease_mu_ (the tailer); read without it by every lookup.
  absl::Mutex lease_mu_;
  std::atomic<int64_t> last_alive_ms_{-1};  // -1: never told (no tailer): leases follow the clock
  std::atomic<int64_t> held_back_ms_{0};
  int64_t up_since_ms_ ABSL_GUARDED_BY(lease_mu_) = 0;

  // Serializes writers, so that a snapshot is built outside mu_ from the one it replaces.
  absl::Mutex write_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  mutable absl::Mutex mu_;
  std::shared_ptr<const Snapshot> current_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time changed_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// A record as the metadata API shows it: grpc_endpoint "host:port" (or "[v6]:port") split into
// host and port (port 0 if it has none).
kiq::v1::NodeInfo ToNodeInfo(const kiq::v1::MemberRecord& record);

}  // namespace kiq::router
