#include "node/store/staged_batch.h"

#include "absl/strings/str_cat.h"

namespace kiq::node {

absl::StatusOr<StagedBatch::Slot*> StagedBatch::SlotFor(StoreHandle store, PartitionId p,
                                                        absl::string_view key) {
  SlotKey slot_key{store.index, p.value(), std::string(key)};
  auto it = slots_.find(slot_key);
  if (it != slots_.end()) return &it->second;
  // A new slot starts from the value this batch builds on, unchanged so far.
  auto start_from = [&](std::optional<std::string> value) {
    Slot slot;
    slot.original = value;
    slot.current = std::move(value);
    return &slots_.emplace(std::move(slot_key), std::move(slot)).first->second;
  };
  if (base_ != nullptr) {
    // The older batch's value is what RocksDB will hold once it commits, before this batch.
    if (auto b = base_->slots_.find(slot_key); b != base_->slots_.end()) {
      return start_from(b->second.current);
    }
  }
  if (assume_absent_) return start_from(std::nullopt);
  if (cache_ != nullptr) {
    if (const std::optional<std::string>* cached = cache_->Find(store.index, p.value(), key)) {
      return start_from(*cached);
    }
  }
  absl::StatusOr<std::optional<std::string>> stored = engine_.Get(store, p, key);
  if (!stored.ok()) return stored.status();
  // Committed (the base does not have the key, so its commit leaves it as it is).
  if (cache_ != nullptr) cache_->Put(store.index, p.value(), key, *stored);
  return start_from(std::move(*stored));
}

absl::StatusOr<const std::optional<std::string>*> StagedBatch::Read(StoreHandle store,
                                                                    PartitionId p,
                                                                    absl::string_view key) {
  absl::StatusOr<Slot*> slot = SlotFor(store, p, key);
  if (!slot.ok()) return slot.status();
  return &(*slot)->current;
}

absl::Status StagedBatch::Write(StoreHandle store, PartitionId p, absl::string_view key,
                                std::optional<std::string> value) {
  absl::StatusOr<Slot*> slot = SlotFor(store, p, key);
  if (!slot.ok()) return slot.status();
  Slot& s = **slot;
  if (track_writes_ && s.current != value) {
    log_.push_back(
        Change{store, p, std::string(key), s.current, value, source_topic_, source_offset_});
  }
  s.current = std::move(value);
  s.dirty = true;
  s.topic = source_topic_;
  s.offset = source_offset_;
  return absl::OkStatus();
}

void StagedBatch::SetOffset(absl::string_view topic, PartitionId p, Offset next) {
  offsets_[{std::string(topic), p.value()}] = next;
}

std::vector<Change> StagedBatch::Changes() const {
  std::vector<Change> out;
  for (const auto& [key, slot] : slots_) {
    if (!slot.dirty || slot.current == slot.original) continue;
    out.push_back(Change{StoreHandle{key.store}, PartitionId(key.partition), key.key, slot.original,
                         slot.current, slot.topic, slot.offset});
  }
  return out;
}

absl::Status StagedBatch::Commit(std::vector<Change>* changes) {
  StoreEngine::Batch batch = engine_.NewBatch();
  // Entry-count deltas per (store, partition), applied to the stored counts in the same batch.
  absl::flat_hash_map<std::pair<int, int32_t>, int64_t> deltas;
  for (auto& [key, slot] : slots_) {
    if (!slot.dirty || slot.current == slot.original) continue;
    const StoreHandle store{key.store};
    const PartitionId p(key.partition);
    if (slot.current) {
      batch.Put(store, p, key.key, *slot.current);
    } else {
      batch.Delete(store, p, key.key);
    }
    deltas[{key.store, key.partition}] += static_cast<int64_t>(slot.current.has_value()) -
                                          static_cast<int64_t>(slot.original.has_value());
  }
  for (const auto& [sp, delta] : deltas) {
    if (delta == 0) continue;
    const StoreHandle store{sp.first};
    const PartitionId p(sp.second);
    absl::StatusOr<int64_t> count = engine_.EntryCount(store, p);
    if (!count.ok()) return count.status();
    batch.SetEntryCount(store, p, *count + delta);
  }
  for (const auto& [tp, next] : offsets_) batch.SetOffset(tp.first, PartitionId(tp.second), next);
  if (absl::Status s = engine_.Apply(batch); !s.ok()) return s;
  if (cache_ != nullptr) {
    // What RocksDB holds now for every key the batch read or wrote (absent included).
    for (const auto& [key, slot] : slots_) {
      cache_->Put(key.store, key.partition, key.key, slot.current);
    }
  }

  if (changes != nullptr && track_writes_) {
    for (Change& c : log_) changes->push_back(std::move(c));
  } else if (changes != nullptr) {
    for (auto& [key, slot] : slots_) {
      if (!slot.dirty || slot.current == slot.original) continue;
      changes->push_back(Change{StoreHandle{key.store}, PartitionId(key.partition), key.key,
                                std::move(slot.original), std::move(slot.current),
                                std::move(slot.topic), slot.offset});
    }
  }
  Clear();
  return absl::OkStatus();
}

void StagedBatch::Swap(StagedBatch& other) {
  slots_.swap(other.slots_);
  offsets_.swap(other.offsets_);
  forwards_.swap(other.forwards_);
  std::swap(records_, other.records_);
  source_topic_.swap(other.source_topic_);
  std::swap(source_offset_, other.source_offset_);
  std::swap(track_writes_, other.track_writes_);
  log_.swap(other.log_);
}

void StagedBatch::Clear() {
  slots_.clear();
  offsets_.clear();
  forwards_.clear();
  log_.clear();
  records_ = 0;
}

}  // namespace kiq::node
