// StagedBatch with a CommittedCache against the same batches without one: random
// read-modify-write batches applied to two real engines, one read through a cache, must read
// the same values, report the same Changes (old values included) and leave the same store
// contents and entry counts — through failed commits, pipelined read-through, partitions
// written or wiped behind the ingestion (restore, standby, reset) and invalidated, and
// eviction under budgets from none to roomy.

#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/types.h"
#include "gtest/gtest.h"
#include "node/store/committed_cache.h"
#include "node/store/staged_batch.h"
#include "node/store/store_engine.h"
#include "tests/testing/fault_env.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using ::kiq::testing::DbFile;
using ::kiq::testing::FaultEnv;
using ::kiq::testing::FileOp;

using Opt = std::optional<std::string>;
using ChangeRow = std::tuple<int, int32_t, std::string, Opt, Opt, int64_t>;

const std::vector<std::string> kStores = {"counts", "table"};
constexpr int kPartitions = 3;
constexpr int kKeys = 25;

std::vector<ChangeRow> Rows(const std::vector<Change>& changes, bool sort) {
  std::vector<ChangeRow> rows;
  for (const Change& c : changes) {
    rows.emplace_back(c.store.index, c.partition.value(), c.key, c.old_value, c.new_value,
                      c.offset);
  }
  if (sort) std::sort(rows.begin(), rows.end());
  return rows;
}

class StagedBatchCacheTest : public ::testing::TestWithParam<size_t> {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "staged_batch_cache_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
    absl::StatusOr<std::unique_ptr<StoreEngine>> plain =
        StoreEngine::Open(dir_ + "/plain", kStores);
    ASSERT_OK(plain);
    plain_ = std::move(*plain);
    ASSERT_OK(OpenCached());
    cache_ = std::make_unique<CommittedCache>(GetParam());
  }

  void TearDown() override {
    cached_.reset();
    plain_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // (Re)opens the cached side's engine through the faulty Env; the cache is kept, as what it
  // holds must still be what is committed.
  absl::Status OpenCached() {
    cached_.reset();
    absl::StatusOr<std::unique_ptr<StoreEngine>> opened =
        StoreEngine::Open(dir_ + "/cached", kStores, fault_.env());
    if (!opened.ok()) return opened.status();
    cached_ = std::move(*opened);
    return absl::OkStatus();
  }

  static std::string Key(int k) { return absl::StrCat("key-", k); }

  // Stages `records` random read-modify-writes in both batches, checking that both read the
  // same value every time.
  void Stage(StagedBatch& cached, StagedBatch& plain, int records) {
    for (int i = 0; i < records; ++i) {
      const StoreHandle store{static_cast<int>(rng_() % kStores.size())};
      const PartitionId p(static_cast<int32_t>(rng_() % kPartitions));
      const std::string key = Key(static_cast<int>(rng_() % kKeys));
      absl::StatusOr<const Opt*> a = cached.Read(store, p, key);
      absl::StatusOr<const Opt*> b = plain.Read(store, p, key);
      ASSERT_OK(a);
      ASSERT_OK(b);
      ASSERT_EQ(**a, **b) << "store " << store.index << " partition " << p.value() << " " << key;
      // The new value depends on the one read, so a stale read shows in the state.
      Opt next;
      switch (rng_() % 10) {
        case 0:
        case 1:
          next = std::nullopt;
          break;
        case 2:
          next = **a;  // rewriting the same value: no change
          break;
        default: {
          std::string v = (*a)->value_or("");
          v.push_back(static_cast<char>('a' + rng_() % 3));
          if (v.size() > 40) v.erase(0, v.size() - 40);
          next = v;
        }
      }
      const int64_t offset = ++offset_;
      cached.SetSource("src", Offset(offset));
      plain.SetSource("src", Offset(offset));
      ASSERT_OK(cached.Write(store, p, key, next));
      ASSERT_OK(plain.Write(store, p, key, next));
    }
  }

  // Commits both; the cached side fails (a failing WAL) when `fail`. False if it failed.
  bool Commit(StagedBatch& cached, StagedBatch& plain, bool fail) {
    const bool tracked = cached.tracks_writes();
    std::vector<Change> a;
    if (fail) {
      fault_.Fail(DbFile::kWal, FileOp::kAppend);
      EXPECT_FALSE(cached.Commit(&a).ok());
      fault_.StopFailing();
      EXPECT_TRUE(a.empty());
      reopen_ = true;  // the engine refuses writes after a failed one
      return false;
    }
    std::vector<Change> b;
    EXPECT_OK(cached.Commit(&a));
    EXPECT_OK(plain.Commit(&b));
    EXPECT_EQ(Rows(a, !tracked), Rows(b, !tracked));
    return true;
  }

  // A writer other than the ingestion (a restore, a standby replica, a reset) changes or wipes
  // partition `p` of both engines; the owner then drops it from the cache.
  void WriteBehind(int32_t p) {
    const PartitionId part(p);
    if (rng_() % 3 == 0) {
      for (int s = 0; s < static_cast<int>(kStores.size()); ++s) {
        ASSERT_OK(cached_->DropPartition(StoreHandle{s}, part));
        ASSERT_OK(plain_->DropPartition(StoreHandle{s}, part));
      }
    } else {
      StagedBatch a(*cached_);  // as the restorer's and the standby's: no cache
      StagedBatch b(*plain_);
      for (int i = 0; i < 10; ++i) {
        const StoreHandle store{static_cast<int>(rng_() % kStores.size())};
        const std::string key = Key(static_cast<int>(rng_() % kKeys));
        const Opt v = rng_() % 4 == 0 ? Opt() : Opt(absl::StrCat("restored-", rng_() % 100));
        ASSERT_OK(a.Write(store, part, key, v));
        ASSERT_OK(b.Write(store, part, key, v));
      }
      ASSERT_OK(a.Commit(nullptr));
      ASSERT_OK(b.Commit(nullptr));
    }
    cache_->Invalidate(p);
    ++behind_;
  }

  // Every cached entry is what the cached engine holds; the budget holds.
  void CheckCache() {
    ASSERT_LE(cache_->bytes(), cache_->capacity());
    const int64_t hits = cache_->hits();
    const int64_t misses = cache_->misses();
    absl::Cleanup uncount = [&] {
      check_hits_ += cache_->hits() - hits;
      check_misses_ += cache_->misses() - misses;
    };
    for (int s = 0; s < static_cast<int>(kStores.size()); ++s) {
      for (int32_t p = 0; p < kPartitions; ++p) {
        for (int k = 0; k < kKeys; ++k) {
          const Opt* cached = cache_->Find(s, p, Key(k));
          if (cached == nullptr) continue;
          absl::StatusOr<Opt> stored = cached_->Get(StoreHandle{s}, PartitionId(p), Key(k));
          ASSERT_OK(stored);
          ASSERT_EQ(*cached, *stored) << "store " << s << " partition " << p << " " << Key(k);
        }
      }
    }
  }

  // Both engines hold the same entries and counts.
  void CheckSameState() {
    for (int s = 0; s < static_cast<int>(kStores.size()); ++s) {
      for (int32_t p = 0; p < kPartitions; ++p) {
        absl::StatusOr<std::vector<router::KeyValue>> a =
            cached_->Scan(StoreHandle{s}, PartitionId(p), router::KeyRange{}, std::nullopt, 1000);
        absl::StatusOr<std::vector<router::KeyValue>> b =
            plain_->Scan(StoreHandle{s}, PartitionId(p), router::KeyRange{}, std::nullopt, 1000);
        ASSERT_OK(a);
        ASSERT_OK(b);
        ASSERT_EQ(a->size(), b->size()) << "store " << s << " partition " << p;
        for (size_t i = 0; i < a->size(); ++i) {
          EXPECT_EQ((*a)[i].key, (*b)[i].key);
          EXPECT_EQ((*a)[i].value, (*b)[i].value);
        }
        absl::StatusOr<int64_t> ca = cached_->EntryCount(StoreHandle{s}, PartitionId(p));
        absl::StatusOr<int64_t> cb = plain_->EntryCount(StoreHandle{s}, PartitionId(p));
        ASSERT_OK(ca);
        ASSERT_OK(cb);
        EXPECT_EQ(*ca, *cb);
        EXPECT_EQ(*ca, static_cast<int64_t>(a->size()));
      }
    }
  }

  std::string dir_;
  FaultEnv fault_;  // outlives cached_
  std::unique_ptr<StoreEngine> cached_;
  std::unique_ptr<StoreEngine> plain_;
  std::unique_ptr<CommittedCache> cache_;
  std::mt19937 rng_{20261203};
  int64_t offset_ = 0;
  int failed_ = 0;
  int pipelined_ = 0;
  int behind_ = 0;
  bool reopen_ = false;
  // Lookups of CheckCache, not of the batches.
  int64_t check_hits_ = 0;
  int64_t check_misses_ = 0;
};

TEST_P(StagedBatchCacheTest, RandomBatchesMatchTheUncachedEngine) {
  for (int round = 0; round < 120; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    {
      // Batches live within a round: a failed commit reopens the cached engine.
      StagedBatch a1(*cached_, cache_.get());
      StagedBatch b1(*plain_);
      const bool tracked = rng_() % 3 == 0;
      a1.TrackWrites(tracked);
      b1.TrackWrites(tracked);
      Stage(a1, b1, 1 + static_cast<int>(rng_() % 60));
      const bool fail = rng_() % 12 == 0;
      if (rng_() % 2 == 0) {
        // Pipelined, as the ingestor does: the next batch is staged reading through this one
        // while it is in flight; it commits after it, or is discarded with it.
        ++pipelined_;
        StagedBatch a2(*cached_, cache_.get());
        StagedBatch b2(*plain_);
        a2.ReadThrough(&a1);
        b2.ReadThrough(&b1);
        Stage(a2, b2, 1 + static_cast<int>(rng_() % 60));
        if (!Commit(a1, b1, fail)) {
          ++failed_;
          a2.Clear();
          b1.Clear();
          b2.Clear();
        } else {
          a2.ReadThrough(nullptr);
          b2.ReadThrough(nullptr);
          Stage(a2, b2, static_cast<int>(rng_() % 20));
          Commit(a2, b2, /*fail=*/false);
        }
      } else if (!Commit(a1, b1, fail)) {
        ++failed_;
        b1.Clear();
      }
    }
    if (HasFatalFailure() || HasFailure()) return;
    if (reopen_) {
      reopen_ = false;
      ASSERT_OK(OpenCached());
    }
    if (rng_() % 8 == 0) WriteBehind(static_cast<int32_t>(rng_() % kPartitions));
    ASSERT_NO_FATAL_FAILURE(CheckCache());
  }
  CheckSameState();
  EXPECT_GT(failed_, 0);
  EXPECT_GT(pipelined_, 0);
  EXPECT_GT(behind_, 0);
  if (GetParam() >= (size_t{1} << 20)) {
    // Roomy: most reads after the first batches are hits.
    EXPECT_GT(cache_->hits() - check_hits_, cache_->misses() - check_misses_);
  }
}

INSTANTIATE_TEST_SUITE_P(Budgets, StagedBatchCacheTest,
                         ::testing::Values(size_t{0}, CommittedCache::kEntryOverhead * 4,
                                           CommittedCache::kEntryOverhead * 40, size_t{1} << 20),
                         [](const ::testing::TestParamInfo<size_t>& info) {
                           return absl::StrCat("bytes_", info.param);
                         });

}  // namespace
}  // namespace kiq::node
