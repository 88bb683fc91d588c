#include "node/store/committed_cache.h"

#include <optional>
#include <random>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kiq::node {
namespace {

using ::testing::IsNull;
using ::testing::NotNull;
using ::testing::Optional;
using ::testing::Pointee;

using Opt = std::optional<std::string>;

// What one entry of a key and a value of these sizes is charged.
size_t Charge(size_t key, size_t value) { return CommittedCache::kEntryOverhead + key + value; }

TEST(CommittedCacheTest, MissThenHitCountsBoth) {
  CommittedCache cache(1 << 20);
  EXPECT_THAT(cache.Find(0, 1, "k"), IsNull());
  cache.Put(0, 1, "k", Opt("v"));
  EXPECT_THAT(cache.Find(0, 1, "k"), Pointee(Optional(std::string("v"))));
  EXPECT_EQ(cache.hits(), 1);
  EXPECT_EQ(cache.misses(), 1);
  EXPECT_EQ(cache.bytes(), Charge(1, 1));
}

TEST(CommittedCacheTest, AbsentIsCachedAsAbsent) {
  CommittedCache cache(1 << 20);
  cache.Put(0, 0, "gone", std::nullopt);
  const Opt* found = cache.Find(0, 0, "gone");
  ASSERT_THAT(found, NotNull());
  EXPECT_EQ(*found, std::nullopt);
}

TEST(CommittedCacheTest, StoresPartitionsAndKeysAreDistinct) {
  CommittedCache cache(1 << 20);
  cache.Put(0, 0, "k", Opt("a"));
  cache.Put(1, 0, "k", Opt("b"));
  cache.Put(0, 1, "k", Opt("c"));
  cache.Put(0, 0, std::string("k\0", 2), Opt("d"));
  EXPECT_THAT(cache.Find(0, 0, "k"), Pointee(Optional(std::string("a"))));
  EXPECT_THAT(cache.Find(1, 0, "k"), Pointee(Optional(std::string("b"))));
  EXPECT_THAT(cache.Find(0, 1, "k"), Pointee(Optional(std::string("c"))));
  EXPECT_THAT(cache.Find(0, 0, std::string("k\0", 2)), Pointee(Optional(std::string("d"))));
  EXPECT_EQ(cache.entries(), 4u);
}

TEST(CommittedCacheTest, OverwriteReplacesValueAndCharge) {
  CommittedCache cache(1 << 20);
  cache.Put(0, 0, "k", Opt("short"));
  cache.Put(0, 0, "k", Opt(std::string(100, 'x')));
  EXPECT_EQ(cache.entries(), 1u);
  EXPECT_EQ(cache.bytes(), Charge(1, 100));
  cache.Put(0, 0, "k", std::nullopt);
  EXPECT_EQ(cache.bytes(), Charge(1, 0));
}

TEST(CommittedCacheTest, EvictsLeastRecentlyUsedFirst) {
  // Room for exactly three entries of one-byte keys and values.
  CommittedCache cache(3 * Charge(1, 1));
  cache.Put(0, 0, "a", Opt("1"));
  cache.Put(0, 0, "b", Opt("2"));
  cache.Put(0, 0, "c", Opt("3"));
  ASSERT_THAT(cache.Find(0, 0, "a"), NotNull());  // b is now the least recently used
  cache.Put(0, 0, "d", Opt("4"));
  EXPECT_THAT(cache.Find(0, 0, "b"), IsNull());
  EXPECT_THAT(cache.Find(0, 0, "a"), NotNull());
  EXPECT_THAT(cache.Find(0, 0, "c"), NotNull());
  EXPECT_THAT(cache.Find(0, 0, "d"), NotNull());
  EXPECT_EQ(cache.bytes(), 3 * Charge(1, 1));
}

TEST(CommittedCacheTest, GrowingAnEntryEvictsOthersNotItself) {
  CommittedCache cache(3 * Charge(1, 1));
  cache.Put(0, 0, "a", Opt("1"));
  cache.Put(0, 0, "b", Opt("2"));
  cache.Put(0, 0, "c", Opt("3"));
  // "a" is the least recently used, but it is the one being written.
  cache.Put(0, 0, "a", Opt(std::string(Charge(1, 1) + 1, 'x')));
  EXPECT_THAT(cache.Find(0, 0, "a"), NotNull());
  EXPECT_LE(cache.bytes(), cache.capacity());
  EXPECT_EQ(cache.entries(), 2u);
}

TEST(CommittedCacheTest, ValueLargerThanTheBudgetIsNotCachedAndDropsTheOldEntry) {
  CommittedCache cache(2 * Charge(1, 1));
  cache.Put(0, 0, "a", Opt("1"));
  cache.Put(0, 0, "b", Opt("2"));
  cache.Put(0, 0, "a", Opt(std::string(1000, 'x')));
  EXPECT_THAT(cache.Find(0, 0, "a"), IsNull());
  EXPECT_THAT(cache.Find(0, 0, "b"), NotNull());
  EXPECT_EQ(cache.bytes(), Charge(1, 1));
}

TEST(CommittedCacheTest, ZeroBudgetCachesNothing) {
  CommittedCache cache(0);
  cache.Put(0, 0, "a", Opt("1"));
  EXPECT_THAT(cache.Find(0, 0, "a"), IsNull());
  EXPECT_EQ(cache.bytes(), 0u);
}

TEST(CommittedCacheTest, InvalidateDropsOnlyTheChosenPartitionsOfEveryStore) {
  CommittedCache cache(1 << 20);
  for (int store = 0; store < 2; ++store) {
    for (int32_t p = 0; p < 4; ++p) cache.Put(store, p, "k", Opt("v"));
  }
  cache.Invalidate(2);
  cache.Invalidate([](int32_t p) { return p == 0; });
  for (int store = 0; store < 2; ++store) {
    EXPECT_THAT(cache.Find(store, 0, "k"), IsNull());
    EXPECT_THAT(cache.Find(store, 1, "k"), NotNull());
    EXPECT_THAT(cache.Find(store, 2, "k"), IsNull());
    EXPECT_THAT(cache.Find(store, 3, "k"), NotNull());
  }
  EXPECT_EQ(cache.bytes(), 4 * Charge(1, 1));
  // The LRU list survives invalidation: eviction still works through what is left.
  CommittedCache small(2 * Charge(1, 1));
  small.Put(0, 0, "a", Opt("1"));
  small.Put(0, 1, "b", Opt("2"));
  small.Invalidate(0);
  small.Put(0, 1, "c", Opt("3"));
  small.Put(0, 1, "d", Opt("4"));
  EXPECT_THAT(small.Find(0, 1, "b"), IsNull());
  EXPECT_EQ(small.entries(), 2u);
}

// Against a model (a map of what was put, LRU order ignored): whatever the cache returns is
// the last value put for the key, and its bytes never exceed the budget.
TEST(CommittedCacheTest, RandomOperationsNeverReturnAStaleValueNorExceedTheBudget) {
  std::mt19937 rng(17);
  for (size_t budget : {size_t{0}, Charge(2, 3), 5 * Charge(2, 10), size_t{1} << 20}) {
    CommittedCache cache(budget);
    absl::flat_hash_map<std::string, Opt> model;  // "store/partition/key"
    size_t hits = 0;
    for (int i = 0; i < 20000; ++i) {
      const int store = static_cast<int>(rng() % 2);
      const int32_t p = static_cast<int32_t>(rng() % 3);
      const std::string key = absl::StrCat("k", rng() % 20);
      const std::string id = absl::StrCat(store, "/", p, "/", key);
      switch (rng() % 8) {
        case 0:
          cache.Invalidate(p);
          for (int s = 0; s < 2; ++s) {
            for (int k = 0; k < 20; ++k) model.erase(absl::StrCat(s, "/", p, "/k", k));
          }
          break;
        case 1:
        case 2: {
          const Opt value = rng() % 4 == 0 ? Opt() : Opt(std::string(rng() % 12, 'v'));
          cache.Put(store, p, key, value);
          model[id] = value;
          break;
        }
        default:
          if (const Opt* found = cache.Find(store, p, key)) {
            ++hits;
            ASSERT_TRUE(model.contains(id)) << id << " was never put (or was invalidated)";
            EXPECT_EQ(*found, model[id]) << id;
          }
      }
      ASSERT_LE(cache.bytes(), budget);
    }
    if (budget >= 5 * Charge(2, 10)) {
      EXPECT_GT(hits, 0u) << budget;
    }
  }
}

}  // namespace
}  // namespace kiq::node
