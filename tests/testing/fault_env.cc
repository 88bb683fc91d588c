#include "tests/testing/fault_env.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace kiq::testing {
namespace {

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

const char* OpName(FileOp op) {
  switch (op) {
    case FileOp::kCreate:
      return "create";
    case FileOp::kAppend:
      return "append to";
    case FileOp::kSync:
      return "sync";
    default:
      return "access";
  }
}

// Forwards to the real file; each write or sync asks the file system whether to fail first.
class FaultInjectingFile : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultInjectingFile(std::unique_ptr<rocksdb::FSWritableFile> file, std::string path,
                     FaultInjectingFileSystem& fs)
      : FSWritableFileOwnerWrapper(std::move(file)), path_(std::move(path)), fs_(fs) {}

  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.Check(path_, FileOp::kAppend); !s.ok()) return s;
    return FSWritableFileOwnerWrapper::Append(data, options, dbg);
  }
  rocksdb::IOStatus Append(const rocksdb::Slice& data, const rocksdb::IOOptions& options,
                           const rocksdb::DataVerificationInfo& info,
                           rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.Check(path_, FileOp::kAppend); !s.ok()) return s;
    return FSWritableFileOwnerWrapper::Append(data, options, info, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.Check(path_, FileOp::kAppend); !s.ok()) return s;
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, dbg);
  }
  rocksdb::IOStatus PositionedAppend(const rocksdb::Slice& data, uint64_t offset,
                                     const rocksdb::IOOptions& options,
                                     const rocksdb::DataVerificationInfo& info,
                                     rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.Check(path_, FileOp::kAppend); !s.ok()) return s;
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, info, dbg);
  }
  rocksdb::IOStatus Sync(const rocksdb::IOOptions& options, rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.Check(path_, FileOp::kSync); !s.ok()) return s;
    return FSWritableFileOwnerWrapper::Sync(options, dbg);
  }
  rocksdb::IOStatus Fsync(const rocksdb::IOOptions& options,
                          rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.Check(path_, FileOp::kSync); !s.ok()) return s;
    return FSWritableFileOwnerWrapper::Fsync(options, dbg);
  }
  rocksdb::IOStatus RangeSync(uint64_t offset, uint64_t nbytes, const rocksdb::IOOptions& options,
                              rocksdb::IODebugContext* dbg) override {
    if (rocksdb::IOStatus s = fs_.Check(path_, FileOp::kSync); !s.ok()) return s;
    return FSWritableFileOwnerWrapper::RangeSync(offset, nbytes, options, dbg);
  }

 private:
  const std::string path_;
  FaultInjectingFileSystem& fs_;
};

// Wraps a file the target opened (if it did).
rocksdb::IOStatus Wrap(rocksdb::IOStatus opened, const std::string& path,
                       FaultInjectingFileSystem& fs,
                       std::unique_ptr<rocksdb::FSWritableFile>* result) {
  if (opened.ok()) {
    *result = std::make_unique<FaultInjectingFile>(std::move(*result), path, fs);
  }
  return opened;
}

}  // namespace

DbFile DbFileKind(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const absl::string_view name = slash == std::string::npos
                                     ? absl::string_view(path)
                                     : absl::string_view(path).substr(slash + 1);
  if (absl::StartsWith(name, "MANIFEST-") && AllDigits(name.substr(9))) return DbFile::kManifest;
  if (absl::EndsWith(name, ".log") && AllDigits(name.substr(0, name.size() - 4))) {
    return DbFile::kWal;
  }
  if (absl::EndsWith(name, ".sst") && AllDigits(name.substr(0, name.size() - 4))) {
    return DbFile::kSst;
  }
  if (name == "LOG" || (absl::StartsWith(name, "LOG.old.") && AllDigits(name.substr(8)))) {
    return DbFile::kInfoLog;
  }
  return DbFile::kNone;
}

FaultInjectingFileSystem::FaultInjectingFileSystem()
    : FileSystemWrapper(rocksdb::FileSystem::Default()) {}

void FaultInjectingFileSystem::Fail(DbFile files, FileOp ops, int64_t succeed_first) {
  passes_left_.store(succeed_first);
  fault_.store((static_cast<uint64_t>(files) << 32) | static_cast<uint32_t>(ops));
}

rocksdb::IOStatus FaultInjectingFileSystem::Check(const std::string& path, FileOp op) {
  const uint64_t fault = fault_.load();
  const uint32_t files = static_cast<uint32_t>(fault >> 32);
  const uint32_t ops = static_cast<uint32_t>(fault);
  if ((files & static_cast<uint32_t>(DbFileKind(path))) == 0 ||
      (ops & static_cast<uint32_t>(op)) == 0) {
    return rocksdb::IOStatus::OK();
  }
  if (passes_left_.fetch_sub(1) > 0) return rocksdb::IOStatus::OK();
  injected_.fetch_add(1);
  return rocksdb::IOStatus::IOError(absl::StrCat(OpName(op), " ", path),
                                    "injected fault (read-only disk)");
}

rocksdb::IOStatus FaultInjectingFileSystem::NewWritableFile(
    const std::string& fname, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  if (rocksdb::IOStatus s = Check(fname, FileOp::kCreate); !s.ok()) return s;
  return Wrap(target()->NewWritableFile(fname, options, result, dbg), fname, *this, result);
}

rocksdb::IOStatus FaultInjectingFileSystem::ReopenWritableFile(
    const std::string& fname, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  if (rocksdb::IOStatus s = Check(fname, FileOp::kCreate); !s.ok()) return s;
  return Wrap(target()->ReopenWritableFile(fname, options, result, dbg), fname, *this, result);
}

rocksdb::IOStatus FaultInjectingFileSystem::ReuseWritableFile(
    const std::string& fname, const std::string& old_fname, const rocksdb::FileOptions& options,
    std::unique_ptr<rocksdb::FSWritableFile>* result, rocksdb::IODebugContext* dbg) {
  if (rocksdb::IOStatus s = Check(fname, FileOp::kCreate); !s.ok()) return s;
  return Wrap(target()->ReuseWritableFile(fname, old_fname, options, result, dbg), fname, *this,
              result);
}

FaultEnv::FaultEnv()
    : fs_(std::make_shared<FaultInjectingFileSystem>()), env_(rocksdb::NewCompositeEnv(fs_)) {}

}  // namespace kiq::testing
