#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <librdkafka/rdkafkacpp.h>

#include "absl/status/statusor.h"
#include "common/types.h"
#include "node/ingest/record_headers.h"
#include "node/process/compiled_topology.h"
#include "node/store/staged_batch.h"

namespace kiq::node {

// Reassembles the batches ChangelogWriter wrote to one store partition's changelog: records
// are held until the one marked `kiq.batch.end` (with the source offset the batch ends at)
// arrives, then the whole batch is staged at once, with the changelog offset, the source
// offset and the upstream dedup watermarks it reflects. A batch whose end never comes (its
// writer died before its flush succeeded) is never staged: that writer never committed it.
// A batch whose every record names the source record that made it (an exact batch: its owner
// had subscribers) is staged write by write, each attributed to that record of `source_topic`,
// so that a batch tracking writes reports the very changes the owner pushed.
// Used by a restore and by a standby replica alike. Not thread-safe.
class ChangelogBatches {
 public:
  ChangelogBatches(const CompiledStore& store, PartitionId p, std::string source_topic)
      : store_(store), partition_(p), source_topic_(std::move(source_topic)) {}

  // Takes the changelog record `m`; stages the batch it completes into `batch` and returns the
  // number of entries staged (0 if it completes none). Take, then Stage if it completed one.
  absl::StatusOr<int64_t> Add(const RdKafka::Message& m, StagedBatch& batch);
  // Takes the changelog record `m`: whether it completes a batch (then held until Stage, so
  // that the caller can choose how to stage it from complete_exact(); take no record before).
  bool Take(const RdKafka::Message& m);
  // With a batch completed by Take: whether every record of it names its source record.
  bool complete_exact() const;
  // Stages the batch Take completed into `batch`: the number of entries staged.
  absl::StatusOr<int64_t> Stage(StagedBatch& batch);
  // Drops the records of an incomplete batch (the replica starts again from its checkpoint).
  void Reset() { pending_.clear(); }

  // The changelog offset after the last record taken, and the source offset of the last
  // complete batch (nullopt before the first).
  int64_t next_offset() const { return next_offset_; }
  void set_next_offset(int64_t next) { next_offset_ = next; }
  std::optional<int64_t> source_next() const { return source_next_; }
  // Whether the last complete batch was exact (its changes are the owner's, write by write);
  // a folded one holds each key's last write only.
  bool last_batch_exact() const { return last_batch_exact_; }
  const CompiledStore& store() const { return store_; }
  PartitionId partition() const { return partition_; }

 private:
  const CompiledStore& store_;
  struct Pending {
    std::string key;
    std::optional<std::string> value;
    std::optional<int64_t> record_offset;
  };
  const PartitionId partition_;
  const std::string source_topic_;
  std::vector<Pending> pending_;
  // Of the record that completed the held batch (Take returned true): its marks.
  ChangelogMarks end_marks_;
  int64_t next_offset_ = 0;
  std::optional<int64_t> source_next_;
  bool last_batch_exact_ = false;
};

}  // namespace kiq::node
