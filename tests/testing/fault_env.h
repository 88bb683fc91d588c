#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>

namespace kiq::testing {

// The kinds of RocksDB files a fault applies to, told apart by RocksDB's file names.
enum class DbFile : uint32_t {
  kNone = 0,
  kWal = 1u << 0,       // NNNNNN.log
  kSst = 1u << 1,       // NNNNNN.sst
  kManifest = 1u << 2,  // MANIFEST-NNNNNN
  kAll = kWal | kSst | kManifest,
  // RocksDB's own text log, when it writes one (LOG, LOG.old.N): a disk that fails fails it too.
  kInfoLog = 1u << 3,
};
// The file operations a fault fails.
enum class FileOp : uint32_t {
  kNone = 0,
  kCreate = 1u << 0,  // NewWritableFile / ReopenWritableFile / ReuseWritableFile
  kAppend = 1u << 1,  // Append / PositionedAppend
  kSync = 1u << 2,    // Sync / Fsync / RangeSync
};
constexpr DbFile operator|(DbFile a, DbFile b) {
  return static_cast<DbFile>(static_cast<uint32_t>(a) | static_cast<uint32_t>(b));
}
constexpr FileOp operator|(FileOp a, FileOp b) {
  return static_cast<FileOp>(static_cast<uint32_t>(a) | static_cast<uint32_t>(b));
}

// Which kind `path` is (kNone for OPTIONS, CURRENT, LOCK, IDENTITY, temp files).
DbFile DbFileKind(const std::string& path);

// A RocksDB file system that forwards everything to the default one and, from the moment it is
// told to, fails chosen operations on chosen kinds of files with an IOError, as a disk that
// turned read-only or died would; until it is told to stop. Nothing is written or synced when a
// call fails, so what reached the real file is exactly what RocksDB was told succeeded.
//
// Thread-safe: RocksDB calls it from its flush and compaction threads while a test changes the
// fault. Files opened before a fault was set are affected too (the fault is checked per call).
class FaultInjectingFileSystem : public rocksdb::FileSystemWrapper {
 public:
  FaultInjectingFileSystem();

  static const char* kClassName() { return "KiqFaultInjectingFileSystem"; }
  const char* Name() const override { return kClassName(); }

  // From now on, every `ops` call on a file of kind `files` fails, except that the first
  // `succeed_first` of those calls still go through (to tear a write in its middle). Replaces any
  // earlier fault.
  void Fail(DbFile files, FileOp ops, int64_t succeed_first = 0);
  void StopFailing() { Fail(DbFile::kNone, FileOp::kNone); }
  // How many calls failed since construction, so that a test can tell that its fault was hit.
  int64_t injected() const { return injected_.load(); }

  // Returns the injected IOError if an `op` call on `path` must fail now, else OK.
  rocksdb::IOStatus Check(const std::string& path, FileOp op);

  rocksdb::IOStatus NewWritableFile(const std::string& fname, const rocksdb::FileOptions& options,
                                    std::unique_ptr<rocksdb::FSWritableFile>* result,
                                    rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReopenWritableFile(const std::string& fname,
                                       const rocksdb::FileOptions& options,
                                       std::unique_ptr<rocksdb::FSWritableFile>* result,
                                       rocksdb::IODebugContext* dbg) override;
  rocksdb::IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname,
                                      const rocksdb::FileOptions& options,
                                      std::unique_ptr<rocksdb::FSWritableFile>* result,
                                      rocksdb::IODebugContext* dbg) override;

 private:
  // The fault, both masks packed in one word so that a change is seen whole.
  std::atomic<uint64_t> fault_{0};
  std::atomic<int64_t> passes_left_{0};
  std::atomic<int64_t> injected_{0};
};

// Owns a FaultInjectingFileSystem and the Env built on it, which is what DBOptions::env (and so
// StoreEngine::Open) takes. Must outlive every database opened with env().
class FaultEnv {
 public:
  FaultEnv();

  rocksdb::Env* env() const { return env_.get(); }
  FaultInjectingFileSystem& fs() const { return *fs_; }

  void Fail(DbFile files, FileOp ops, int64_t succeed_first = 0) {
    fs_->Fail(files, ops, succeed_first);
  }
  void StopFailing() { fs_->StopFailing(); }
  int64_t injected() const { return fs_->injected(); }

 private:
  std::shared_ptr<FaultInjectingFileSystem> fs_;
  std::unique_ptr<rocksdb::Env> env_;
};

}  // namespace kiq::testing
