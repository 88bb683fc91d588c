// A join on a field through CompiledTopology over a real StoreEngine: the stage that re-keys
// the stream by the join key, the joining stage that reads its repartition topic, and the
// group_by of the joined value after it.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/kafka/record.h"
#include "common/topology/partitioner.h"
#include "common/topology/value_codec.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "node/process/compiled_topology.h"
#include "node/store/staged_batch.h"
#include "node/store/store_engine.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;

constexpr int32_t kPartitions = 4;

constexpr char kTopology[] = R"pb(
  application_id: "app"
  sources { topic: "purchases" value_format: FORMAT_JSON }
  sources { topic: "customers" value_format: FORMAT_JSON }
  stores {
    name: "customers"
    source: "customers"
    table {}
  }
  stores {
    name: "per_customer"
    source: "purchases"
    sum { field: "p.amount" }
    join { table: "customers" source_as: "p" table_as: "c" by { field: "customer_id" } }
  }
  stores {
    name: "per_city"
    source: "purchases"
    count {}
    join { table: "customers" source_as: "p" table_as: "c" by { field: "customer_id" } }
    group_by { field: "c.city" }
  }
)pb";

class JoinFieldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "join_field_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr) << "mkdtemp " << tmpl;
    dir_ = tmpl;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(kTopology, &topology_));
    absl::StatusOr<std::unique_ptr<StoreEngine>> engine =
        StoreEngine::Open(dir_ + "/db", {"customers", "per_customer", "per_city"});
    ASSERT_OK(engine);
    engine_ = std::move(*engine);
    absl::StatusOr<std::unique_ptr<CompiledTopology>> compiled = CompiledTopology::Compile(
        topology_, *engine_, {{"purchases", kPartitions}, {"customers", kPartitions}});
    ASSERT_OK(compiled);
    topology_compiled_ = std::move(*compiled);
    batch_ = std::make_unique<StagedBatch>(*engine_);
  }

  void TearDown() override {
    batch_.reset();
    topology_compiled_.reset();
    engine_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  int IndexOf(absl::string_view name) const {
    const std::vector<CompiledStore>& stores = topology_compiled_->stores();
    for (size_t i = 0; i < stores.size(); ++i) {
      if (stores[i].info.name == name) return static_cast<int>(i);
    }
    ADD_FAILURE() << "no stage " << name;
    return -1;
  }

  static PartitionId PartitionOf(absl::string_view key) {
    return PartitionId(PartitionForKey(PartitionerKind::kMurmur2, key, kPartitions));
  }

  // Processes one record of `topic` through the stage `name` (the key's murmur2 partition
  // unless given).
  absl::Status Apply(absl::string_view name, absl::string_view topic, absl::string_view key,
                     absl::string_view value, int64_t offset,
                     std::optional<PartitionId> partition = std::nullopt) {
    Record record;
    record.topic = topic;
    record.partition = partition.value_or(PartitionOf(key));
    record.offset = Offset(offset);
    record.key = key;
    record.value = value;
    const CompiledSource* source = topology_compiled_->FindSource(topic);
    if (source == nullptr) return absl::NotFoundError(absl::StrCat("no topic ", topic));
    if (std::optional<std::string> bad = topology_compiled_->DecodeError(record, *source)) {
      return absl::InvalidArgumentError(*bad);
    }
    return topology_compiled_->Process(record, IndexOf(name), *batch_);
  }

  // The forwarded records of the batch, then clears them (with everything staged).
  std::vector<ForwardedRecord> TakeForwards() {
    std::vector<ForwardedRecord> out = batch_->forwards();
    EXPECT_OK(batch_->Commit(nullptr));
    return out;
  }

  std::optional<int64_t> StoredInt(absl::string_view store, absl::string_view key,
                                   PartitionId p) {
    const CompiledStore* s = topology_compiled_->FindStore(store);
    absl::StatusOr<std::optional<std::string>> v = engine_->Get(s->handle, p, key);
    EXPECT_OK(v);
    if (!v.ok() || !*v) return std::nullopt;
    return DecodeInt64(**v);
  }

  std::string dir_;
  kiq::v1::Topology topology_;
  std::unique_ptr<StoreEngine> engine_;
  std::unique_ptr<CompiledTopology> topology_compiled_;
  std::unique_ptr<StagedBatch> batch_;
};

TEST_F(JoinFieldTest, ReKeysByTheJoinFieldThenJoinsThenGroupsTheJoinedValue) {
  ASSERT_OK(Apply("customers", "customers", "c1", R"({"city": "Paris"})", 0));
  ASSERT_OK(Apply("customers", "customers", "c2", R"({"city": "Lyon"})", 1));
  ASSERT_OK(batch_->Commit(nullptr));

  // Purchases keyed by purchase id, in whatever partition that key maps to.
  const std::vector<std::pair<std::string, std::string>> purchases = {
      {"p1", R"({"customer_id": "c1", "amount": 5})"},
      {"p2", R"({"customer_id": "c2", "amount": 7})"},
      {"p3", R"({"customer_id": "c1", "amount": 1})"},
      {"p4", R"({"customer_id": "nobody", "amount": 2})"},  // a left-join miss
      {"p5", R"({"amount": 3})"},                           // no join key: dropped, counted
      {"p6", R"({"customer_id": null, "amount": 3})"},      // null join key: the same
  };
  const int rekey = IndexOf("per_city#join-repartition");
  for (size_t i = 0; i < purchases.size(); ++i) {
    ASSERT_OK(Apply("per_city#join-repartition", "purchases", purchases[i].first,
                    purchases[i].second, static_cast<int64_t>(10 + i)));
  }
  EXPECT_EQ(topology_compiled_->TakeNullKeyRecords(rekey), 2);
  EXPECT_EQ(topology_compiled_->TakeNullKeyRecords(rekey), 0);
  const std::vector<ForwardedRecord> rekeyed = TakeForwards();
  std::vector<std::string> keys;
  for (const ForwardedRecord& f : rekeyed) {
    keys.push_back(f.key);
    EXPECT_EQ(f.topic, "app-per_city-join-repartition");
    // The partition of the table's key, the value unjoined, the upstream record named.
    EXPECT_EQ(f.partition, PartitionOf(f.key));
    EXPECT_EQ(f.upstream_partition, PartitionOf(purchases[f.upstream_offset.value() - 10].first));
    EXPECT_EQ(f.value, purchases[f.upstream_offset.value() - 10].second);
  }
  EXPECT_THAT(keys, ElementsAre("c1", "c2", "c1", "nobody"));

  // The joining stage reads the join repartition topic: it joins and re-keys by c.city; the
  // miss has a null city, so it is dropped and counted by the group_by.
  const int group = IndexOf("per_city#repartition");
  for (size_t i = 0; i < rekeyed.size(); ++i) {
    ASSERT_OK(Apply("per_city#repartition", rekeyed[i].topic, rekeyed[i].key, rekeyed[i].value,
                    static_cast<int64_t>(i), rekeyed[i].partition));
  }
  EXPECT_EQ(topology_compiled_->TakeNullKeyRecords(group), 1);
  std::vector<std::string> grouped;
  for (const ForwardedRecord& f : TakeForwards()) {
    EXPECT_EQ(f.topic, "app-per_city-repartition");
    EXPECT_EQ(f.partition, PartitionOf(f.key));
    grouped.push_back(absl::StrCat(f.key, " ", f.value));
  }
  EXPECT_THAT(grouped,
              ElementsAre(R"(Paris {"p":{"customer_id": "c1", "amount": 5},"c":{"city": "Paris"}})",
                          R"(Lyon {"p":{"customer_id": "c2", "amount": 7},"c":{"city": "Lyon"}})",
                          R"(Paris {"p":{"customer_id": "c1", "amount": 1},"c":{"city": "Paris"}})"));
}

TEST_F(JoinFieldTest, WithoutGroupByTheStoreJoinsItsRepartitionTopicAndIsKeyedByTheJoinKey) {
  ASSERT_OK(Apply("customers", "customers", "c1", R"({"city": "Paris"})", 0));
  ASSERT_OK(batch_->Commit(nullptr));
  ASSERT_OK(Apply("per_customer#join-repartition", "purchases", "p1",
                  R"({"customer_id": "c1", "amount": 5})", 0));
  ASSERT_OK(Apply("per_customer#join-repartition", "purchases", "p2",
                  R"({"customer_id": "c1", "amount": 4})", 1));
  ASSERT_OK(Apply("per_customer#join-repartition", "purchases", "p3",
                  R"({"customer_id": "zed", "amount": 2})", 2));
  // A join key that is an object is a bad record (dead-lettered by the ingestor).
  EXPECT_THAT(Apply("per_customer#join-repartition", "purchases", "p4",
                    R"({"customer_id": {"id": 1}, "amount": 2})", 3),
              ::kiq::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                       "field customer_id cannot be a key: an object"));
  const std::vector<ForwardedRecord> rekeyed = TakeForwards();
  ASSERT_EQ(rekeyed.size(), 3u);
  for (size_t i = 0; i < rekeyed.size(); ++i) {
    EXPECT_EQ(rekeyed[i].topic, "app-per_customer-join-repartition");
    ASSERT_OK(Apply("per_customer", rekeyed[i].topic, rekeyed[i].key, rekeyed[i].value,
                    static_cast<int64_t>(i), rekeyed[i].partition));
  }
  ASSERT_OK(batch_->Commit(nullptr));
  EXPECT_THAT(StoredInt("per_customer", "c1", PartitionOf("c1")), Optional(9));
  // A miss is still summed (left join: the table side is null, the stream side is there).
  EXPECT_THAT(StoredInt("per_customer", "zed", PartitionOf("zed")), Optional(2));
  EXPECT_EQ(StoredInt("per_customer", "p1", PartitionOf("p1")), std::nullopt);
}

}  // namespace
}  // namespace kiq::node
