#include "node/store/staged_batch.h"

#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/kafka/record.h"
#include "common/topology/value_codec.h"
#include "common/types.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kiq/v1/topology.pb.h"
#include "node/process/processor.h"
#include "node/store/store_engine.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using ::kiq::testing::IsOkAndHolds;
using ::kiq::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::Eq;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::Pointee;

using Opt = std::optional<std::string>;
// (store name, partition, key, old value, new value): a Change that prints well and compares.
using ChangeRow = std::tuple<std::string, int32_t, std::string, Opt, Opt>;

class StagedBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "staged_batch_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
    absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
        StoreEngine::Open(dir_ + "/db", {"table", "counts"});
    ASSERT_OK(engine);
    engine_ = std::move(*engine);
    absl::StatusOr<StoreHandle> table = engine_->Handle("table");
    ASSERT_OK(table);
    table_ = *table;
    absl::StatusOr<StoreHandle> counts = engine_->Handle("counts");
    ASSERT_OK(counts);
    counts_ = *counts;
  }

  void TearDown() override {
    engine_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Commits `batch` and returns its changes sorted by (store, partition, key).
  std::vector<ChangeRow> Commit(StagedBatch& batch) {
    std::vector<Change> changes;
    absl::Status s = batch.Commit(&changes);
    EXPECT_OK(s);
    std::vector<ChangeRow> rows;
    for (const Change& c : changes) {
      rows.emplace_back(engine_->StoreName(c.store), c.partition.value(), c.key, c.old_value,
                        c.new_value);
    }
    std::sort(rows.begin(), rows.end());
    return rows;
  }

  // Writes `key` = `value` in `store` partition `p` through a committed batch of its own.
  void Seed(StoreHandle store, int32_t p, absl::string_view key, absl::string_view value) {
    StagedBatch batch(*engine_);
    ASSERT_OK(batch.Write(store, PartitionId(p), key, std::string(value)));
    ASSERT_OK(batch.Commit(nullptr));
  }

  absl::StatusOr<std::optional<std::string>> Stored(StoreHandle store, int32_t p,
                                                    absl::string_view key) {
    return engine_->Get(store, PartitionId(p), key);
  }

  int64_t Count(StoreHandle store, int32_t p) {
    absl::StatusOr<int64_t> n = engine_->EntryCount(store, PartitionId(p));
    EXPECT_OK(n);
    return n.ok() ? *n : -1;
  }

  size_t ScannedSize(StoreHandle store, int32_t p) {
    absl::StatusOr<std::vector<router::KeyValue>> kvs =
        engine_->Scan(store, PartitionId(p), router::KeyRange{}, std::nullopt, 1000000);
    EXPECT_OK(kvs);
    return kvs.ok() ? kvs->size() : 0;
  }

  std::string dir_;
  std::unique_ptr<StoreEngine> engine_;
  StoreHandle table_;
  StoreHandle counts_;
};

TEST_F(StagedBatchTest, TrackedWritesAreReportedOneByOneInOrderWithTheirSource) {
  Seed(table_, 0, "k", "v0");
  StagedBatch batch(*engine_);
  batch.TrackWrites(true);
  batch.SetSource("src", Offset(10));
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::string("v1")));
  batch.SetSource("src", Offset(11));
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::string("v1")));  // no change
  batch.SetSource("src", Offset(12));
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::nullopt));
  std::vector<Change> changes;
  ASSERT_OK(batch.Commit(&changes));
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].old_value, Opt("v0"));
  EXPECT_EQ(changes[0].new_value, Opt("v1"));
  EXPECT_EQ(changes[0].topic, "src");
  EXPECT_EQ(changes[0].offset, 10);
  EXPECT_EQ(changes[1].old_value, Opt("v1"));
  EXPECT_EQ(changes[1].new_value, std::nullopt);
  EXPECT_EQ(changes[1].offset, 12);
  EXPECT_THAT(Stored(table_, 0, "k"), IsOkAndHolds(Eq(std::nullopt)));
}

TEST_F(StagedBatchTest, UntrackedWritesFoldToOneChangePerKeyWithTheLastSource) {
  StagedBatch batch(*engine_);
  batch.SetSource("src", Offset(3));
  ASSERT_OK(batch.Write(table_, PartitionId(1), "k", std::string("a")));
  batch.SetSource("src", Offset(4));
  ASSERT_OK(batch.Write(table_, PartitionId(1), "k", std::string("b")));
  std::vector<Change> changes;
  ASSERT_OK(batch.Commit(&changes));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].old_value, std::nullopt);
  EXPECT_EQ(changes[0].new_value, Opt("b"));
  EXPECT_EQ(changes[0].offset, 4);
}

TEST_F(StagedBatchTest, NewBatchIsEmpty) {
  StagedBatch batch(*engine_);
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(batch.records(), 0u);
  EXPECT_THAT(batch.offsets(), IsEmpty());
}

TEST_F(StagedBatchTest, ManyUpdatesToOneKeyStoreOneValue) {
  StagedBatch batch(*engine_);
  for (int i = 0; i < 100; ++i) {
    ASSERT_OK(batch.Write(table_, PartitionId(0), "k", absl::StrCat("v", i)));
  }
  EXPECT_THAT(Commit(batch), ElementsAre(ChangeRow("table", 0, "k", std::nullopt, "v99")));
  EXPECT_THAT(Stored(table_, 0, "k"), IsOkAndHolds(Optional(std::string("v99"))));
  EXPECT_EQ(ScannedSize(table_, 0), 1u);
  EXPECT_EQ(Count(table_, 0), 1);
}

TEST_F(StagedBatchTest, ReadSeesStagedValueElseStoredValue) {
  Seed(table_, 0, "stored", "s");
  StagedBatch batch(*engine_);
  EXPECT_THAT(batch.Read(table_, PartitionId(0), "stored"),
              IsOkAndHolds(Pointee(Optional(std::string("s")))));
  EXPECT_THAT(batch.Read(table_, PartitionId(0), "missing"),
              IsOkAndHolds(Pointee(Eq(std::nullopt))));
  ASSERT_OK(batch.Write(table_, PartitionId(0), "missing", std::string("staged")));
  ASSERT_OK(batch.Write(table_, PartitionId(0), "stored", std::nullopt));
  EXPECT_THAT(batch.Read(table_, PartitionId(0), "missing"),
              IsOkAndHolds(Pointee(Optional(std::string("staged")))));
  EXPECT_THAT(batch.Read(table_, PartitionId(0), "stored"),
              IsOkAndHolds(Pointee(Eq(std::nullopt))));
  // The same key in another partition is another slot.
  EXPECT_THAT(batch.Read(table_, PartitionId(1), "missing"),
              IsOkAndHolds(Pointee(Eq(std::nullopt))));
}

TEST_F(StagedBatchTest, NothingIsStoredBeforeCommit) {
  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::string("v")));
  batch.SetOffset("orders", PartitionId(0), Offset(5));
  EXPECT_FALSE(batch.empty());
  EXPECT_THAT(Stored(table_, 0, "k"), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_EQ(Count(table_, 0), 0);
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(0)), IsOkAndHolds(Eq(std::nullopt)));
}

TEST_F(StagedBatchTest, EntryCountsFollowInsertsOverwritesAndDeletes) {
  Seed(table_, 0, "a", "a0");
  Seed(table_, 0, "b", "b0");
  Seed(table_, 0, "c", "c0");
  ASSERT_EQ(Count(table_, 0), 3);

  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Write(table_, PartitionId(0), "a", std::string("a1")));  // overwrite: +0
  ASSERT_OK(batch.Write(table_, PartitionId(0), "b", std::nullopt));       // delete: -1
  ASSERT_OK(batch.Write(table_, PartitionId(0), "d", std::string("d1")));  // insert: +1
  ASSERT_OK(batch.Write(table_, PartitionId(0), "e", std::string("e1")));  // insert then
  ASSERT_OK(batch.Write(table_, PartitionId(0), "e", std::nullopt));       //   delete: +0
  ASSERT_OK(batch.Write(table_, PartitionId(0), "z", std::nullopt));       // delete absent: +0
  ASSERT_OK(batch.Write(table_, PartitionId(0), "c", std::nullopt));       // delete then
  ASSERT_OK(batch.Write(table_, PartitionId(0), "c", std::string("c1")));  //   re-insert: +0
  ASSERT_OK(batch.Write(table_, PartitionId(0), "f", std::string("f1")));  // insert: +1
  EXPECT_THAT(Commit(batch), ElementsAre(ChangeRow("table", 0, "a", "a0", "a1"),
                                         ChangeRow("table", 0, "b", "b0", std::nullopt),
                                         ChangeRow("table", 0, "c", "c0", "c1"),
                                         ChangeRow("table", 0, "d", std::nullopt, "d1"),
                                         ChangeRow("table", 0, "f", std::nullopt, "f1")));
  EXPECT_EQ(Count(table_, 0), 4);
  EXPECT_EQ(ScannedSize(table_, 0), 4u);
  EXPECT_THAT(Stored(table_, 0, "b"), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(Stored(table_, 0, "e"), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(Stored(table_, 0, "c"), IsOkAndHolds(Optional(std::string("c1"))));
}

TEST_F(StagedBatchTest, EntryCountsAreKeptPerStoreAndPartition) {
  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Write(table_, PartitionId(0), "a", std::string("1")));
  ASSERT_OK(batch.Write(table_, PartitionId(0), "b", std::string("1")));
  ASSERT_OK(batch.Write(table_, PartitionId(1), "a", std::string("1")));
  ASSERT_OK(batch.Write(counts_, PartitionId(0), "a", std::string("1")));
  ASSERT_OK(batch.Commit(nullptr));
  EXPECT_EQ(Count(table_, 0), 2);
  EXPECT_EQ(Count(table_, 1), 1);
  EXPECT_EQ(Count(counts_, 0), 1);
  EXPECT_EQ(Count(counts_, 1), 0);

  StagedBatch second(*engine_);
  ASSERT_OK(second.Write(table_, PartitionId(0), "a", std::nullopt));
  ASSERT_OK(second.Write(table_, PartitionId(1), "c", std::string("1")));
  ASSERT_OK(second.Commit(nullptr));
  EXPECT_EQ(Count(table_, 0), 1);
  EXPECT_EQ(Count(table_, 1), 2);
  EXPECT_EQ(Count(counts_, 0), 1);
}

TEST_F(StagedBatchTest, RewritingTheStoredValueIsNoChange) {
  Seed(table_, 0, "k", "same");
  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::string("other")));
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::string("same")));
  ASSERT_OK(batch.Write(table_, PartitionId(0), "never", std::nullopt));
  EXPECT_THAT(Commit(batch), IsEmpty());
  EXPECT_EQ(Count(table_, 0), 1);
  EXPECT_THAT(Stored(table_, 0, "k"), IsOkAndHolds(Optional(std::string("same"))));
}

TEST_F(StagedBatchTest, ReadsAloneProduceNoChange) {
  Seed(table_, 0, "k", "v");
  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Read(table_, PartitionId(0), "k"));
  ASSERT_OK(batch.Read(table_, PartitionId(0), "absent"));
  EXPECT_THAT(Commit(batch), IsEmpty());
  EXPECT_EQ(Count(table_, 0), 1);
  EXPECT_THAT(Stored(table_, 0, "absent"), IsOkAndHolds(Eq(std::nullopt)));
}

TEST_F(StagedBatchTest, CommitReportsBinaryKeysAndEmptyValues) {
  const std::string key("\0\xff", 2);
  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Write(table_, PartitionId(7), key, std::string()));
  ASSERT_OK(batch.Write(table_, PartitionId(7), "", std::string("empty key")));
  EXPECT_THAT(Commit(batch), ElementsAre(ChangeRow("table", 7, "", std::nullopt, "empty key"),
                                         ChangeRow("table", 7, key, std::nullopt, "")));
  EXPECT_THAT(Stored(table_, 7, key), IsOkAndHolds(Optional(std::string())));
  EXPECT_EQ(Count(table_, 7), 2);
}

TEST_F(StagedBatchTest, OffsetsAreCommittedWithTheState) {
  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Write(table_, PartitionId(2), "k", std::string("v")));
  batch.SetOffset("orders", PartitionId(2), Offset(10));
  batch.SetOffset("orders", PartitionId(2), Offset(11));  // the latest wins
  batch.SetOffset("orders", PartitionId(3), Offset(4));
  EXPECT_EQ(batch.offsets().size(), 2u);
  ASSERT_OK(batch.Commit(nullptr));
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(2)), IsOkAndHolds(Optional(Offset(11))));
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(3)), IsOkAndHolds(Optional(Offset(4))));
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(1)), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(Stored(table_, 2, "k"), IsOkAndHolds(Optional(std::string("v"))));
}

TEST_F(StagedBatchTest, OffsetOnlyBatchIsNotEmptyAndCommitsTheOffset) {
  StagedBatch batch(*engine_);
  batch.SetOffset("orders", PartitionId(0), Offset(7));
  EXPECT_FALSE(batch.empty());
  EXPECT_THAT(Commit(batch), IsEmpty());
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(0)), IsOkAndHolds(Optional(Offset(7))));
}

TEST_F(StagedBatchTest, CommitClearsTheBatch) {
  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::string("v")));
  batch.SetOffset("orders", PartitionId(0), Offset(1));
  batch.CountRecord();
  batch.CountRecord();
  EXPECT_EQ(batch.records(), 2u);
  ASSERT_OK(batch.Commit(nullptr));
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(batch.records(), 0u);
  EXPECT_THAT(batch.offsets(), IsEmpty());
  // A second commit replays nothing: the count is not adjusted twice.
  EXPECT_THAT(Commit(batch), IsEmpty());
  EXPECT_EQ(Count(table_, 0), 1);
}

TEST_F(StagedBatchTest, BatchIsReusableAfterCommitAndSeesCommittedState) {
  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::string("v1")));
  ASSERT_OK(batch.Commit(nullptr));
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::string("v2")));
  EXPECT_THAT(Commit(batch), ElementsAre(ChangeRow("table", 0, "k", "v1", "v2")));
  EXPECT_EQ(Count(table_, 0), 1);
}

TEST_F(StagedBatchTest, ClearDiscardsStagedWritesAndOffsets) {
  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::string("v")));
  batch.SetOffset("orders", PartitionId(0), Offset(9));
  batch.CountRecord();
  batch.Clear();
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(batch.records(), 0u);
  EXPECT_THAT(Commit(batch), IsEmpty());
  EXPECT_THAT(Stored(table_, 0, "k"), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(0)), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_EQ(Count(table_, 0), 0);
}

TEST_F(StagedBatchTest, CommitWithoutChangeListStillApplies) {
  StagedBatch batch(*engine_);
  ASSERT_OK(batch.Write(table_, PartitionId(0), "k", std::string("v")));
  ASSERT_OK(batch.Commit(nullptr));
  EXPECT_THAT(Stored(table_, 0, "k"), IsOkAndHolds(Optional(std::string("v"))));
}

// --- Processors over a StagedBatch ---

kiq::v1::Store TableSpec(const std::string& name) {
  kiq::v1::Store store;
  store.set_name(name);
  store.set_source("orders");
  store.mutable_table();
  return store;
}

kiq::v1::Store CountSpec(const std::string& name) {
  kiq::v1::Store store;
  store.set_name(name);
  store.set_source("orders");
  store.mutable_count();
  return store;
}

Record MakeRecord(int32_t p, std::optional<absl::string_view> key,
                  std::optional<absl::string_view> value, int64_t offset = 0) {
  Record r;
  r.topic = "orders";
  r.partition = PartitionId(p);
  r.offset = Offset(offset);
  r.key = key;
  r.value = value;
  return r;
}

class ProcessorTest : public StagedBatchTest {
 protected:
  std::unique_ptr<Processor> Make(const kiq::v1::Store& spec, StoreHandle handle,
                                  kiq::v1::Format value_format = kiq::v1::FORMAT_STRING) {
    absl::StatusOr<std::unique_ptr<Processor>> p = MakeProcessor(spec, value_format, handle);
    EXPECT_OK(p);
    return p.ok() ? std::move(*p) : nullptr;
  }

  std::optional<int64_t> StoredCount(int32_t p, absl::string_view key) {
    absl::StatusOr<std::optional<std::string>> v = engine_->Get(counts_, PartitionId(p), key);
    EXPECT_OK(v);
    if (!v.ok() || !v->has_value()) return std::nullopt;
    std::optional<int64_t> n = DecodeInt64(**v);
    EXPECT_TRUE(n.has_value()) << "count is not 8 bytes";
    return n;
  }
};

TEST_F(ProcessorTest, StoreWithoutKindIsInvalidArgumentNamingIt) {
  kiq::v1::Store spec;
  spec.set_name("mystery");
  EXPECT_THAT(MakeProcessor(spec, kiq::v1::FORMAT_STRING, table_),
              StatusIs(absl::StatusCode::kInvalidArgument, "mystery"));
}

TEST_F(ProcessorTest, KindNamesAndValueKinds) {
  kiq::v1::Source json;
  json.set_value_format(kiq::v1::FORMAT_JSON);
  kiq::v1::Source bytes;
  bytes.set_value_format(kiq::v1::FORMAT_BYTES);
  kiq::v1::Source unspecified;
  EXPECT_EQ(StoreKindName(TableSpec("t")), "table");
  EXPECT_EQ(StoreKindName(CountSpec("c")), "count");
  EXPECT_EQ(StoreKindName(kiq::v1::Store()), "unknown");
  EXPECT_EQ(ValueKindOf(TableSpec("t"), json), ValueKind::kJson);
  EXPECT_EQ(ValueKindOf(TableSpec("t"), bytes), ValueKind::kBytes);
  EXPECT_EQ(ValueKindOf(TableSpec("t"), unspecified), ValueKind::kString);
  // A count is a number whatever its source's values are.
  EXPECT_EQ(ValueKindOf(CountSpec("c"), json), ValueKind::kInt64);
}

TEST_F(ProcessorTest, TableKeepsLatestValueAndNullValueDeletes) {
  std::unique_ptr<Processor> table = Make(TableSpec("table"), table_);
  ASSERT_NE(table, nullptr);
  StagedBatch batch(*engine_);
  ASSERT_OK(table->Process(MakeRecord(0, "a", "1"), batch));
  ASSERT_OK(table->Process(MakeRecord(0, "a", "2"), batch));
  ASSERT_OK(table->Process(MakeRecord(0, "b", "1"), batch));
  ASSERT_OK(table->Process(MakeRecord(0, "", ""), batch));  // empty key and value are values
  ASSERT_OK(batch.Commit(nullptr));
  EXPECT_THAT(Stored(table_, 0, "a"), IsOkAndHolds(Optional(std::string("2"))));
  EXPECT_THAT(Stored(table_, 0, ""), IsOkAndHolds(Optional(std::string())));
  EXPECT_EQ(Count(table_, 0), 3);

  ASSERT_OK(table->Process(MakeRecord(0, "b", std::nullopt), batch));  // a tombstone
  EXPECT_THAT(Commit(batch), ElementsAre(ChangeRow("table", 0, "b", "1", std::nullopt)));
  EXPECT_THAT(Stored(table_, 0, "b"), IsOkAndHolds(Eq(std::nullopt)));
  EXPECT_EQ(Count(table_, 0), 2);
}

TEST_F(ProcessorTest, TableRejectsNullKeyAndBatchStaysUsable) {
  std::unique_ptr<Processor> table = Make(TableSpec("table"), table_);
  ASSERT_NE(table, nullptr);
  StagedBatch batch(*engine_);
  ASSERT_OK(table->Process(MakeRecord(0, "a", "1"), batch));
  EXPECT_THAT(table->Process(MakeRecord(0, std::nullopt, "x"), batch),
              StatusIs(absl::StatusCode::kInvalidArgument, "null key"));
  ASSERT_OK(table->Process(MakeRecord(0, "b", "2"), batch));
  EXPECT_THAT(Commit(batch), ElementsAre(ChangeRow("table", 0, "a", std::nullopt, "1"),
                                         ChangeRow("table", 0, "b", std::nullopt, "2")));
  EXPECT_EQ(Count(table_, 0), 2);
}

TEST_F(ProcessorTest, CountCountsPerKeyAcrossBatches) {
  std::unique_ptr<Processor> count = Make(CountSpec("counts"), counts_);
  ASSERT_NE(count, nullptr);
  StagedBatch batch(*engine_);
  for (const char* key : {"a", "b", "a", "a"}) {
    ASSERT_OK(count->Process(MakeRecord(0, key, "payload"), batch));
  }
  EXPECT_THAT(Commit(batch),
              ElementsAre(ChangeRow("counts", 0, "a", std::nullopt, EncodeInt64(3)),
                          ChangeRow("counts", 0, "b", std::nullopt, EncodeInt64(1))));
  EXPECT_EQ(StoredCount(0, "a"), 3);
  EXPECT_EQ(StoredCount(0, "b"), 1);
  EXPECT_EQ(Count(counts_, 0), 2);

  for (const char* key : {"b", "a", "c"}) {
    ASSERT_OK(count->Process(MakeRecord(0, key, ""), batch));  // an empty value still counts
  }
  EXPECT_THAT(Commit(batch),
              ElementsAre(ChangeRow("counts", 0, "a", EncodeInt64(3), EncodeInt64(4)),
                          ChangeRow("counts", 0, "b", EncodeInt64(1), EncodeInt64(2)),
                          ChangeRow("counts", 0, "c", std::nullopt, EncodeInt64(1))));
  EXPECT_EQ(StoredCount(0, "a"), 4);
  EXPECT_EQ(StoredCount(0, "b"), 2);
  EXPECT_EQ(StoredCount(0, "c"), 1);
  EXPECT_EQ(Count(counts_, 0), 3);
}

TEST_F(ProcessorTest, CountKeepsPartitionsApart) {
  std::unique_ptr<Processor> count = Make(CountSpec("counts"), counts_);
  ASSERT_NE(count, nullptr);
  StagedBatch batch(*engine_);
  ASSERT_OK(count->Process(MakeRecord(0, "k", "v"), batch));
  ASSERT_OK(count->Process(MakeRecord(1, "k", "v"), batch));
  ASSERT_OK(count->Process(MakeRecord(1, "k", "v"), batch));
  ASSERT_OK(batch.Commit(nullptr));
  EXPECT_EQ(StoredCount(0, "k"), 1);
  EXPECT_EQ(StoredCount(1, "k"), 2);
  EXPECT_EQ(Count(counts_, 0), 1);
  EXPECT_EQ(Count(counts_, 1), 1);
}

TEST_F(ProcessorTest, CountRejectsNullKeyAndNullValueAndBatchStaysUsable) {
  std::unique_ptr<Processor> count = Make(CountSpec("counts"), counts_);
  ASSERT_NE(count, nullptr);
  StagedBatch batch(*engine_);
  ASSERT_OK(count->Process(MakeRecord(0, "a", "v"), batch));
  EXPECT_THAT(count->Process(MakeRecord(0, std::nullopt, "v"), batch),
              StatusIs(absl::StatusCode::kInvalidArgument, "null key"));
  EXPECT_THAT(count->Process(MakeRecord(0, "a", std::nullopt), batch),
              StatusIs(absl::StatusCode::kInvalidArgument, "null value"));
  EXPECT_THAT(count->Process(MakeRecord(0, "fresh", std::nullopt), batch),
              StatusIs(absl::StatusCode::kInvalidArgument, "null value"));
  ASSERT_OK(count->Process(MakeRecord(0, "a", "v"), batch));
  batch.SetOffset("orders", PartitionId(0), Offset(5));
  EXPECT_THAT(Commit(batch),
              ElementsAre(ChangeRow("counts", 0, "a", std::nullopt, EncodeInt64(2))));
  EXPECT_EQ(StoredCount(0, "a"), 2);
  EXPECT_EQ(StoredCount(0, "fresh"), std::nullopt);
  EXPECT_EQ(Count(counts_, 0), 1);
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(0)), IsOkAndHolds(Optional(Offset(5))));
}

TEST_F(ProcessorTest, CountOverAValueThatIsNotEightBytesIsDataLoss) {
  // A table processor writing into the count store stands in for a corrupted entry.
  std::unique_ptr<Processor> table = Make(TableSpec("counts"), counts_);
  std::unique_ptr<Processor> count = Make(CountSpec("counts"), counts_);
  ASSERT_NE(table, nullptr);
  ASSERT_NE(count, nullptr);
  StagedBatch batch(*engine_);
  ASSERT_OK(table->Process(MakeRecord(4, "k", "abc"), batch));
  ASSERT_OK(batch.Commit(nullptr));
  EXPECT_THAT(count->Process(MakeRecord(4, "k", "v"), batch),
              StatusIs(absl::StatusCode::kDataLoss, "partition 4"));
}

TEST_F(StagedBatchTest, ReadsThroughAnUncommittedBaseThenCommitsOnTopOfIt) {
  Seed(table_, 0, "kept", "k0");
  Seed(table_, 0, "gone", "g0");
  Seed(table_, 0, "again", "a0");
  StagedBatch first(*engine_);
  ASSERT_OK(first.Write(table_, PartitionId(0), "kept", std::string("k1")));
  ASSERT_OK(first.Write(table_, PartitionId(0), "gone", std::nullopt));
  ASSERT_OK(first.Write(table_, PartitionId(0), "new", std::string("n1")));
  ASSERT_OK(first.Read(table_, PartitionId(0), "again"));  // a read-only slot

  StagedBatch second(*engine_);
  second.ReadThrough(&first);
  EXPECT_THAT(second.Read(table_, PartitionId(0), "kept"),
              IsOkAndHolds(Pointee(Optional(std::string("k1")))));
  EXPECT_THAT(second.Read(table_, PartitionId(0), "gone"), IsOkAndHolds(Pointee(Eq(std::nullopt))));
  EXPECT_THAT(second.Read(table_, PartitionId(0), "new"),
              IsOkAndHolds(Pointee(Optional(std::string("n1")))));
  EXPECT_THAT(second.Read(table_, PartitionId(0), "again"),
              IsOkAndHolds(Pointee(Optional(std::string("a0")))));
  // Another partition or store is not the base's key.
  EXPECT_THAT(second.Read(table_, PartitionId(1), "kept"), IsOkAndHolds(Pointee(Eq(std::nullopt))));
  ASSERT_OK(second.Write(table_, PartitionId(0), "kept", std::string("k2")));
  ASSERT_OK(second.Write(table_, PartitionId(0), "gone", std::string("g2")));   // re-inserted
  ASSERT_OK(second.Write(table_, PartitionId(0), "new", std::nullopt));         // deleted again
  ASSERT_OK(second.Write(table_, PartitionId(0), "again", std::string("a0")));  // no change
  // Nothing of either is stored before its commit.
  EXPECT_THAT(Stored(table_, 0, "kept"), IsOkAndHolds(Optional(std::string("k0"))));

  // The base commits first; the second's changes are relative to it, entry counts included.
  EXPECT_THAT(Commit(first), ElementsAre(ChangeRow("table", 0, "gone", "g0", std::nullopt),
                                         ChangeRow("table", 0, "kept", "k0", "k1"),
                                         ChangeRow("table", 0, "new", std::nullopt, "n1")));
  EXPECT_EQ(Count(table_, 0), 3);
  second.ReadThrough(nullptr);
  EXPECT_THAT(Commit(second), ElementsAre(ChangeRow("table", 0, "gone", std::nullopt, "g2"),
                                          ChangeRow("table", 0, "kept", "k1", "k2"),
                                          ChangeRow("table", 0, "new", "n1", std::nullopt)));
  EXPECT_EQ(Count(table_, 0), 3);
  EXPECT_EQ(ScannedSize(table_, 0), 3u);
  EXPECT_THAT(Stored(table_, 0, "kept"), IsOkAndHolds(Optional(std::string("k2"))));
  EXPECT_THAT(Stored(table_, 0, "gone"), IsOkAndHolds(Optional(std::string("g2"))));
  EXPECT_THAT(Stored(table_, 0, "new"), IsOkAndHolds(Eq(std::nullopt)));
}

TEST_F(StagedBatchTest, SwapExchangesWhatIsStaged) {
  StagedBatch staged(*engine_);
  ASSERT_OK(staged.Write(table_, PartitionId(0), "k", std::string("v")));
  staged.SetOffset("orders", PartitionId(0), Offset(7));
  staged.CountRecord();
  StagedBatch other(*engine_);
  other.Swap(staged);
  EXPECT_TRUE(staged.empty());
  EXPECT_EQ(staged.records(), 0u);
  EXPECT_FALSE(other.empty());
  EXPECT_EQ(other.records(), 1u);
  EXPECT_THAT(Commit(other), ElementsAre(ChangeRow("table", 0, "k", std::nullopt, "v")));
  EXPECT_THAT(engine_->ReadOffset("orders", PartitionId(0)), IsOkAndHolds(Optional(Offset(7))));
  EXPECT_THAT(Commit(staged), IsEmpty());
}

}  // namespace
}  // namespace kiq::node
