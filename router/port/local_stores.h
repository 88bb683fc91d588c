#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include "absl/functional/function_ref.h"
#include "absl/strings/string_view.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/topology/store_info.h"
#include "common/types.h"
#include "kiq/v1/query.pb.h"

namespace kiq::router {

class Subscription;
struct SubscribeSpec;

struct KeyValue {
  std::string key;
  std::string value;
  PartitionId partition;
};

// A key range: both bounds inclusive (Kafka Streams' range), nullopt = open.
struct KeyRange {
  std::optional<std::string> from;
  std::optional<std::string> to;
};

// Reads the partitions of stores that this process holds. Implemented by the node over its
// RocksDB stores; kiq-router has none. Thread-safe: called concurrently from query threads.
class LocalStores {
 public:
  virtual ~LocalStores() = default;

  // NOT_FOUND naming the store if there is no such store in the topology.
  virtual absl::StatusOr<StoreInfo> Describe(absl::string_view store) const = 0;
  virtual std::vector<StoreInfo> ListStores() const = 0;

  // OK iff partition `p` of `store` is owned here and ACTIVE. Otherwise UNAVAILABLE (restoring,
  // failed, no owner) or FAILED_PRECONDITION with "NOT_OWNER" in the message, with the reason.
  virtual absl::Status CheckReadable(absl::string_view store, PartitionId p) const = 0;

  virtual absl::StatusOr<std::optional<std::string>> Get(absl::string_view store, PartitionId p,
                                                         absl::string_view key) const = 0;

  // Up to `limit` entries of partition `p` inside `range`, in key byte order, strictly after
  // `after` when it is set.
  virtual absl::StatusOr<std::vector<KeyValue>> Scan(absl::string_view store, PartitionId p,
                                                     const KeyRange& range,
                                                     const std::optional<std::string>& after,
                                                     size_t limit) const = 0;

  // The number of entries in partition `p` (exact: kept with the entries; live windows of a
  // windowed store).
  virtual absl::StatusOr<int64_t> EntryCount(absl::string_view store, PartitionId p) const = 0;

  // Appends the offsets (per source topic) that partition `p` of `store` reflects.
  virtual void AppendPosition(absl::string_view store, PartitionId p,
                              kiq::v1::Position* out) const = 0;

  // Runs `read` (reads of partition `p` of `store`, which it may be asked to redo from
  // scratch) and appends the position they reflect. Where batches commit concurrently the
  // position is exact: `read` is redone if a batch committed while it ran, and after a few
  // tries the position is a lower bound (the position is read first). The caller checks that
  // `p` is readable first; a partition that stops being readable meanwhile is that error.
  // Default: AppendPosition, then `read`.
  virtual absl::Status ReadAt(absl::string_view store, PartitionId p, kiq::v1::Position* out,
                              absl::FunctionRef<absl::Status()> read) const;

  // Stale reads (allow_stale): like ReadAt, but on the standby replica of partition `p` held
  // here, if it serves and lags at most `max_lag_records` (0: any); `*lag` gets its lag. The
  // position is the replica's own, exact like ReadAt's. UNAVAILABLE with the reason if no such
  // replica is here. Default: UNAVAILABLE (no replicas here).
  virtual absl::Status ReadStandbyAt(absl::string_view store, PartitionId p,
                                     int64_t max_lag_records, kiq::v1::Position* out,
                                     int64_t* lag, absl::FunctionRef<absl::Status()> read) const;

  // OK iff a standby replica of partition `p` here would serve a ReadStandbyAt with this bound.
  virtual absl::Status CheckStandby(absl::string_view store, PartitionId p,
                                    int64_t max_lag_records) const;

  // Read your writes: blocks until `store` has processed every (topic, partition) in `min` up
  // to its offset, or until `deadline` (DEADLINE_EXCEEDED naming the partition still behind).
  virtual absl::Status WaitForPosition(absl::string_view store, const kiq::v1::Position& min,
                                       absl::Time deadline) const = 0;

  // A number that changes whenever a position here moves, and a wait for it to change (or for
  // `deadline`): one thread watches many read-your-writes waits with these
  // (router/position_waiter.h), checking each with WaitForPosition(..., absl::InfinitePast()).
  // Default (nothing here ever moves, or a test double): 0, and a sleep until `deadline`.
  virtual uint64_t PositionVersion() const { return 0; }
  virtual void WaitForPositionChange(uint64_t seen, absl::Time deadline) const;

  // Push query over partitions held here: registers a subscriber for every change of
  // `spec.store` matching `spec.match` in `spec.partitions` (all if empty), resuming those in
  // `spec.resume`. Each must be ACTIVE here (UNAVAILABLE naming the others otherwise); a
  // resume this node cannot serve without a gap is ABORTED. Default: UNIMPLEMENTED (no stores
  // here).
  virtual absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(const SubscribeSpec& spec) const;
};

}  // namespace kiq::router
