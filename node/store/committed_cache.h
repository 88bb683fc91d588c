#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"

#include "absl/container/node_hash_map.h"

namespace kiq::node {

// A bounded write-back cache of committed store values for ingestion: for (store, partition,
// key), what RocksDB holds, or that it holds nothing. Ingestion is read-modify-write, and a
// batch otherwise reads every key it touches from RocksDB even when the previous batch just
// wrote it (a count over 10k keys re-reads all of them per batch).
//
// Only a single writer may fill it: an entry is true only while nobody but its owner writes
// the partition. The owner fills it with what it read from the engine and with what each of
// its own successful commits wrote, never with staged or failed values, and drops a partition
// (Invalidate) before anyone else may have written it: gained, restored, reset or revoked.
//
// Bounded by `capacity_bytes` (keys, values and a per-entry overhead); the least recently used
// entries are evicted first. Not thread-safe: owned and used by the ingestion thread.
class CommittedCache {
 public:
  // What each entry is charged beyond its key and value bytes: the map node (key and value
  // strings, list links) with its allocation header, and the table slot pointing to it.
  static constexpr size_t kEntryOverhead = 160;

  explicit CommittedCache(size_t capacity_bytes) : capacity_(capacity_bytes) {}
  CommittedCache(const CommittedCache&) = delete;
  CommittedCache& operator=(const CommittedCache&) = delete;
  ~CommittedCache() = default;

  // The committed value (nullopt: known absent), or nullptr if not cached. Counts a hit or a
  // miss. The pointer is valid until the next Put, Invalidate or Clear.
  const std::optional<std::string>* Find(int store, int32_t partition, absl::string_view key);
  // Records that the engine holds `value` for the key (nullopt: nothing). A value larger than
  // the whole budget is not cached (an older entry of the key is dropped).
  void Put(int store, int32_t partition, absl::string_view key,
           const std::optional<std::string>& value);
  // Drops every entry of the partitions `which` selects (of every store).
  void Invalidate(const std::function<bool(int32_t partition)>& which);
  void Invalidate(int32_t partition) {
    Invalidate([partition](int32_t p) { return p == partition; });
  }
  void Clear();

  size_t bytes() const { return bytes_; }
  size_t entries() const { return map_.size(); }
  size_t capacity() const { return capacity_; }
  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }

 private:
  struct Key {
    int store;
    int32_t partition;
    std::string key;
  };
  struct KeyView {
    int store;
    int32_t partition;
    absl::string_view key;
  };
  // Heterogeneous: Find looks a string_view up without building a string.
  struct Hash {
    using is_transparent = void;
    size_t operator()(const KeyView& k) const;
    size_t operator()(const Key& k) const { return (*this)(KeyView{k.store, k.partition, k.key}); }
  };
  struct Eq {
    using is_transparent = void;
    static KeyView View(const Key& k) { return KeyView{k.store, k.partition, k.key}; }
    static KeyView View(const KeyView& k) { return k; }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      const KeyView x = View(a);
      const KeyView y = View(b);
      return x.store == y.store && x.partition == y.partition && x.key == y.key;
    }
  };
  struct Entry;
  using Map = absl::node_hash_map<Key, Entry, Hash, Eq>;
  using Node = Map::value_type;
  // Node addresses are stable in a node map: the LRU list links them directly.
  struct Entry {
    std::optional<std::string> value;
    size_t charge = 0;
    Node* prev = nullptr;  // towards the most recently used
    Node* next = nullptr;
  };

  static size_t Charge(absl::string_view key, const std::optional<std::string>& value) {
    return kEntryOverhead + key.size() + (value ? value->size() : 0);
  }
  void Unlink(Node* n);
  void PushFront(Node* n);
  void Erase(Map::iterator it);

  const size_t capacity_;
  Map map_;
  Node* head_ = nullptr;  // most recently used
  Node* tail_ = nullptr;  // evicted first
  size_t bytes_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

}  // namespace kiq::node
