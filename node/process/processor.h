#pragma once

#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/kafka/record.h"
#include "common/topology/partitioner.h"
#include "kiq/v1/topology.pb.h"
#include "node/store/staged_batch.h"
#include "router/port/local_stores.h"

namespace kiq::node {

// Materializes one store from the records of its source. Not thread-safe: driven by the
// ingestion thread.
class Processor {
 public:
  virtual ~Processor() = default;

  // Applies one record to `batch`. INVALID_ARGUMENT means the record is bad for this store
  // (it is counted, dead-lettered and skipped; the batch stays valid); any other error is a
  // storage failure that stops ingestion.
  virtual absl::Status Process(const Record& record, StagedBatch& batch) = 0;

  // Record–window pairs dropped as too late (after their window's grace period) since the
  // last call; windowed stores only.
  virtual int64_t TakeLateRecords() { return 0; }
  // Records dropped because their group_by key was null or missing, since the last call; the
  // first stage of a group_by store only.
  virtual int64_t TakeNullKeyRecords() { return 0; }
};

// Builds the processor of `store` (validated by ValidateTopology) over its column family
// `handle`; `value_format` is its source's (fields are read from JSON values). Windowed
// stores need `engine` (the one `handle` belongs to) to sweep expired windows.
absl::StatusOr<std::unique_ptr<Processor>> MakeProcessor(const kiq::v1::Store& store,
                                                         kiq::v1::Format value_format,
                                                         StoreHandle handle,
                                                         const StoreEngine* engine = nullptr);

// An internal stage that re-keys (the first half of a group_by store, or the stage before a
// join on a field): applies `filter` (if any) to records of `value_format`, reads the key
// `rekey` says (field, fields or constant) and forwards each record under it to `topic` (a
// repartition topic of `partitions` partitions, mapped by `partitioner`) through
// StagedBatch::Forward.
std::unique_ptr<Processor> MakeRepartitionProcessor(const kiq::v1::GroupBy& rekey,
                                                    const kiq::v1::Filter* filter,
                                                    kiq::v1::Format value_format, std::string topic,
                                                    int32_t partitions,
                                                    PartitionerKind partitioner);

}  // namespace kiq::node
