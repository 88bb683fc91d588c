#pragma once

#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "node/store/committed_cache.h"
#include "node/store/store_engine.h"

namespace kiq::node {

// One materialized change to a store entry, produced by a committed batch (used for
// changelogs and push subscriptions).
struct Change {
  StoreHandle store;
  PartitionId partition;
  std::string key;
  std::optional<std::string> old_value;
  std::optional<std::string> new_value;
  // The source record that made the change (the last one, when a batch folds several writes
  // of one key into one change); empty / -1 when unknown (restores).
  std::string topic;
  int64_t offset = -1;
};

// A record a batch sends on to a repartition topic (group_by), produced before the batch is
// committed, like the changelog.
struct ForwardedRecord {
  std::string topic;
  PartitionId partition;
  std::string key;
  std::string value;
  int64_t timestamp_ms = 0;
  // Where it came from, so that the consumer can drop re-forwarded duplicates.
  PartitionId upstream_partition;
  Offset upstream_offset;
};

// Stages the effects of a batch of records in memory, one slot per (store, partition, key): a
// key updated many times in a batch is read from RocksDB once and written once. Commit turns
// the slots, the adjusted entry counts and the source offsets into one WriteBatch.
//
// A batch can read through an older batch not yet committed (see ReadThrough): the ingestor
// stages batch N+1 while batch N's changelog is being delivered, and N+1 must see N's values.
//
// With a CommittedCache, a key is read from the cache before the engine (after the base), the
// cache is filled with what the engine returned, and a successful Commit puts every value the
// batch ends with into it; a failed or cleared batch leaves it as it was.
//
// Not thread-safe: owned and used by the single ingestion thread.
class StagedBatch {
 public:
  // `cache` (optional) must outlive the batch; batches that read through one another share it.
  explicit StagedBatch(StoreEngine& engine, CommittedCache* cache = nullptr)
      : engine_(engine), cache_(cache) {}

  // The value of `key` as this batch sees it (staged, else stored). The pointer is valid until
  // the next Commit or Clear (slots live in a node map, so they do not move as it grows).
  absl::StatusOr<const std::optional<std::string>*> Read(StoreHandle store, PartitionId p,
                                                         absl::string_view key);
  // Until unset, a key this batch has no slot for is read from `base`'s slot if it has one,
  // else from the engine: `base` is an older batch that will be committed before this one
  // (or discarded with it). Unset it as soon as `base` is committed or cleared.
  void ReadThrough(const StagedBatch* base) { base_ = base; }
  // Exchanges everything staged (slots, offsets, forwards, write log, counters) with `other`;
  // both must use the same engine and cache. The read-through bases are left as they were.
  void Swap(StagedBatch& other);
  // Stages a new value (nullopt deletes the key).
  absl::Status Write(StoreHandle store, PartitionId p, absl::string_view key,
                     std::optional<std::string> value);
  // The source record being processed: the changes that following Writes make are attributed
  // to it.
  void SetSource(absl::string_view topic, Offset offset) {
    source_topic_.assign(topic.data(), topic.size());
    source_offset_ = offset.value();
  }
  // While set, every effective Write is also logged as its own Change, so that Commit can
  // report each change in order instead of one folded change per key (push subscriptions see
  // every intermediate value). Takes effect for an empty batch only: a log must be complete.
  void TrackWrites(bool track) {
    if (slots_.empty()) track_writes_ = track;
  }
  // With TrackWrites: every effective write so far, in write order (each attributed to its
  // source record). Empty otherwise.
  const std::vector<Change>& writes() const { return log_; }
  bool tracks_writes() const { return track_writes_; }
  // While set, a key this batch has no slot for (and the base has none for) is taken as absent
  // from the engine, without reading it: for a restore onto a store partition known to be
  // empty (nothing committed into it yet). Never set it for a partition that may hold keys.
  void AssumeStoredAbsent(bool absent) { assume_absent_ = absent; }
  // Records that every record of (topic, p) below `next` is in this batch.
  void SetOffset(absl::string_view topic, PartitionId p, Offset next);

  // Queues a record for a repartition topic.
  void Forward(ForwardedRecord record) { forwards_.push_back(std::move(record)); }
  const std::vector<ForwardedRecord>& forwards() const { return forwards_; }

  bool empty() const { return slots_.empty() && offsets_.empty() && forwards_.empty(); }
  size_t records() const { return records_; }
  void CountRecord() { ++records_; }

  // The changes this batch would make if committed now (for the write-ahead changelog).
  std::vector<Change> Changes() const;

  // Applies everything atomically. On success, appends the changes that took effect to
  // `changes` if given, and clears the batch: with TrackWrites, every effective write in
  // write order; otherwise one folded change per key, in no particular order.
  absl::Status Commit(std::vector<Change>* changes);
  void Clear();

  const absl::flat_hash_map<std::pair<std::string, int32_t>, Offset>& offsets() const {
    return offsets_;
  }

 private:
  struct SlotKey {
    int store;
    int32_t partition;
    std::string key;
    template <typename H>
    friend H AbslHashValue(H h, const SlotKey& k) {
      return H::combine(std::move(h), k.store, k.partition, k.key);
    }
    friend bool operator==(const SlotKey& a, const SlotKey& b) {
      return a.store == b.store && a.partition == b.partition && a.key == b.key;
    }
  };
  struct Slot {
    std::optional<std::string> original;  // as stored before this batch
    std::optional<std::string> current;
    bool dirty = false;
    std::string topic;  // the source record of the last write
    int64_t offset = -1;
  };
  absl::StatusOr<Slot*> SlotFor(StoreHandle store, PartitionId p, absl::string_view key);

  StoreEngine& engine_;
  CommittedCache* const cache_;
  const StagedBatch* base_ = nullptr;
  absl::node_hash_map<SlotKey, Slot> slots_;
  absl::flat_hash_map<std::pair<std::string, int32_t>, Offset> offsets_;
  std::vector<ForwardedRecord> forwards_;
  size_t records_ = 0;
  std::string source_topic_;
  int64_t source_offset_ = -1;
  bool track_writes_ = false;
  bool assume_absent_ = false;
  std::vector<Change> log_;  // with track_writes_
};

}  // namespace kiq::node
