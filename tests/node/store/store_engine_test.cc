#include "node/store/store_engine.h"

#include <stdlib.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <rocksdb/db.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "router/port/local_stores.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using ::kiq::testing::IsOkAndHolds;
using ::kiq::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Optional;

using Entries = std::vector<std::pair<std::string, std::string>>;

std::string Bytes(absl::string_view s) { return std::string(s.data(), s.size()); }

// Partition ids whose big-endian bytes end in (or are all) 0xff: the places where "the next
// partition's prefix" carries or wraps, and where a prefix scan most easily leaks.
const std::vector<int32_t> kEdgePartitions = {0,
                                              1,
                                              0xff,
                                              0x100,
                                              0xffff,
                                              0x10000,
                                              0xffffff,
                                              0x7fffffff,
                                              -1 /* ff ff ff ff */,
                                              static_cast<int32_t>(0xfffffffe),
                                              static_cast<int32_t>(0x80000000)};

class StoreEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "store_engine_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
    path_ = dir_ + "/db";
  }

  void TearDown() override {
    engine_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Closes the current engine (if any) and opens `path_` again with `stores`.
  void Reopen(const std::vector<std::string>& stores = {"s0", "s1"}) {
    engine_.reset();
    absl::StatusOr<std::unique_ptr<StoreEngine>> opened = StoreEngine::Open(path_, stores);
    ASSERT_OK(opened);
    engine_ = std::move(*opened);
  }

  StoreHandle H(absl::string_view store) {
    absl::StatusOr<StoreHandle> h = engine_->Handle(store);
    EXPECT_OK(h);
    return h.ok() ? *h : StoreHandle{};
  }

  void Put(absl::string_view store, int32_t p, absl::string_view key, absl::string_view value) {
    StoreEngine::Batch batch = engine_->NewBatch();
    batch.Put(H(store), PartitionId(p), key, value);
    ASSERT_OK(engine_->Apply(batch));
  }

  Entries ScanAll(absl::string_view store, int32_t p, const router::KeyRange& range = {},
                  const std::optional<std::string>& after = std::nullopt, size_t limit = 1000000) {
    absl::StatusOr<std::vector<router::KeyValue>> kvs =
        engine_->Scan(H(store), PartitionId(p), range, after, limit);
    EXPECT_OK(kvs);
    Entries out;
    if (!kvs.ok()) return out;
    for (const router::KeyValue& kv : *kvs) {
      EXPECT_EQ(kv.partition, PartitionId(p)) << "key " << absl::CHexEscape(kv.key);
      out.emplace_back(kv.key, kv.value);
    }
    return out;
  }

  std::string dir_;
  std::string path_;
  std::unique_ptr<StoreEngine> engine_;
};

TEST(StoreKeyLayoutTest, PrefixIsFourByteBigEndianPartition) {
  EXPECT_EQ(PartitionPrefix(PartitionId(0)), Bytes(absl::string_view("\0\0\0\0", 4)));
  EXPECT_EQ(PartitionPrefix(PartitionId(0x01020304)), "\x01\x02\x03\x04");
  EXPECT_EQ(PartitionPrefix(PartitionId(-1)), "\xff\xff\xff\xff");
  EXPECT_EQ(StoreKey(PartitionId(258), absl::string_view("k\0", 2)),
            Bytes(absl::string_view("\0\0\x01\x02k\0", 6)));
  EXPECT_EQ(StoreKey(PartitionId(7), ""), Bytes(absl::string_view("\0\0\0\x07", 4)));
}

TEST(ToStatusTest, MapsRocksDbCodesAndNamesWhatWeWereDoing) {
  EXPECT_OK(ToStatus(rocksdb::Status::OK(), "anything"));
  EXPECT_THAT(ToStatus(rocksdb::Status::Corruption("bad block"), "get store=s partition=3"),
              StatusIs(absl::StatusCode::kDataLoss, "get store=s partition=3"));
  EXPECT_THAT(ToStatus(rocksdb::Status::Corruption("bad block"), "x"),
              StatusIs(absl::StatusCode::kDataLoss, "bad block"));
  EXPECT_THAT(ToStatus(rocksdb::Status::NotFound("nf"), "x"),
              StatusIs(absl::StatusCode::kNotFound, "nf"));
  EXPECT_THAT(ToStatus(rocksdb::Status::IOError("disk"), "x"),
              StatusIs(absl::StatusCode::kUnavailable, "disk"));
  EXPECT_THAT(ToStatus(rocksdb::Status::Busy("busy"), "x"),
              StatusIs(absl::StatusCode::kUnavailable, "busy"));
  EXPECT_THAT(ToStatus(rocksdb::Status::InvalidArgument("arg"), "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, "arg"));
  EXPECT_THAT(ToStatus(rocksdb::Status::NotSupported("ns"), "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, "ns"));
  EXPECT_THAT(ToStatus(rocksdb::Status::Aborted("ab"), "x"),
              StatusIs(absl::StatusCode::kAborted, "ab"));
  EXPECT_THAT(ToStatus(rocksdb::Status::ShutdownInProgress("sd"), "x"),
              StatusIs(absl::StatusCode::kInternal, "sd"));
}

TEST_F(StoreEngineTest, HandleOfUnknownStoreIsNotFoundNamingIt) {
  Reopen({"orders"});
  EXPECT_THAT(engine_->Handle("customers"), StatusIs(absl::StatusCode::kNotFound, "\"customers\""));
  EXPECT_OK(engine_->Handle("orders"));
}

TEST_F(StoreEngineTest, HandlesAreDistinctAndNamed) {
  Reopen({"a", "b"});
  StoreHandle a = H("a");
  StoreHandle b = H("b");
  EXPECT_NE(a.index, b.index);
  EXPECT_EQ(engine_->StoreName(a), "a");
  EXPECT_EQ(engine_->StoreName(b), "b");
}

TEST_F(StoreEngineTest, OpenFailsNamingThePathWhileAnotherEngineHoldsIt) {
  Reopen();
  EXPECT_THAT(StoreEngine::Open(path_, {"s0"}), StatusIs(absl::StatusCode::kUnavailable, path_));
}

TEST_F(StoreEngineTest, GetReturnsNulloptForMissingKey) {
  Reopen();
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), "nope"), IsOkAndHolds(Eq(std::nullopt)));
}

TEST_F(StoreEngineTest, GetReturnsWhatWasPutIncludingBinaryKeysAndValues) {
  Reopen();
  const std::string nul_key("a\0b", 3);
  const std::string nul_value("\0\xff\0", 3);
  Put("s0", 0, "", "empty-key");
  Put("s0", 0, nul_key, nul_value);
  Put("s0", 0, "\xff\xff", "high");
  Put("s0", 0, "k", "");
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), ""),
              IsOkAndHolds(Optional(Bytes("empty-key"))));
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), nul_key), IsOkAndHolds(Optional(nul_value)));
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), "a"), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), "\xff\xff"),
              IsOkAndHolds(Optional(Bytes("high"))));
  // An empty value is a value, not an absence.
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), "k"), IsOkAndHolds(Optional(Bytes(""))));
}

TEST_F(StoreEngineTest, SameKeyInOtherPartitionOrStoreIsSeparate) {
  Reopen();
  Put("s0", 1, "k", "s0p1");
  Put("s0", 2, "k", "s0p2");
  Put("s1", 1, "k", "s1p1");
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(1), "k"), IsOkAndHolds(Optional(Bytes("s0p1"))));
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(2), "k"), IsOkAndHolds(Optional(Bytes("s0p2"))));
  EXPECT_THAT(engine_->Get(H("s1"), PartitionId(1), "k"), IsOkAndHolds(Optional(Bytes("s1p1"))));
  EXPECT_THAT(engine_->Get(H("s1"), PartitionId(2), "k"), IsOkAndHolds(Eq(std::nullopt)));
}

TEST_F(StoreEngineTest, NothingIsVisibleBeforeApply) {
  Reopen();
  StoreEngine::Batch batch = engine_->NewBatch();
  batch.Put(H("s0"), PartitionId(0), "k", "v");
  batch.SetEntryCount(H("s0"), PartitionId(0), 1);
  batch.SetOffset("topic", PartitionId(0), Offset(10));
  EXPECT_EQ(batch.Count(), 3u);
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), "k"), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(engine_->EntryCount(H("s0"), PartitionId(0)), IsOkAndHolds(0));
  EXPECT_THAT(engine_->ReadOffset("topic", PartitionId(0)), IsOkAndHolds(Eq(std::nullopt)));

  ASSERT_OK(engine_->Apply(batch));
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), "k"), IsOkAndHolds(Optional(Bytes("v"))));
  EXPECT_THAT(engine_->EntryCount(H("s0"), PartitionId(0)), IsOkAndHolds(1));
  EXPECT_THAT(engine_->ReadOffset("topic", PartitionId(0)), IsOkAndHolds(Optional(Offset(10))));
}

TEST_F(StoreEngineTest, LaterOperationInABatchWins) {
  Reopen();
  StoreEngine::Batch batch = engine_->NewBatch();
  batch.Put(H("s0"), PartitionId(0), "k", "1");
  batch.Delete(H("s0"), PartitionId(0), "k");
  batch.Put(H("s0"), PartitionId(0), "j", "1");
  batch.Put(H("s0"), PartitionId(0), "j", "2");
  batch.SetOffset("t", PartitionId(0), Offset(5));
  batch.SetOffset("t", PartitionId(0), Offset(6));
  ASSERT_OK(engine_->Apply(batch));
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), "k"), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), "j"), IsOkAndHolds(Optional(Bytes("2"))));
  EXPECT_THAT(engine_->ReadOffset("t", PartitionId(0)), IsOkAndHolds(Optional(Offset(6))));
}

TEST_F(StoreEngineTest, ReadOffsetIsNulloptBeforeAnyWrite) {
  Reopen();
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(0)), IsOkAndHolds(Eq(std::nullopt)));
  Reopen();
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(0)), IsOkAndHolds(Eq(std::nullopt)));
}

TEST_F(StoreEngineTest, OffsetsAreKeptPerTopicAndPartitionAcrossReopen) {
  Reopen();
  StoreEngine::Batch batch = engine_->NewBatch();
  batch.SetOffset("orders", PartitionId(0), Offset(0));  // offset 0 is stored, not absent
  batch.SetOffset("orders", PartitionId(1), Offset(42));
  batch.SetOffset("orders2", PartitionId(1), Offset(7));
  batch.SetOffset("o", PartitionId(-1), Offset(int64_t{1} << 40));
  ASSERT_OK(engine_->Apply(batch));
  Reopen();
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(0)), IsOkAndHolds(Optional(Offset(0))));
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(1)), IsOkAndHolds(Optional(Offset(42))));
  EXPECT_THAT(engine_->ReadOffset("orders2", PartitionId(1)), IsOkAndHolds(Optional(Offset(7))));
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(2)), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(engine_->ReadOffset("order", PartitionId(1)), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(engine_->ReadOffset("o", PartitionId(-1)),
              IsOkAndHolds(Optional(Offset(int64_t{1} << 40))));
}

TEST_F(StoreEngineTest, ClearOffsetForgetsOnlyThatOffset) {
  Reopen();
  StoreEngine::Batch batch = engine_->NewBatch();
  batch.SetOffset("t", PartitionId(0), Offset(3));
  batch.SetOffset("t", PartitionId(1), Offset(4));
  ASSERT_OK(engine_->Apply(batch));
  ASSERT_OK(engine_->ClearOffset("t", PartitionId(0)));
  Reopen();
  EXPECT_THAT(engine_->ReadOffset("t", PartitionId(0)), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(engine_->ReadOffset("t", PartitionId(1)), IsOkAndHolds(Optional(Offset(4))));
}

TEST_F(StoreEngineTest, EntryCountIsZeroUntilSetAndKeptPerStoreAndPartition) {
  Reopen();
  EXPECT_THAT(engine_->EntryCount(H("s0"), PartitionId(0)), IsOkAndHolds(0));
  StoreEngine::Batch batch = engine_->NewBatch();
  batch.SetEntryCount(H("s0"), PartitionId(0), 12);
  batch.SetEntryCount(H("s1"), PartitionId(0), 34);
  batch.SetEntryCount(H("s0"), PartitionId(-1), 56);
  ASSERT_OK(engine_->Apply(batch));
  Reopen();
  EXPECT_THAT(engine_->EntryCount(H("s0"), PartitionId(0)), IsOkAndHolds(12));
  EXPECT_THAT(engine_->EntryCount(H("s1"), PartitionId(0)), IsOkAndHolds(34));
  EXPECT_THAT(engine_->EntryCount(H("s0"), PartitionId(-1)), IsOkAndHolds(56));
  EXPECT_THAT(engine_->EntryCount(H("s0"), PartitionId(1)), IsOkAndHolds(0));
  EXPECT_THAT(engine_->EntryCount(H("s1"), PartitionId(-1)), IsOkAndHolds(0));
}

TEST_F(StoreEngineTest, MalformedStoredCountIsDataLossNamingStoreAndPartition) {
  Reopen({"s0"});
  StoreEngine::Batch batch = engine_->NewBatch();
  batch.SetEntryCount(H("s0"), PartitionId(3), 1);
  ASSERT_OK(engine_->Apply(batch));
  engine_.reset();
  {
    // Overwrite the one kiq_meta entry with 3 bytes, as a corrupted or foreign write would.
    std::vector<rocksdb::ColumnFamilyDescriptor> families = {
        {rocksdb::kDefaultColumnFamilyName, rocksdb::ColumnFamilyOptions()},
        {"kiq_meta", rocksdb::ColumnFamilyOptions()},
        {"s0", rocksdb::ColumnFamilyOptions()}};
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), path_, families, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    std::vector<std::string> keys;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), handles[1]));
    for (it->SeekToFirst(); it->Valid(); it->Next()) keys.push_back(it->key().ToString());
    it.reset();
    ASSERT_EQ(keys.size(), 1u);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[1], keys[0], "abc").ok());
    for (rocksdb::ColumnFamilyHandle* h : handles) db->DestroyColumnFamilyHandle(h);
  }
  Reopen({"s0"});
  EXPECT_THAT(engine_->EntryCount(H("s0"), PartitionId(3)),
              StatusIs(absl::StatusCode::kDataLoss, "store=s0 partition=3"));
}

TEST_F(StoreEngineTest, ReopeningWithAnExtraStoreKeepsOldData) {
  Reopen({"s0"});
  Put("s0", 2, "k", "v");
  StoreEngine::Batch batch = engine_->NewBatch();
  batch.SetEntryCount(H("s0"), PartitionId(2), 1);
  batch.SetOffset("t", PartitionId(2), Offset(9));
  ASSERT_OK(engine_->Apply(batch));

  Reopen({"s0", "new"});
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(2), "k"), IsOkAndHolds(Optional(Bytes("v"))));
  EXPECT_THAT(engine_->EntryCount(H("s0"), PartitionId(2)), IsOkAndHolds(1));
  EXPECT_THAT(engine_->ReadOffset("t", PartitionId(2)), IsOkAndHolds(Optional(Offset(9))));
  EXPECT_THAT(engine_->Get(H("new"), PartitionId(2), "k"), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(ScanAll("new", 2), IsEmpty());
  Put("new", 2, "k", "n");
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(2), "k"), IsOkAndHolds(Optional(Bytes("v"))));
}

TEST_F(StoreEngineTest, StoreLeftOutOfTheTopologyIsKeptForWhenItReturns) {
  Reopen({"s0", "s1"});
  Put("s1", 0, "k", "v");
  Reopen({"s0"});
  EXPECT_THAT(engine_->Handle("s1"), StatusIs(absl::StatusCode::kNotFound, "s1"));
  Reopen({"s1", "s0"});  // also a different order: handles follow names, not creation order
  EXPECT_THAT(engine_->Get(H("s1"), PartitionId(0), "k"), IsOkAndHolds(Optional(Bytes("v"))));
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(0), "k"), IsOkAndHolds(Eq(std::nullopt)));
}

TEST_F(StoreEngineTest, ScanReturnsPartitionInKeyByteOrder) {
  Reopen();
  const std::vector<std::string> keys = {
      "b", "", "\xff", std::string("\0", 1), std::string("a\0", 2), "a", "\x80", "ab"};
  for (const std::string& k : keys) Put("s0", 4, k, "v" + k);
  EXPECT_THAT(ScanAll("s0", 4),
              ElementsAre(Eq(std::pair<std::string, std::string>("", "v")),
                          Eq(std::pair<std::string, std::string>(std::string("\0", 1),
                                                                 "v" + std::string("\0", 1))),
                          Eq(std::pair<std::string, std::string>("a", "va")),
                          Eq(std::pair<std::string, std::string>(std::string("a\0", 2),
                                                                 "v" + std::string("a\0", 2))),
                          Eq(std::pair<std::string, std::string>("ab", "vab")),
                          Eq(std::pair<std::string, std::string>("b", "vb")),
                          Eq(std::pair<std::string, std::string>("\x80", "v\x80")),
                          Eq(std::pair<std::string, std::string>("\xff", "v\xff"))));
}

TEST_F(StoreEngineTest, ScanBoundsAreInclusive) {
  Reopen();
  for (const char* k : {"a", "b", "c", "d", "e"}) Put("s0", 0, k, k);
  EXPECT_THAT(ScanAll("s0", 0, {"b", "d"}),
              ElementsAre(Eq(Entries::value_type("b", "b")), Eq(Entries::value_type("c", "c")),
                          Eq(Entries::value_type("d", "d"))));
  // Bounds that are not keys.
  EXPECT_THAT(ScanAll("s0", 0, {"bb", "cc"}), ElementsAre(Eq(Entries::value_type("c", "c"))));
  // from == to is the one key.
  EXPECT_THAT(ScanAll("s0", 0, {"c", "c"}), ElementsAre(Eq(Entries::value_type("c", "c"))));
  // An empty range.
  EXPECT_THAT(ScanAll("s0", 0, {"cc", "cd"}), IsEmpty());
}

TEST_F(StoreEngineTest, ScanWithOpenBounds) {
  Reopen();
  for (const char* k : {"a", "b", "c"}) Put("s0", 0, k, k);
  Put("s0", 0, "", "empty");
  EXPECT_EQ(ScanAll("s0", 0, {std::nullopt, "b"}),
            (Entries{{"", "empty"}, {"a", "a"}, {"b", "b"}}));
  EXPECT_EQ(ScanAll("s0", 0, {"b", std::nullopt}), (Entries{{"b", "b"}, {"c", "c"}}));
  // An empty-string bound is a bound (the smallest key), not an open one.
  EXPECT_EQ(ScanAll("s0", 0, {std::nullopt, ""}), (Entries{{"", "empty"}}));
  EXPECT_EQ(ScanAll("s0", 0, {"", std::nullopt}).size(), 4u);
}

TEST_F(StoreEngineTest, ScanResumesStrictlyAfterTheAfterKey) {
  Reopen();
  const std::string a0("a\0", 2);
  for (const std::string& k : {std::string("a"), a0, std::string("b"), std::string("c")}) {
    Put("s0", 0, k, "v");
  }
  auto keys = [&](const router::KeyRange& range, std::optional<std::string> after) {
    std::vector<std::string> out;
    for (const auto& [k, v] : ScanAll("s0", 0, range, after)) out.push_back(k);
    return out;
  };
  // The key right after "a" in byte order is "a\0": resuming must not skip it.
  EXPECT_EQ(keys({}, "a"), (std::vector<std::string>{a0, "b", "c"}));
  EXPECT_EQ(keys({}, a0), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(keys({}, "bb"), (std::vector<std::string>{"c"}));
  EXPECT_EQ(keys({}, "c"), (std::vector<std::string>{}));
  EXPECT_EQ(keys({}, ""), (std::vector<std::string>{"a", a0, "b", "c"}));
  // `after` below `from`: the range's start wins.
  EXPECT_EQ(keys({"b", std::nullopt}, "a"), (std::vector<std::string>{"b", "c"}));
  // `after` equal to `from`: strictly after it.
  EXPECT_EQ(keys({"b", std::nullopt}, "b"), (std::vector<std::string>{"c"}));
  // `after` at or past `to`: nothing.
  EXPECT_EQ(keys({"a", "b"}, "b"), (std::vector<std::string>{}));
  EXPECT_EQ(keys({"a", "b"}, "z"), (std::vector<std::string>{}));
}

TEST_F(StoreEngineTest, ScanStopsAtLimit) {
  Reopen();
  for (const char* k : {"a", "b", "c", "d"}) Put("s0", 0, k, k);
  EXPECT_EQ(ScanAll("s0", 0, {}, std::nullopt, 2), (Entries{{"a", "a"}, {"b", "b"}}));
  EXPECT_EQ(ScanAll("s0", 0, {}, "b", 1), (Entries{{"c", "c"}}));
  EXPECT_EQ(ScanAll("s0", 0, {"b", "c"}, std::nullopt, 5), (Entries{{"b", "b"}, {"c", "c"}}));
  EXPECT_THAT(ScanAll("s0", 0, {}, std::nullopt, 0), IsEmpty());
}

TEST_F(StoreEngineTest, ScanOfUnusedPartitionIsEmpty) {
  Reopen();
  Put("s0", 3, "k", "v");
  EXPECT_THAT(ScanAll("s0", 2), IsEmpty());
  EXPECT_THAT(ScanAll("s0", 4), IsEmpty());
  EXPECT_THAT(ScanAll("s1", 3), IsEmpty());
}

// Keys whose bytes look like another partition's prefix, in partitions whose prefixes end in
// 0xff, must stay in their partition for Get, Scan (any bounds) and DropPartition.
TEST_F(StoreEngineTest, PartitionsNeverLeakIntoEachOther) {
  Reopen();
  const std::vector<std::string> keys = {
      "",     std::string("\0", 1),   std::string("\0\0\0\0", 4),
      "\xff", "\xff\xff\xff\xff\xff", std::string("\0\0\x01\0", 4),
      "k"};
  for (int32_t p : kEdgePartitions) {
    for (const std::string& k : keys) Put("s0", p, k, absl::StrCat(p, "/", absl::CHexEscape(k)));
  }
  for (int32_t p : kEdgePartitions) {
    SCOPED_TRACE(absl::StrCat("partition ", p));
    Entries expected;
    std::map<std::string, std::string> sorted;
    for (const std::string& k : keys) sorted[k] = absl::StrCat(p, "/", absl::CHexEscape(k));
    expected.assign(sorted.begin(), sorted.end());
    EXPECT_EQ(ScanAll("s0", p), expected);
    EXPECT_EQ(ScanAll("s0", p, {std::nullopt, "\xff\xff\xff\xff\xff\xff"}), expected);
    EXPECT_EQ(ScanAll("s0", p, {"", std::nullopt}), expected);
    EXPECT_EQ(ScanAll("s0", p, {}, "\xff\xff\xff\xff\xff"), Entries{});
    EXPECT_EQ(ScanAll("s0", p, {}, "\xff"),
              (Entries{{"\xff\xff\xff\xff\xff", sorted["\xff\xff\xff\xff\xff"]}}));
    for (const std::string& k : keys) {
      EXPECT_THAT(engine_->Get(H("s0"), PartitionId(p), k), IsOkAndHolds(Optional(sorted[k])));
    }
    EXPECT_THAT(ScanAll("s1", p), IsEmpty());
  }
  // The neighbours of every edge partition hold nothing.
  for (int32_t p : {2, 0xfe, 0x101, 0xfffe, 0x10001, 0x1000000, 0x7ffffffe,
                    static_cast<int32_t>(0x80000001), static_cast<int32_t>(0xfffffffd)}) {
    SCOPED_TRACE(absl::StrCat("neighbour partition ", p));
    EXPECT_THAT(ScanAll("s0", p), IsEmpty());
  }
}

TEST_F(StoreEngineTest, DropPartitionRemovesOnlyThatPartitionAndItsCount) {
  Reopen();
  for (int32_t p : kEdgePartitions) {
    StoreEngine::Batch batch = engine_->NewBatch();
    for (const char* k : {"", "a", "\xff\xff"}) {
      batch.Put(H("s0"), PartitionId(p), k, "v");
      batch.Put(H("s1"), PartitionId(p), k, "v");
    }
    batch.SetEntryCount(H("s0"), PartitionId(p), 3);
    batch.SetEntryCount(H("s1"), PartitionId(p), 3);
    batch.SetOffset("t", PartitionId(p), Offset(100));
    ASSERT_OK(engine_->Apply(batch));
  }
  for (size_t i = 0; i < kEdgePartitions.size(); ++i) {
    const int32_t dropped = kEdgePartitions[i];
    SCOPED_TRACE(absl::StrCat("dropped partition ", dropped));
    ASSERT_OK(engine_->DropPartition(H("s0"), PartitionId(dropped)));
    Reopen();
    for (size_t j = 0; j < kEdgePartitions.size(); ++j) {
      const int32_t p = kEdgePartitions[j];
      SCOPED_TRACE(absl::StrCat("checked partition ", p));
      const bool gone = j <= i;
      EXPECT_EQ(ScanAll("s0", p).size(), gone ? 0u : 3u);
      EXPECT_THAT(engine_->Get(H("s0"), PartitionId(p), "a"),
                  IsOkAndHolds(gone ? std::nullopt : std::optional<std::string>("v")));
      EXPECT_THAT(engine_->EntryCount(H("s0"), PartitionId(p)), IsOkAndHolds(gone ? 0 : 3));
      // The other store and the offsets are untouched.
      EXPECT_EQ(ScanAll("s1", p).size(), 3u);
      EXPECT_THAT(engine_->EntryCount(H("s1"), PartitionId(p)), IsOkAndHolds(3));
      EXPECT_THAT(engine_->ReadOffset("t", PartitionId(p)), IsOkAndHolds(Optional(Offset(100))));
    }
  }
}

// Partition ff ff ff ff has no next prefix to bound a range delete: its keys up to the last one
// must still go, including when the last key is the prefix itself (the empty key).
TEST_F(StoreEngineTest, DropOfTheLastPartitionRemovesEveryKeyUpToTheLast) {
  Reopen();
  Put("s0", -1, "", "v");
  Put("s0", static_cast<int32_t>(0xfffffffe), "\xff\xff", "kept");
  ASSERT_OK(engine_->DropPartition(H("s0"), PartitionId(-1)));
  EXPECT_THAT(ScanAll("s0", -1), IsEmpty());
  EXPECT_EQ(ScanAll("s0", static_cast<int32_t>(0xfffffffe)), (Entries{{"\xff\xff", "kept"}}));
  // Dropping an empty last partition is fine too.
  ASSERT_OK(engine_->DropPartition(H("s0"), PartitionId(-1)));
  Put("s0", -1, "a", "1");
  Put("s0", -1, "\xff\xff\xff", "2");
  ASSERT_OK(engine_->DropPartition(H("s0"), PartitionId(-1)));
  Reopen();
  EXPECT_THAT(ScanAll("s0", -1), IsEmpty());
  EXPECT_THAT(engine_->Get(H("s0"), PartitionId(-1), "\xff\xff\xff"),
              IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_EQ(ScanAll("s0", static_cast<int32_t>(0xfffffffe)), (Entries{{"\xff\xff", "kept"}}));
}

TEST_F(StoreEngineTest, DroppedPartitionCanBeRebuilt) {
  Reopen();
  Put("s0", 5, "old", "v");
  ASSERT_OK(engine_->DropPartition(H("s0"), PartitionId(5)));
  Put("s0", 5, "new", "v");
  EXPECT_EQ(ScanAll("s0", 5), (Entries{{"new", "v"}}));
}

// A LevelDB-style model test: random batches of every kind of write across two stores and
// partitions with edge-case ids, compared against std::map after reopening the database.
class StoreEngineModelTest : public StoreEngineTest,
                             public ::testing::WithParamInterface<uint32_t> {};

struct Model {
  // (store index, partition) → key → value
  std::map<std::pair<int, int32_t>, std::map<std::string, std::string>> data;
  std::map<std::pair<int, int32_t>, int64_t> counts;
  std::map<std::pair<std::string, int32_t>, int64_t> offsets;
};

TEST_P(StoreEngineModelTest, MatchesStdMapModelAcrossReopens) {
  const uint32_t seed = GetParam();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937 rng(seed);
  auto uniform = [&rng](int n) { return static_cast<int>(rng() % static_cast<uint32_t>(n)); };

  const std::vector<std::string> stores = {"s0", "s1"};
  const std::vector<int32_t> partitions = {0, 1, 0xff, 0x100, 0x7fffffff, -1};
  const std::vector<std::string> topics = {"t", "t2"};
  // A tiny alphabet so that keys collide, prefix one another and hit every byte edge.
  const std::string alphabet("\0a\x01\x7f\x80\xff", 6);
  auto random_key = [&]() {
    std::string k;
    const int len = uniform(5);  // 0..4: the empty key is common
    for (int i = 0; i < len; ++i) k.push_back(alphabet[uniform(static_cast<int>(alphabet.size()))]);
    return k;
  };

  Model model;
  Reopen(stores);
  std::vector<StoreHandle> handles = {H("s0"), H("s1")};

  auto check = [&](int round) {
    SCOPED_TRACE(absl::StrCat("check after round ", round));
    for (int s = 0; s < 2; ++s) {
      for (int32_t p : partitions) {
        SCOPED_TRACE(absl::StrCat("store ", stores[s], " partition ", p));
        const std::map<std::string, std::string>& m = model.data[{s, p}];
        // Full scan.
        ASSERT_EQ(ScanAll(stores[s], p), Entries(m.begin(), m.end()));
        // Point reads of present and (probably) absent keys.
        for (const auto& [k, v] : m) {
          ASSERT_THAT(engine_->Get(handles[s], PartitionId(p), k), IsOkAndHolds(Optional(v)));
        }
        for (int i = 0; i < 5; ++i) {
          const std::string k = random_key();
          auto it = m.find(k);
          ASSERT_THAT(
              engine_->Get(handles[s], PartitionId(p), k),
              IsOkAndHolds(it == m.end() ? std::nullopt : std::optional<std::string>(it->second)));
        }
        // Random bounded, resumed, limited scans.
        for (int i = 0; i < 4; ++i) {
          router::KeyRange range;
          if (uniform(3) != 0) range.from = random_key();
          if (uniform(3) != 0) range.to = random_key();
          if (range.from && range.to && *range.from > *range.to) std::swap(range.from, range.to);
          std::optional<std::string> after;
          if (uniform(2) == 0) after = random_key();
          const size_t limit = uniform(4) == 0 ? 1000 : static_cast<size_t>(uniform(5));
          Entries expected;
          for (const auto& [k, v] : m) {
            if (expected.size() >= limit) break;
            if (range.from && k < *range.from) continue;
            if (range.to && k > *range.to) continue;
            if (after && k <= *after) continue;
            expected.emplace_back(k, v);
          }
          ASSERT_EQ(ScanAll(stores[s], p, range, after, limit), expected)
              << "from=" << (range.from ? absl::CHexEscape(*range.from) : "open")
              << " to=" << (range.to ? absl::CHexEscape(*range.to) : "open")
              << " after=" << (after ? absl::CHexEscape(*after) : "none") << " limit=" << limit;
        }
        auto count = model.counts.find({s, p});
        ASSERT_THAT(engine_->EntryCount(handles[s], PartitionId(p)),
                    IsOkAndHolds(count == model.counts.end() ? 0 : count->second));
      }
    }
    for (const std::string& t : topics) {
      for (int32_t p : partitions) {
        auto o = model.offsets.find({t, p});
        ASSERT_THAT(
            engine_->ReadOffset(t, PartitionId(p)),
            IsOkAndHolds(o == model.offsets.end() ? std::nullopt
                                                  : std::optional<Offset>(Offset(o->second))));
      }
    }
  };

  constexpr int kRounds = 120;
  for (int round = 0; round < kRounds; ++round) {
    const int action = uniform(20);
    if (action == 0) {
      const int s = uniform(2);
      const int32_t p = partitions[uniform(static_cast<int>(partitions.size()))];
      ASSERT_OK(engine_->DropPartition(handles[s], PartitionId(p)));
      model.data.erase({s, p});
      model.counts.erase({s, p});
    } else if (action == 1) {
      const std::string& t = topics[uniform(2)];
      const int32_t p = partitions[uniform(static_cast<int>(partitions.size()))];
      ASSERT_OK(engine_->ClearOffset(t, PartitionId(p)));
      model.offsets.erase({t, p});
    } else {
      StoreEngine::Batch batch = engine_->NewBatch();
      Model next = model;
      const int ops = 1 + uniform(25);
      for (int i = 0; i < ops; ++i) {
        const int s = uniform(2);
        const int32_t p = partitions[uniform(static_cast<int>(partitions.size()))];
        const int op = uniform(10);
        if (op < 5) {
          const std::string k = random_key();
          const std::string v = uniform(4) == 0 ? random_key() : absl::StrCat("v", round, ".", i);
          batch.Put(handles[s], PartitionId(p), k, v);
          next.data[{s, p}][k] = v;
        } else if (op < 8) {
          const std::string k = random_key();
          batch.Delete(handles[s], PartitionId(p), k);
          next.data[{s, p}].erase(k);
        } else if (op < 9) {
          const int64_t n = static_cast<int64_t>(rng()) - (int64_t{1} << 31);
          batch.SetEntryCount(handles[s], PartitionId(p), n);
          next.counts[{s, p}] = n;
        } else {
          const std::string& t = topics[uniform(2)];
          const int64_t o = static_cast<int64_t>(rng()) << uniform(24);
          batch.SetOffset(t, PartitionId(p), Offset(o));
          next.offsets[{t, p}] = o;
        }
      }
      ASSERT_EQ(batch.Count(), static_cast<size_t>(ops));
      ASSERT_OK(engine_->Apply(batch));
      model = std::move(next);
    }
    if (round % 10 == 9 || round == kRounds - 1) {
      check(round);
      if (::testing::Test::HasFatalFailure()) return;
      Reopen(stores);
      handles = {H("s0"), H("s1")};
      check(round);
      if (::testing::Test::HasFatalFailure()) return;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Seeds, StoreEngineModelTest, ::testing::Values(1u, 2u, 3u, 20240601u));

}  // namespace
}  // namespace kiq::node
