#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kiq/v1/membership.pb.h"
#include "node/membership/membership_publisher.h"
#include "node/process/compiled_topology.h"
#include "node/store/partition_states.h"
#include "node/store/position_tracker.h"
#include "node/store/standby_partitions.h"

namespace kiq::node {

// Keeps this node's advertisement on the members topic fresh: a MemberRecord (endpoints,
// stores, owned partitions with state and offsets, standby replicas with their lag, group
// generation, lease) published at once when ownership changes (Notify) and every `interval`
// as a lease renewal; a tombstone on Stop. Thread-safe: Notify from any thread; its own thread publishes.
class Advertiser {
 public:
  struct Options {
    std::string node_id;
    std::string application_id;
    std::string grpc_endpoint;
    std::string http_endpoint;
    absl::Duration interval = absl::Seconds(3);
    absl::Duration lease = absl::Seconds(10);
  };
  Advertiser(Options options, const CompiledTopology& topology, const PartitionStates& states,
             const PositionTracker& positions, std::function<Generation()> generation,
             MembershipPublisher& publisher, const StandbyPartitions* standby = nullptr);
  ~Advertiser();

  void Start();
  void Notify() ABSL_LOCKS_EXCLUDED(mu_);
  // Stops the thread and writes the tombstone (waiting up to `timeout` for it).
  void StopWithTombstone(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  kiq::v1::MemberRecord BuildRecord() const;

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  void AddOffsets(const PositionTracker& positions, PartitionId p,
                  kiq::v1::OwnedPartition* owned) const;

  const Options options_;
  const CompiledTopology& topology_;
  const PartitionStates& states_;
  const PositionTracker& positions_;
  const StandbyPartitions* const standby_;  // optional: replicas advertised as STANDBY
  const std::function<Generation()> generation_;
  MembershipPublisher& publisher_;

  absl::Mutex mu_;
  bool dirty_ ABSL_GUARDED_BY(mu_) = true;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace kiq::node
