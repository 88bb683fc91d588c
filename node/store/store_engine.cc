#include "node/store/store_engine.h"

#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>

#include "absl/strings/str_cat.h"
#include "common/topology/value_codec.h"
#include "node/store/rocksdb_logger.h"

namespace kiq::node {
namespace {

constexpr char kMetaFamily[] = "kiq_meta";

void AppendPartition(std::string* out, PartitionId p) {
  const uint32_t v = static_cast<uint32_t>(p.value());
  out->push_back(static_cast<char>(v >> 24));
  out->push_back(static_cast<char>(v >> 16));
  out->push_back(static_cast<char>(v >> 8));
  out->push_back(static_cast<char>(v));
}

// The exclusive upper bound of partition `p`'s keys: the next partition's prefix, computed
// unsigned (0x7fffffff + 1 must not overflow an int32). The last prefix, ff ff ff ff, has no
// finite upper bound; every key at or above it belongs to that partition.
std::optional<std::string> PartitionUpperBound(PartitionId p) {
  const uint32_t v = static_cast<uint32_t>(p.value());
  if (v == UINT32_MAX) return std::nullopt;
  std::string out;
  AppendPartition(&out, PartitionId(static_cast<int32_t>(v + 1)));
  return out;
}

std::string OffsetKey(absl::string_view topic, PartitionId p) {
  std::string key = absl::StrCat("o", topic);
  key.push_back('\0');  // topic names cannot contain NUL
  AppendPartition(&key, p);
  return key;
}

std::string CountKey(absl::string_view store, PartitionId p) {
  std::string key = absl::StrCat("c", store);
  key.push_back('\0');
  AppendPartition(&key, p);
  return key;
}

rocksdb::ColumnFamilyOptions FamilyOptions() {
  rocksdb::ColumnFamilyOptions options;
  // Point lookups dominate the query path: bloom filters on whole keys.
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  options.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  options.OptimizeLevelStyleCompaction();
  // OptimizeLevelStyleCompaction's 128 MiB memtables held a 1M-key table store in memory
  // until it was ~150 MB (the node's peak RSS went past 300 MB); 32 MiB ones flush sooner.
  options.write_buffer_size = size_t{32} << 20;
  return options;
}

}  // namespace

absl::Status ToStatus(const rocksdb::Status& s, absl::string_view doing) {
  if (s.ok()) return absl::OkStatus();
  const std::string message = absl::StrCat(doing, ": rocksdb: ", s.ToString());
  switch (s.code()) {
    case rocksdb::Status::kNotFound:
      return absl::NotFoundError(message);
    case rocksdb::Status::kCorruption:
      return absl::DataLossError(message);
    case rocksdb::Status::kInvalidArgument:
    case rocksdb::Status::kNotSupported:
      return absl::InvalidArgumentError(message);
    case rocksdb::Status::kIOError:
    case rocksdb::Status::kBusy:
    case rocksdb::Status::kTimedOut:
    case rocksdb::Status::kTryAgain:
      return absl::UnavailableError(message);
    case rocksdb::Status::kAborted:
      return absl::AbortedError(message);
    default:
      return absl::InternalError(message);
  }
}

std::string PartitionPrefix(PartitionId p) {
  std::string out;
  AppendPartition(&out, p);
  return out;
}

std::string StoreKey(PartitionId p, absl::string_view key) {
  std::string out;
  out.reserve(4 + key.size());
  AppendPartition(&out, p);
  out.append(key.data(), key.size());
  return out;
}

absl::StatusOr<std::unique_ptr<StoreEngine>> StoreEngine::Open(
    const std::string& path, const std::vector<std::string>& store_names, rocksdb::Env* env) {
  rocksdb::DBOptions db_options;
  if (env != nullptr) db_options.env = env;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.IncreaseParallelism(2);
  // RocksDB's default, relied on: after a failed WAL append or sync every later write fails with
  // that error until the engine is reopened, so no batch can land behind a lost one. Without it
  // RocksDB clears the WAL writer's error and keeps appending to that WAL after the failed
  // record, and a failed sync is forgotten.
  db_options.paranoid_checks = true;
  // No LOG file in the data dir: on a failing disk RocksDB's file logger aborts (see
  // RocksDbLogger).
  db_options.info_log = NewRocksDbLogger();

  // Created first: RocksDB logs an error for a database directory that does not exist yet.
  if (rocksdb::Status made = db_options.env->CreateDirIfMissing(path); !made.ok()) {
    return ToStatus(made, absl::StrCat("open store engine at ", path));
  }
  // Every existing column family must be opened, including stores that the topology no longer
  // declares (they are kept, not silently dropped).
  std::vector<std::string> families;
  rocksdb::Status listed = rocksdb::DB::ListColumnFamilies(db_options, path, &families);
  if (!listed.ok()) families = {rocksdb::kDefaultColumnFamilyName};
  auto add = [&families](const std::string& name) {
    if (std::find(families.begin(), families.end(), name) == families.end()) {
      families.push_back(name);
    }
  };
  add(kMetaFamily);
  for (const std::string& name : store_names) add(name);

  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& name : families) descriptors.emplace_back(name, FamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, path, descriptors, &handles, &raw);
  if (!s.ok()) return ToStatus(s, absl::StrCat("open store engine at ", path));
  std::unique_ptr<rocksdb::DB> db(raw);

  auto find = [&](const std::string& name) {
    for (size_t i = 0; i < families.size(); ++i) {
      if (families[i] == name) return handles[i];
    }
    return static_cast<rocksdb::ColumnFamilyHandle*>(nullptr);
  };
  std::unique_ptr<StoreEngine> engine(
      new StoreEngine(path, std::move(db), handles, find(kMetaFamily), store_names));
  for (const std::string& name : store_names) engine->stores_.push_back(find(name));
  return engine;
}

StoreEngine::StoreEngine(std::string path, std::unique_ptr<rocksdb::DB> db,
                         std::vector<rocksdb::ColumnFamilyHandle*> handles,
                         rocksdb::ColumnFamilyHandle* meta, std::vector<std::string> names)
    : path_(std::move(path)),
      db_(std::move(db)),
      all_handles_(std::move(handles)),
      meta_(meta),
      names_(std::move(names)) {
  for (size_t i = 0; i < names_.size(); ++i) index_[names_[i]] = static_cast<int>(i);
}

StoreEngine::~StoreEngine() {
  for (rocksdb::ColumnFamilyHandle* h : all_handles_) db_->DestroyColumnFamilyHandle(h);
  db_->Close();
}

absl::Status StoreEngine::write_error() const {
  absl::MutexLock lock(&mu_);
  return write_error_;
}

absl::Status StoreEngine::Write(absl::string_view doing,
                                const std::function<rocksdb::Status()>& write) {
  if (absl::Status earlier = write_error(); !earlier.ok()) {
    return absl::Status(earlier.code(),
                        absl::StrCat(doing, " at ", path_,
                                     ": refused, an earlier write failed: ", earlier.message()));
  }
  absl::Status s = ToStatus(write(), absl::StrCat(doing, " at ", path_));
  if (!s.ok()) {
    absl::MutexLock lock(&mu_);
    if (write_error_.ok()) write_error_ = s;
  }
  return s;
}

absl::Status StoreEngine::FlushAll() {
  rocksdb::FlushOptions options;
  options.wait = true;
  return Write("flush stores", [&] { return db_->Flush(options, all_handles_); });
}

absl::StatusOr<StoreHandle> StoreEngine::Handle(absl::string_view store) const {
  auto it = index_.find(store);
  if (it == index_.end()) return absl::NotFoundError(absl::StrCat("unknown store \"", store, "\""));
  return StoreHandle{it->second};
}

absl::StatusOr<std::optional<std::string>> StoreEngine::Get(StoreHandle store, PartitionId p,
                                                            absl::string_view key) const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), stores_[store.index], StoreKey(p, key), &value);
  if (s.IsNotFound()) return std::optional<std::string>();
  if (!s.ok()) {
    return ToStatus(s, absl::StrCat("get store=", names_[store.index], " partition=", p.value()));
  }
  return std::optional<std::string>(std::move(value));
}

std::shared_ptr<const rocksdb::Snapshot> StoreEngine::NewSnapshot() const {
  rocksdb::DB* db = db_.get();
  return std::shared_ptr<const rocksdb::Snapshot>(
      db->GetSnapshot(), [db](const rocksdb::Snapshot* s) { db->ReleaseSnapshot(s); });
}

absl::StatusOr<std::vector<router::KeyValue>> StoreEngine::Scan(
    StoreHandle store, PartitionId p, const router::KeyRange& range,
    const std::optional<std::string>& after, size_t limit,
    const rocksdb::Snapshot* snapshot) const {
  const std::string prefix = PartitionPrefix(p);
  // The iterator never leaves the partition: upper bound = the next partition's prefix.
  const std::optional<std::string> upper = PartitionUpperBound(p);
  rocksdb::Slice upper_slice;
  rocksdb::ReadOptions options;
  options.snapshot = snapshot;
  if (upper) {
    upper_slice = rocksdb::Slice(*upper);
    options.iterate_upper_bound = &upper_slice;
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, stores_[store.index]));

  std::string start = prefix;
  if (after && (!range.from || *after >= *range.from)) {
    start.append(*after);
    start.push_back('\0');  // the smallest key strictly after `after`
  } else if (range.from) {
    start.append(*range.from);
  }
  std::vector<router::KeyValue> out;
  for (it->Seek(start); it->Valid() && out.size() < limit; it->Next()) {
    absl::string_view key(it->key().data() + prefix.size(), it->key().size() - prefix.size());
    if (range.to && key > *range.to) break;
    out.push_back(router::KeyValue{std::string(key), it->value().ToString(), p});
  }
  if (!it->status().ok()) {
    return ToStatus(it->status(),
                    absl::StrCat("scan store=", names_[store.index], " partition=", p.value()));
  }
  return out;
}

absl::StatusOr<int64_t> StoreEngine::EntryCount(StoreHandle store, PartitionId p) const {
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), meta_, CountKey(names_[store.index], p), &value);
  if (s.IsNotFound()) return 0;
  if (!s.ok()) {
    return ToStatus(
        s, absl::StrCat("read entry count store=", names_[store.index], " partition=", p.value()));
  }
  std::optional<int64_t> n = DecodeInt64(value);
  if (!n) {
    return absl::DataLossError(absl::StrCat("entry count of store=", names_[store.index],
                                            " partition=", p.value(), " is not 8 bytes"));
  }
  return *n;
}

StoreEngine::StoreStats StoreEngine::Stats(StoreHandle store) const {
  StoreStats stats;
  uint64_t value = 0;
  if (db_->GetIntProperty(stores_[store.index], "rocksdb.estimate-live-data-size", &value)) {
    stats.size_bytes = static_cast<int64_t>(value);
  }
  if (db_->GetIntProperty(stores_[store.index], "rocksdb.estimate-num-keys", &value)) {
    stats.estimated_keys = static_cast<int64_t>(value);
  }
  return stats;
}

absl::StatusOr<std::optional<Offset>> StoreEngine::ReadOffset(absl::string_view topic,
                                                              PartitionId p) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, OffsetKey(topic, p), &value);
  if (s.IsNotFound()) return std::optional<Offset>();
  if (!s.ok()) {
    return ToStatus(s, absl::StrCat("read offset topic=", topic, " partition=", p.value()));
  }
  std::optional<int64_t> n = DecodeInt64(value);
  if (!n) {
    return absl::DataLossError(absl::StrCat("stored offset of topic=", topic,
                                            " partition=", p.value(), " is not 8 bytes"));
  }
  return std::optional<Offset>(Offset(*n));
}

void StoreEngine::Batch::Put(StoreHandle store, PartitionId p, absl::string_view key,
                             absl::string_view value) {
  batch_.Put(engine_->stores_[store.index], StoreKey(p, key),
             rocksdb::Slice(value.data(), value.size()));
}

void StoreEngine::Batch::Delete(StoreHandle store, PartitionId p, absl::string_view key) {
  batch_.Delete(engine_->stores_[store.index], StoreKey(p, key));
}

void StoreEngine::Batch::SetEntryCount(StoreHandle store, PartitionId p, int64_t count) {
  batch_.Put(engine_->meta_, CountKey(engine_->names_[store.index], p), EncodeInt64(count));
}

void StoreEngine::Batch::SetOffset(absl::string_view topic, PartitionId p, Offset next) {
  batch_.Put(engine_->meta_, OffsetKey(topic, p), EncodeInt64(next.value()));
}

absl::Status StoreEngine::Apply(Batch& batch) {
  // No fsync per batch: a process crash keeps the OS-buffered WAL; a power loss keeps a
  // consistent prefix of batches, and offsets travel with their state, so the lost suffix is
  // simply consumed again. Should a batch ever need to be durable, use WriteOptions::sync, not
  // DB::SyncWAL() / FlushWAL(true): once a WAL append or sync has failed, RocksDB 7.8 built with
  // assertions (Debian's librocksdb) aborts in SyncWAL (`sync_without_flush_called_`) instead of
  // returning the error.
  rocksdb::WriteOptions options;
  return Write("apply batch", [&] { return db_->Write(options, &batch.batch_); });
}

absl::Status StoreEngine::DropPartition(StoreHandle store, PartitionId p) {
  rocksdb::WriteBatch batch;
  const std::string prefix = PartitionPrefix(p);
  if (const std::optional<std::string> upper = PartitionUpperBound(p)) {
    batch.DeleteRange(stores_[store.index], prefix, *upper);
  } else {
    // The last partition has no finite upper bound: delete up to its last key, inclusive.
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), stores_[store.index]));
    it->SeekToLast();
    if (!it->status().ok()) {
      return ToStatus(it->status(),
                      absl::StrCat("drop store=", names_[store.index], " partition=", p.value()));
    }
    if (it->Valid() && it->key().starts_with(prefix)) {
      batch.DeleteRange(stores_[store.index], prefix, it->key());
      batch.Delete(stores_[store.index], it->key());
    }
  }
  batch.Delete(meta_, CountKey(names_[store.index], p));
  return Write(absl::StrCat("drop store=", names_[store.index], " partition=", p.value()),
               [&] { return db_->Write(rocksdb::WriteOptions(), &batch); });
}

absl::Status StoreEngine::ClearOffset(absl::string_view topic, PartitionId p) {
  return Write(absl::StrCat("clear offset topic=", topic, " partition=", p.value()),
               [&] { return db_->Delete(rocksdb::WriteOptions(), meta_, OffsetKey(topic, p)); });
}

}  // namespace kiq::node
