#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/types.h"
#include "router/port/local_stores.h"

namespace kiq::node {

// Converts a RocksDB status, adding what we were doing. The one place RocksDB errors become
// absl::Status.
absl::Status ToStatus(const rocksdb::Status& s, absl::string_view doing);

// Index of a store's column family inside a StoreEngine; cheap to copy, valid for its engine.
struct StoreHandle {
  int index = -1;
};

// The RocksDB engine of one node: one database, a column family per store, and a `kiq_meta`
// column family holding, per source partition, the next offset to process and, per store
// partition, its exact number of entries. Keys in a store column family are the 4-byte
// big-endian partition followed by the record key, so one partition can be scanned or dropped
// alone and scans within a partition are in key byte order.
//
// Offsets and counts are written in the same WriteBatch as the state they describe: after a
// crash (even kill -9, or power loss with the WAL's consistent prefix) state and offsets agree,
// and resuming from the stored offset never applies an event twice.
//
// A failed write (a full or read-only disk, a failed WAL append or sync) is the engine's last:
// every later write and flush returns that first error without reaching RocksDB, until the
// engine is reopened, while reads keep serving what was committed before it. So no batch can
// land behind a lost one, and nothing touches RocksDB's failed WAL writer again (Debian's
// assert-enabled librocksdb aborts on that). RocksDB's info log goes to kiq's logger, never to a
// LOG file on the failing disk (see RocksDbLogger).
//
// Thread-safe: reads run concurrently with one writer (RocksDB's guarantees). Owns the DB.
class StoreEngine {
 public:
  // Opens (creating if missing) the database at `path` with a column family per store.
  // `env`, if given, replaces RocksDB's default Env for every file the database touches (tests
  // inject I/O faults through it); not owned, it must outlive the engine.
  static absl::StatusOr<std::unique_ptr<StoreEngine>> Open(
      const std::string& path, const std::vector<std::string>& store_names,
      rocksdb::Env* env = nullptr);
  ~StoreEngine();

  absl::StatusOr<StoreHandle> Handle(absl::string_view store) const;
  const std::string& StoreName(StoreHandle h) const { return names_[h.index]; }

  absl::StatusOr<std::optional<std::string>> Get(StoreHandle store, PartitionId p,
                                                 absl::string_view key) const;
  absl::StatusOr<std::vector<router::KeyValue>> Scan(
      StoreHandle store, PartitionId p, const router::KeyRange& range,
      const std::optional<std::string>& after, size_t limit,
      const rocksdb::Snapshot* snapshot = nullptr) const;
  // A consistent read view of every store as of now (for Scan); released when the last copy
  // goes. The engine must outlive it.
  std::shared_ptr<const rocksdb::Snapshot> NewSnapshot() const;
  // The exact number of entries in partition `p` of `store`, as of the last applied batch.
  absl::StatusOr<int64_t> EntryCount(StoreHandle store, PartitionId p) const;
  // RocksDB's estimates for a store's column family: live data size and number of keys.
  struct StoreStats {
    int64_t size_bytes = 0;
    int64_t estimated_keys = 0;
  };
  StoreStats Stats(StoreHandle store) const;

  // The next offset to process in (topic, p), or nullopt if nothing was ever processed.
  absl::StatusOr<std::optional<Offset>> ReadOffset(absl::string_view topic, PartitionId p) const;

  // One atomic unit of change: state, entry counts and offsets. Build it, then Apply it.
  class Batch {
   public:
    void Put(StoreHandle store, PartitionId p, absl::string_view key, absl::string_view value);
    void Delete(StoreHandle store, PartitionId p, absl::string_view key);
    void SetEntryCount(StoreHandle store, PartitionId p, int64_t count);
    void SetOffset(absl::string_view topic, PartitionId p, Offset next);
    size_t Count() const { return static_cast<size_t>(batch_.Count()); }

   private:
    friend class StoreEngine;
    explicit Batch(const StoreEngine& engine) : engine_(&engine) {}
    const StoreEngine* engine_;
    rocksdb::WriteBatch batch_;
  };
  Batch NewBatch() const { return Batch(*this); }
  absl::Status Apply(Batch& batch);
  // Writes every memtable to its SST files and waits: what a clean close leaves, for a process
  // about to exit without one (a restart then replays no WAL). Thread-safe.
  absl::Status FlushAll();

  // Removes every entry of partition `p` of `store` and its entry count (a partition that is
  // rebuilt from scratch).
  absl::Status DropPartition(StoreHandle store, PartitionId p);
  // Forgets the stored offset of (topic, p).
  absl::Status ClearOffset(absl::string_view topic, PartitionId p);

  // The first write error (OK if none): once set, every write and flush fails with its code and
  // message ("<what> at <path>: refused, an earlier write failed: <first error>").
  absl::Status write_error() const ABSL_LOCKS_EXCLUDED(mu_);
  // Where the database lives (the data dir's `stores`).
  const std::string& path() const { return path_; }

 private:
  StoreEngine(std::string path, std::unique_ptr<rocksdb::DB> db,
              std::vector<rocksdb::ColumnFamilyHandle*> handles, rocksdb::ColumnFamilyHandle* meta,
              std::vector<std::string> names);
  // Runs one write (or flush) unless an earlier one failed; remembers its failure. `doing` says
  // what it was, for the error. The lock is not held while RocksDB writes.
  absl::Status Write(absl::string_view doing, const std::function<rocksdb::Status()>& write)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const std::string path_;
  std::unique_ptr<rocksdb::DB> db_;
  std::vector<rocksdb::ColumnFamilyHandle*> all_handles_;  // owned; destroyed before db_
  rocksdb::ColumnFamilyHandle* meta_;
  std::vector<rocksdb::ColumnFamilyHandle*> stores_;  // by StoreHandle::index
  std::vector<std::string> names_;
  absl::flat_hash_map<std::string, int> index_;

  mutable absl::Mutex mu_;
  absl::Status write_error_ ABSL_GUARDED_BY(mu_);
};

// Key layout helpers, exposed for tests.
std::string PartitionPrefix(PartitionId p);
std::string StoreKey(PartitionId p, absl::string_view key);

}  // namespace kiq::node
