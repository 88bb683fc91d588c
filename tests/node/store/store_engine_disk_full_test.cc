// StoreEngine on a real file system that fills up: a 2 MiB tmpfs mounted for the test (the test
// machine runs as root; skipped where mounting is not permitted). Unlike FaultEnv, this is the
// kernel's ENOSPC on every file RocksDB writes, its own text log included — the case where
// Debian's assert-enabled librocksdb aborted (`sync_without_flush_called_`) when writing the
// "Background IO error" line to the LOG file of the full disk, and again on the restart.
#include <stdlib.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "node/store/staged_batch.h"
#include "node/store/store_engine.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using ::kiq::testing::IsOkAndHolds;
using ::kiq::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Optional;

const std::vector<std::string> kStores = {"s"};

class StoreEngineDiskFullTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "store_engine_disk_full_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
    if (mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=2m") != 0) {
      GTEST_SKIP() << "cannot mount a tmpfs at " << dir_ << ": " << std::strerror(errno);
    }
    mounted_ = true;
    path_ = dir_ + "/stores";
  }

  void TearDown() override {
    engine_.reset();
    if (mounted_) {
      EXPECT_EQ(umount2(dir_.c_str(), MNT_DETACH), 0) << std::strerror(errno);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Commits batches of fresh 1 KiB values (with the offset of each) until one fails; returns
  // its status and sets `committed` to the number of batches that succeeded.
  absl::Status FillUntilFailure(int* committed) {
    const std::string value(1024, 'v');
    absl::StatusOr<StoreHandle> h = engine_->Handle("s");
    if (!h.ok()) return h.status();
    for (*committed = 0; *committed < 100'000; ++*committed) {
      StagedBatch batch(*engine_);
      for (int i = 0; i < 10; ++i) {
        absl::Status s =
            batch.Write(*h, PartitionId(0), absl::StrCat("k", *committed, ".", i), value);
        if (!s.ok()) return s;
      }
      batch.SetOffset("t", PartitionId(0), Offset(*committed + 1));
      if (absl::Status s = batch.Commit(nullptr); !s.ok()) return s;
    }
    return absl::OkStatus();
  }

  std::string dir_;
  std::string path_;
  bool mounted_ = false;
  std::unique_ptr<StoreEngine> engine_;
};

TEST_F(StoreEngineDiskFullTest, FullDiskFailsACommitWithAStatusAndReadsKeepServing) {
  absl::StatusOr<std::unique_ptr<StoreEngine>> opened = StoreEngine::Open(path_, kStores);
  ASSERT_OK(opened);
  engine_ = std::move(*opened);

  int committed = 0;
  const absl::Status failed = FillUntilFailure(&committed);
  ASSERT_THAT(failed, StatusIs(absl::StatusCode::kUnavailable, "apply batch at " + path_));
  EXPECT_THAT(std::string(failed.message()), HasSubstr("No space left on device"));
  ASSERT_GT(committed, 0);

  // The state of the last acknowledged commit is what reads see, and stays so.
  absl::StatusOr<StoreHandle> h = engine_->Handle("s");
  ASSERT_OK(h);
  EXPECT_THAT(engine_->ReadOffset("t", PartitionId(0)), IsOkAndHolds(Optional(Offset(committed))));
  EXPECT_THAT(engine_->EntryCount(*h, PartitionId(0)), IsOkAndHolds(10 * committed));
  EXPECT_THAT(engine_->Get(*h, PartitionId(0), absl::StrCat("k", committed - 1, ".9")),
              IsOkAndHolds(Optional(std::string(1024, 'v'))));
  EXPECT_THAT(engine_->Get(*h, PartitionId(0), absl::StrCat("k", committed, ".0")),
              IsOkAndHolds(std::nullopt));
  // Nothing is written after the failed commit: later writes and flushes get its error.
  EXPECT_THAT(engine_->write_error(), StatusIs(absl::StatusCode::kUnavailable, path_));
  EXPECT_THAT(engine_->FlushAll(), StatusIs(absl::StatusCode::kUnavailable, "No space left"));
  EXPECT_THAT(FillUntilFailure(&committed),
              StatusIs(absl::StatusCode::kUnavailable, "No space left"));
  EXPECT_EQ(committed, 0);

  // A restart on the still-full disk fails with a Status naming the path (no abort either).
  engine_.reset();
  opened = StoreEngine::Open(path_, kStores);
  EXPECT_THAT(opened.status(),
              StatusIs(absl::StatusCode::kUnavailable, "open store engine at " + path_));
}

}  // namespace
}  // namespace kiq::node
