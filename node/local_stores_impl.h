#pragma once

#include "node/process/compiled_topology.h"
#include "node/push/subscription_hub.h"
#include "node/store/partition_states.h"
#include "node/store/position_tracker.h"
#include "node/store/standby_partitions.h"
#include "node/store/store_engine.h"
#include "router/port/local_stores.h"

namespace kiq::node {

// The node's stores as the router sees them: RocksDB reads gated by partition ownership and
// state, with the position each partition reflects. Thread-safe; every dependency must
// outlive it.
class LocalStoresImpl final : public router::LocalStores {
 public:
  // `hub` is optional: without it, Subscribe is UNIMPLEMENTED. `standby` is optional: without
  // it, no read is served by a standby replica.
  LocalStoresImpl(const CompiledTopology& topology, const StoreEngine& engine,
                  const PartitionStates& states, const PositionTracker& positions,
                  SubscriptionHub* hub = nullptr, const StandbyPartitions* standby = nullptr)
      : topology_(topology),
        engine_(engine),
        states_(states),
        positions_(positions),
        hub_(hub),
        standby_(standby) {}

  absl::StatusOr<StoreInfo> Describe(absl::string_view store) const override;
  std::vector<StoreInfo> ListStores() const override;
  absl::Status CheckReadable(absl::string_view store, PartitionId p) const override;
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view store, PartitionId p,
                                                 absl::string_view key) const override;
  absl::StatusOr<std::vector<router::KeyValue>> Scan(absl::string_view store, PartitionId p,
                                                     const router::KeyRange& range,
                                                     const std::optional<std::string>& after,
                                                     size_t limit) const override;
  absl::StatusOr<int64_t> EntryCount(absl::string_view store, PartitionId p) const override;
  absl::Status ReadAt(absl::string_view store, PartitionId p, kiq::v1::Position* out,
                      absl::FunctionRef<absl::Status()> read) const override;
  void AppendPosition(absl::string_view store, PartitionId p,
                      kiq::v1::Position* out) const override;
  absl::Status CheckStandby(absl::string_view store, PartitionId p,
                            int64_t max_lag_records) const override;
  absl::Status ReadStandbyAt(absl::string_view store, PartitionId p, int64_t max_lag_records,
                             kiq::v1::Position* out, int64_t* lag,
                             absl::FunctionRef<absl::Status()> read) const override;
  absl::Status WaitForPosition(absl::string_view store, const kiq::v1::Position& min,
                               absl::Time deadline) const override;
  uint64_t PositionVersion() const override { return positions_.version(); }
  void WaitForPositionChange(uint64_t seen, absl::Time deadline) const override {
    positions_.WaitForChange(seen, deadline);
  }
  absl::StatusOr<std::unique_ptr<router::Subscription>> Subscribe(
      const router::SubscribeSpec& spec) const override;

 private:
  absl::StatusOr<const CompiledStore*> Find(absl::string_view store) const;
  // The position of `store`/`p` in `positions` (the owned partitions' or the replicas').
  void AppendPositionFrom(const PositionTracker& positions, absl::string_view store,
                          PartitionId p, kiq::v1::Position* out) const;
  // ReadAt over `positions`, `check` telling whether `p` is still readable there.
  absl::Status ReadExactly(const PositionTracker& positions, absl::string_view store,
                           PartitionId p, kiq::v1::Position* out,
                           absl::FunctionRef<absl::Status()> read,
                           absl::FunctionRef<absl::Status()> check) const;
  // The stream time of partition `p` of a windowed store; nullopt before its first record.
  absl::StatusOr<std::optional<int64_t>> StreamTime(const CompiledStore& store,
                                                    PartitionId p) const;
  // Scan of a windowed store: `range` bounds the user key; the stream time entry and expired
  // windows are left out.
  absl::StatusOr<std::vector<router::KeyValue>> ScanWindows(const CompiledStore& store,
                                                            PartitionId p,
                                                            const router::KeyRange& range,
                                                            const std::optional<std::string>& after,
                                                            size_t limit) const;

  const CompiledTopology& topology_;
  const StoreEngine& engine_;
  const PartitionStates& states_;
  const PositionTracker& positions_;
  SubscriptionHub* const hub_;
  const StandbyPartitions* const standby_;
};

}  // namespace kiq::node
