// Sum, min, max, latest and filters over a real StoreEngine, through MakeProcessor.
#include <stdlib.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <rapidjson/document.h>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/kafka/record.h"
#include "common/topology/json_value.h"
#include "common/topology/store_info.h"
#include "common/topology/value_codec.h"
#include "common/types.h"
#include "gmock/gmock.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"
#include "kiq/v1/topology.pb.h"
#include "node/process/processor.h"
#include "node/store/staged_batch.h"
#include "node/store/store_engine.h"
#include "tests/node/process/one_store_test.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using ::testing::Optional;

// A bad record: INVALID_ARGUMENT with exactly `message`.
MATCHER_P(IsBad, message, "") {
  const absl::Status& s = ::kiq::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == absl::StatusCode::kInvalidArgument && s.message() == message;
}

kiq::v1::Store StoreFromText(const std::string& text) {
  kiq::v1::Store store;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &store)) << text;
  store.set_name("agg");
  store.set_source("events");
  return store;
}

class AggregateProcessorTest : public OneStoreTest {
 protected:
  AggregateProcessorTest() : OneStoreTest("agg") {}

  // Builds the processor of a store given in text format (its kind and filter).
  void Make(const std::string& text, kiq::v1::Format format = kiq::v1::FORMAT_JSON) {
    absl::StatusOr<std::unique_ptr<Processor>> p =
        MakeProcessor(StoreFromText(text), format, handle_);
    ASSERT_OK(p);
    processor_ = std::move(*p);
  }

  // Processes one record (key "k" unless given) with a shared LazyJson half of the time, as
  // CompiledTopology does, so both paths are exercised.
  absl::Status Apply(std::optional<absl::string_view> value,
                     std::optional<absl::string_view> key = "k") {
    Record r;
    r.topic = "events";
    r.partition = PartitionId(0);
    r.offset = Offset(offset_++);
    r.key = key;
    r.value = value;
    LazyJson json;
    if (value && offset_ % 2 == 0) {
      json.Reset(*value);
      r.json = &json;
    }
    return processor_->Process(r, *batch_);
  }

  std::optional<std::string> Stored(absl::string_view key = "k") {
    EXPECT_OK(batch_->Commit(nullptr));
    absl::StatusOr<std::optional<std::string>> v = engine_->Get(handle_, PartitionId(0), key);
    EXPECT_OK(v);
    return v.ok() ? *v : std::nullopt;
  }
  std::optional<int64_t> StoredInt(absl::string_view key = "k") {
    std::optional<std::string> v = Stored(key);
    return v ? DecodeInt64(*v) : std::nullopt;
  }
  std::optional<double> StoredDouble(absl::string_view key = "k") {
    std::optional<std::string> v = Stored(key);
    return v ? DecodeDouble(*v) : std::nullopt;
  }

  int64_t offset_ = 0;
};

TEST_F(AggregateProcessorTest, SumInt64CastsStringsAndSkipsBadRecords) {
  Make(R"pb(sum { field: "points" })pb");
  ASSERT_OK(Apply(R"({"points": 17})"));
  ASSERT_OK(Apply(R"({"points": "25"})"));
  EXPECT_THAT(Apply(R"({"points": "abc"})"), IsBad("field points is not a number: \"abc\""));
  EXPECT_THAT(Apply(R"({"score": 1})"), IsBad("field points is missing"));
  EXPECT_THAT(Apply(std::nullopt), IsBad("null value"));
  EXPECT_THAT(Apply(R"({"points": 1})", std::nullopt), IsBad("null key"));
  ASSERT_OK(Apply(R"({"points": -2})"));
  ASSERT_OK(Apply(R"({"points": 5})", "other"));
  EXPECT_THAT(StoredInt(), Optional(40));
  EXPECT_THAT(StoredInt("other"), Optional(5));
}

// SQL's nulls: a field of a null (the missing side of a left join) is null; SUM, MIN and MAX
// skip nulls and a comparison with null matches nothing. A missing field stays a bad record.
TEST_F(AggregateProcessorTest, NullsAreSkippedByNumbersAndMatchNoFilter) {
  Make(R"pb(sum { field: "customer.points" })pb");
  ASSERT_OK(Apply(R"({"customer": {"points": 4}})"));
  ASSERT_OK(Apply(R"({"customer": null})"));
  ASSERT_OK(Apply(R"({"customer": {"points": null}})"));
  EXPECT_THAT(Apply(R"({"customer": {}})"), IsBad("field customer.points is missing"));
  EXPECT_THAT(Apply(R"({"customer": 3})"), IsBad("field customer.points is missing"));
  ASSERT_OK(Apply(R"({"customer": {"points": 6}})"));
  EXPECT_THAT(StoredInt(), Optional(10));

  processor_.reset();
  Make(R"pb(count {}
            filter { any { compare { field: "c.tier" op: OP_NE string_value: "gold" } } })pb");
  ASSERT_OK(Apply(R"({"c": {"tier": "silver"}})", "x"));  // counted
  ASSERT_OK(Apply(R"({"c": {"tier": "gold"}})", "x"));
  ASSERT_OK(Apply(R"({"c": null})", "x"));               // null != "gold" is unknown: no match
  ASSERT_OK(Apply(R"({"c": {"tier": null}})", "x"));
  EXPECT_THAT(StoredInt("x"), Optional(1));
}

// The first stage of a group_by: the key of each forwarded record from a field, several fields
// or a constant; null or missing keys are dropped and counted, not bad.
std::unique_ptr<Processor> GroupByStage(const std::string& text) {
  const kiq::v1::Store store = StoreFromText(text);
  return MakeRepartitionProcessor(store.group_by(), store.has_filter() ? &store.filter() : nullptr,
                                  kiq::v1::FORMAT_JSON, "r", 6, PartitionerKind::kMurmur2);
}

TEST_F(AggregateProcessorTest, GroupByForwardsUnderTheKeyAndDropsNullKeys) {
  auto forward_keys = [&](const std::string& text, const std::vector<std::string>& values) {
    processor_ = GroupByStage(text);
    batch_->Clear();
    for (const std::string& v : values) EXPECT_OK(Apply(v));
    std::vector<std::string> keys;
    for (const ForwardedRecord& f : batch_->forwards()) keys.push_back(f.key);
    return keys;
  };
  const std::vector<std::string> values = {
      R"({"c": {"name": "Ann", "age": 7}})", R"({"c": null})", R"({"c": {"name": null}})",
      R"({"x": 1})", R"({"c": {"name": true, "age": 2.5}})"};
  EXPECT_THAT(forward_keys(R"pb(count {} group_by { field: "c.name" })pb", values),
              ::testing::ElementsAre("Ann", "true"));
  EXPECT_EQ(processor_->TakeNullKeyRecords(), 3);
  EXPECT_EQ(processor_->TakeNullKeyRecords(), 0);
  EXPECT_THAT(forward_keys(R"pb(count {} group_by { fields: "c.name" fields: "c.age" })pb", values),
              ::testing::ElementsAre("Ann|7", "true|2.5"));
  EXPECT_EQ(processor_->TakeNullKeyRecords(), 3);
  EXPECT_THAT(forward_keys(R"pb(count {}
                                group_by { fields: "c.age" fields: "c.name" separator: "/" })pb",
                           values),
              ::testing::ElementsAre("7/Ann", "2.5/true"));
  EXPECT_THAT(forward_keys(R"pb(count {} group_by { constant: "all" })pb", values),
              ::testing::ElementsAre("all", "all", "all", "all", "all"));
  EXPECT_EQ(processor_->TakeNullKeyRecords(), 0);
  // Behind a filter, the count still comes through.
  EXPECT_THAT(forward_keys(R"pb(count {} group_by { field: "c.name" }
                                filter { all { compare { field: "x" op: OP_NE number_value: 1 } } })pb",
                           {R"({"c": null, "x": 2})", R"({"c": {"name": "B"}, "x": 2})"}),
              ::testing::ElementsAre("B"));
  EXPECT_EQ(processor_->TakeNullKeyRecords(), 1);
  // An object is no key: a bad record.
  processor_ = GroupByStage(R"pb(count {} group_by { field: "c" })pb");
  EXPECT_THAT(Apply(R"({"c": {"name": "Ann"}})"), IsBad(R"(field c cannot be a key: an object)"));
}

TEST_F(AggregateProcessorTest, SumInt64OverflowIsABadRecordAndKeepsTheSum) {
  Make(R"pb(sum { field: "n" type: NUMBER_TYPE_INT64 })pb");
  ASSERT_OK(Apply(R"({"n": 9223372036854775806})"));
  ASSERT_OK(Apply(R"({"n": 1})"));
  EXPECT_THAT(Apply(R"({"n": 1})"),
              IsBad("sum overflows int64: 9223372036854775807 + 1 (field n)"));
  EXPECT_THAT(StoredInt(), Optional(std::numeric_limits<int64_t>::max()));
  ASSERT_OK(Apply(R"({"n": -7})"));
  EXPECT_THAT(StoredInt(), Optional(std::numeric_limits<int64_t>::max() - 7));
}

TEST_F(AggregateProcessorTest, SumDouble) {
  Make(R"pb(sum { field: "a.b" type: NUMBER_TYPE_DOUBLE })pb");
  ASSERT_OK(Apply(R"({"a": {"b": 0.1}})"));
  ASSERT_OK(Apply(R"({"a": {"b": "0.2"}})"));
  ASSERT_OK(Apply(R"({"a": {"b": 3}})"));
  EXPECT_THAT(StoredDouble(), Optional(0.1 + 0.2 + 3));
  ASSERT_OK(Apply(R"({"a": {"b": 1.7e308}})"));
  EXPECT_THAT(Apply(R"({"a": {"b": 1.7e308}})"),
              ::kiq::testing::StatusIs(absl::StatusCode::kInvalidArgument, "sum overflows double"));
}

TEST_F(AggregateProcessorTest, SumOfWholeStringValues) {
  Make(R"pb(sum {})pb", kiq::v1::FORMAT_STRING);
  ASSERT_OK(Apply("17"));
  ASSERT_OK(Apply("-3"));
  EXPECT_THAT(Apply("17.5"), IsBad("the value is not an integer: \"17.5\""));
  EXPECT_THAT(StoredInt(), Optional(14));
}

TEST_F(AggregateProcessorTest, MinAndMaxKeepTheExtremes) {
  Make(R"pb(min { field: "x" })pb");
  for (const char* v : {R"({"x": 5})", R"({"x": "-2"})", R"({"x": 9})"}) ASSERT_OK(Apply(v));
  EXPECT_THAT(StoredInt(), Optional(-2));

  Make(R"pb(max { field: "x" type: NUMBER_TYPE_DOUBLE })pb");
  ASSERT_OK(Apply(R"({"x": 1.5})", "m"));
  ASSERT_OK(Apply(R"({"x": -4})", "m"));
  ASSERT_OK(Apply(R"({"x": 2.25})", "m"));
  ASSERT_OK(Apply(R"({"x": 2})", "m"));
  ASSERT_OK(Apply(R"({"x": null})", "m"));  // skipped, as SQL's MAX skips nulls
  EXPECT_THAT(Apply(R"({"x": "big"})", "m"), IsBad("field x is not a number: \"big\""));
  EXPECT_THAT(StoredDouble("m"), Optional(2.25));
}

TEST_F(AggregateProcessorTest, LatestOverwritesWithTheFieldsJsonText) {
  Make(R"pb(latest { field: "avatar" })pb");
  ASSERT_OK(Apply(R"({"player": "p", "avatar": "cat.png"})"));
  EXPECT_THAT(Stored(), Optional(std::string(R"("cat.png")")));
  ASSERT_OK(Apply(R"({"avatar": {"url": "dog.png", "size": [64, 64]}})"));
  EXPECT_THAT(Apply(R"({"player": "p"})"), IsBad("field avatar is missing"));
  EXPECT_THAT(Stored(), Optional(std::string(R"({"url":"dog.png","size":[64,64]})")));
  ASSERT_OK(Apply(R"({"avatar": null})"));
  EXPECT_THAT(Stored(), Optional(std::string("null")));
}

TEST_F(AggregateProcessorTest, FilterAllAndAnyBeforeACount) {
  // amount > 100 AND (country = "FR" OR vip = true)
  Make(R"pb(
    count {}
    filter {
      all { compare { field: "amount" op: OP_GT number_value: 100 } }
      all {
        any { compare { field: "country" op: OP_EQ string_value: "FR" } }
        any { compare { field: "vip" op: OP_EQ bool_value: true } }
      }
    })pb");
  ASSERT_OK(Apply(R"({"amount": 150, "country": "FR", "vip": false})"));   // counted
  ASSERT_OK(Apply(R"({"amount": "101", "country": "DE", "vip": true})"));  // counted (cast)
  ASSERT_OK(Apply(R"({"amount": 100, "country": "FR", "vip": true})"));    // not > 100
  ASSERT_OK(Apply(R"({"amount": 500, "country": "DE", "vip": false})"));   // neither
  // Short-circuit: a record that fails the first condition is not checked further.
  ASSERT_OK(Apply(R"({"amount": 1})"));
  EXPECT_THAT(Apply(R"({"country": "FR"})"), IsBad("filter: field amount is missing"));
  EXPECT_THAT(Apply(R"({"amount": 200, "country": 33, "vip": true})"),
              IsBad("filter: field country is not a string: 33"));
  EXPECT_THAT(Apply(R"({"amount": 200, "country": "DE", "vip": "yes"})"),
              IsBad("filter: field vip is not a bool: \"yes\""));
  EXPECT_THAT(StoredInt(), Optional(2));
}

TEST_F(AggregateProcessorTest, FilterOperatorsOnNumbersAndStrings) {
  struct Case {
    const char* op;
    int matches_below, matches_equal, matches_above;
  };
  const Case cases[] = {{"OP_EQ", 0, 1, 0}, {"OP_NE", 1, 0, 1}, {"OP_LT", 1, 0, 0},
                        {"OP_LE", 1, 1, 0}, {"OP_GT", 0, 0, 1}, {"OP_GE", 0, 1, 1}};
  int key = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.op);
    for (bool strings : {false, true}) {
      Make(absl::StrCat("count {} filter { compare { field: \"v\" op: ", c.op,
                        strings ? " string_value: \"m\" } }" : " number_value: 10 } }"));
      const std::string k = absl::StrCat(key++);
      static const char* const kStrings[] = {R"({"v": "a"})", R"({"v": "m"})", R"({"v": "z"})"};
      static const char* const kNumbers[] = {R"({"v": 9.5})", R"({"v": 10})", R"({"v": "11"})"};
      for (const char* v : strings ? kStrings : kNumbers) {
        ASSERT_OK(Apply(v, k));
      }
      const int expected = c.matches_below + c.matches_equal + c.matches_above;
      std::optional<int64_t> n = StoredInt(k);
      EXPECT_EQ(n.value_or(0), expected) << (strings ? "strings" : "numbers");
    }
  }
}

TEST_F(AggregateProcessorTest, FilterOnWholeStringValuesBeforeASum) {
  Make(R"pb(sum {}
            filter { compare { op: OP_GE number_value: 10 } })pb", kiq::v1::FORMAT_STRING);
  ASSERT_OK(Apply("5"));
  ASSERT_OK(Apply("10"));
  ASSERT_OK(Apply("32"));
  EXPECT_THAT(Apply("ten"), IsBad("filter: the value is not a number: \"ten\""));
  EXPECT_THAT(StoredInt(), Optional(42));
}

TEST_F(AggregateProcessorTest, FilteredTableDeletesKeysThatStopMatching) {
  Make(R"pb(table {}
            filter { compare { field: "status" op: OP_EQ string_value: "open" } })pb");
  ASSERT_OK(Apply(R"({"status": "open", "n": 1})"));
  ASSERT_OK(Apply(R"({"status": "closed"})", "never"));
  EXPECT_THAT(Stored(), Optional(std::string(R"({"status": "open", "n": 1})")));
  EXPECT_EQ(Stored("never"), std::nullopt);
  ASSERT_OK(Apply(R"({"status": "closed"})"));
  EXPECT_EQ(Stored(), std::nullopt);
  ASSERT_OK(Apply(R"({"status": "open", "n": 2})"));
  ASSERT_OK(Apply(std::nullopt));  // a tombstone still deletes
  EXPECT_EQ(Stored(), std::nullopt);
}

TEST_F(AggregateProcessorTest, KindNamesAndValueKinds) {
  kiq::v1::Source json;
  json.set_value_format(kiq::v1::FORMAT_JSON);
  EXPECT_EQ(StoreKindName(StoreFromText("sum {}")), "sum");
  EXPECT_EQ(StoreKindName(StoreFromText("min {}")), "min");
  EXPECT_EQ(StoreKindName(StoreFromText("max {}")), "max");
  EXPECT_EQ(StoreKindName(StoreFromText("latest { field: 'a' }")), "latest");
  EXPECT_EQ(ValueKindOf(StoreFromText("sum {}"), json), ValueKind::kInt64);
  EXPECT_EQ(ValueKindOf(StoreFromText("sum { type: NUMBER_TYPE_DOUBLE }"), json),
            ValueKind::kDouble);
  EXPECT_EQ(ValueKindOf(StoreFromText("min { type: NUMBER_TYPE_INT64 }"), json), ValueKind::kInt64);
  EXPECT_EQ(ValueKindOf(StoreFromText("max { type: NUMBER_TYPE_DOUBLE }"), json),
            ValueKind::kDouble);
  EXPECT_EQ(ValueKindOf(StoreFromText("latest { field: 'a' }"), json), ValueKind::kJson);
  EXPECT_EQ(StoreKindName(StoreFromText("aggregate { columns { name: 'n' count {} } }")),
            "aggregate");
  EXPECT_EQ(ValueKindOf(StoreFromText("aggregate { columns { name: 'n' count {} } }"), json),
            ValueKind::kRow);
}

// SELECT SUM(points) AS points, COUNT(*) AS plays, MAX(points) AS best, MIN(points) AS worst,
// LATEST_BY_OFFSET(avatar) AS avatar, AVG(points) AS mean, TOPK(points, 2) AS top2: one row
// per key, a JSON object; avg's sum and count are kept after the row, not shown.
constexpr char kRowStore[] = R"pb(
  aggregate {
    columns { name: "points" sum { field: "points" } }
    columns { name: "plays" count {} }
    columns { name: "best" max { field: "points" } }
    columns { name: "worst" min { field: "points" } }
    columns { name: "avatar" latest { field: "avatar" } }
    columns { name: "mean" avg { field: "points" } }
    columns { name: "top2" top_k { field: "points" k: 2 } }
  })pb";

TEST_F(AggregateProcessorTest, AggregateKeepsEveryColumnInOneRow) {
  Make(kRowStore);
  ASSERT_OK(Apply(R"({"points": 7, "avatar": "fox.png"})"));
  EXPECT_EQ(RowJson(*Stored()),
            R"({"points":7,"plays":1,"best":7,"worst":7,"avatar":"fox.png","mean":7.0,"top2":[7]})");
  ASSERT_OK(Apply(R"({"points": "10", "avatar": "owl.png"})"));
  ASSERT_OK(Apply(R"({"points": 1, "avatar": null})"));
  ASSERT_OK(Apply(R"({"points": 4, "avatar": "cat.png"})", "other"));
  EXPECT_EQ(RowJson(*Stored()),
            R"({"points":18,"plays":3,"best":10,"worst":1,"avatar":null,"mean":6.0,"top2":[10,7]})");
  EXPECT_EQ(RowJson(*Stored("other")),
            R"({"points":4,"plays":1,"best":4,"worst":4,"avatar":"cat.png","mean":4.0,"top2":[4]})");
  // The state after the row: [sum, count] of the avg column.
  const std::string stored = *Stored();
  EXPECT_EQ(stored.substr(RowJson(stored).size()), std::string("\0[[18.0,3]]", 11));
}

// A record bad for one column is bad for the row, named by the column; nothing changes.
TEST_F(AggregateProcessorTest, AggregateRecordBadForOneColumnChangesNoColumn) {
  Make(kRowStore);
  ASSERT_OK(Apply(R"({"points": 5, "avatar": "a"})"));
  const std::string before = *Stored();
  EXPECT_THAT(Apply(R"({"points": "lots", "avatar": "b"})"),
              IsBad("column points: field points is not a number: \"lots\""));
  EXPECT_THAT(Apply(R"({"points": 3})"), IsBad("column avatar: field avatar is missing"));
  EXPECT_THAT(Apply("points=3"), IsBad("value is not JSON"));
  EXPECT_THAT(Apply(std::nullopt), IsBad("null value"));
  EXPECT_EQ(*Stored(), before);
}

// Nulls as in SQL: SUM, MIN, MAX and AVG skip them (null until a first value), TOPK leaves
// them out, COUNT(*) counts the record, LATEST_BY_OFFSET keeps the null.
TEST_F(AggregateProcessorTest, AggregateColumnsSkipNullsAsSql) {
  Make(kRowStore);
  ASSERT_OK(Apply(R"({"points": null, "avatar": null})"));
  EXPECT_EQ(RowJson(*Stored()),
            R"({"points":null,"plays":1,"best":null,"worst":null,"avatar":null,"mean":null,"top2":[]})");
  ASSERT_OK(Apply(R"({"points": 3, "avatar": "x"})"));
  ASSERT_OK(Apply(R"({"points": null, "avatar": "y"})"));
  EXPECT_EQ(RowJson(*Stored()),
            R"({"points":3,"plays":3,"best":3,"worst":3,"avatar":"y","mean":3.0,"top2":[3]})");
}

TEST_F(AggregateProcessorTest, AggregateDoubleColumnsAndInt64Overflow) {
  Make(R"pb(aggregate {
              columns { name: "total" sum { field: "x" type: NUMBER_TYPE_DOUBLE } }
              columns { name: "n" sum { field: "n" } }
              columns { name: "low" top_k { field: "x" type: NUMBER_TYPE_DOUBLE k: 3 } }
            })pb");
  ASSERT_OK(Apply(R"({"x": 0.5, "n": 9223372036854775806})"));
  ASSERT_OK(Apply(R"({"x": 2.25, "n": 1})"));
  EXPECT_THAT(Apply(R"({"x": 1, "n": 1})"),
              IsBad("column n: sum overflows int64: 9223372036854775807 + 1 (field n)"));
  ASSERT_OK(Apply(R"({"x": 1.5, "n": 0})"));
  ASSERT_OK(Apply(R"({"x": -4, "n": 0})"));
  EXPECT_EQ(RowJson(*Stored()), R"({"total":0.25,"n":9223372036854775807,"low":[2.25,1.5,0.5]})");
}

// COUNT_DISTINCT(game) AS games next to COUNT(*) AS plays: exact up to 1,000 distinct values
// per key, then a HyperLogLog estimate within three standard errors of the truth computed
// here, through reopens of the store; the state is after the row, never in it.
TEST_F(AggregateProcessorTest, CountDistinctIsExactThenAnEstimateThroughReopens) {
  constexpr char kStore[] = R"pb(aggregate {
                                   columns {
                                     name: "games"
                                     count_distinct { field: "game" }
                                   }
                                   columns {
                                     name: "plays"
                                     count {}
                                   }
                                 })pb";
  Make(kStore);
  const auto reopen = [&] {
    ASSERT_OK(batch_->Commit(nullptr));
    Reopen();
    Make(kStore);
  };
  const double standard_error = 1.04 / std::sqrt(2048.0);
  std::set<std::string> truth;
  int64_t plays = 0;
  for (int i = 0; i < 50'000; ++i) {
    // Every other record repeats an earlier game; the values are strings and numbers.
    const int g = i % 2 == 0 ? i / 4 : i;
    const std::string game = g % 5 == 0 ? std::to_string(g) : absl::StrCat("\"g", g, "\"");
    truth.insert(game);
    ++plays;
    ASSERT_OK(Apply(absl::StrCat(R"({"game": )", game, "}")));
    if (i == 600 || i == 1'999 || i == 20'000) reopen();
    if (i % 500 == 0 || i == 49'999) {
      const std::string row(RowJson(*Stored()));
      rapidjson::Document doc;
      doc.Parse(row.data(), row.size());
      ASSERT_TRUE(doc.IsObject() && doc.MemberCount() == 2) << row;
      ASSERT_EQ(doc["plays"].GetInt64(), plays);
      const double n = static_cast<double>(truth.size());
      const double games = static_cast<double>(doc["games"].GetInt64());
      if (truth.size() <= 1000) {
        ASSERT_EQ(games, n) << "after " << i;
      } else {
        ASSERT_LE(std::abs(games - n), 3 * standard_error * n) << "after " << i << ": " << row;
      }
    }
  }
  EXPECT_GT(truth.size(), 30'000u);
}

TEST_F(AggregateProcessorTest, CountDistinctSkipsNullsAndTellsValuesApartByTheirJson) {
  Make(R"pb(aggregate {
              columns {
                name: "kinds"
                count_distinct { field: "v" }
              }
            })pb");
  ASSERT_OK(Apply(R"({"v": null})"));
  EXPECT_EQ(RowJson(*Stored()), R"({"kinds":0})");
  for (const char* v :
       {"1", "\"1\"", "1", "true", R"({"a": [1, 2]})", R"({"a":[1,2]})", "null", "[1]", "\"x\""}) {
    ASSERT_OK(Apply(absl::StrCat(R"({"v": )", v, "}")));
  }
  // 1, "1", true, {"a":[1,2]}, [1], "x".
  EXPECT_EQ(RowJson(*Stored()), R"({"kinds":6})");
  EXPECT_THAT(Apply(R"({"w": 1})"), IsBad("column kinds: field v is missing"));
  EXPECT_EQ(RowJson(*Stored()), R"({"kinds":6})");
  // Each key counts its own values.
  ASSERT_OK(Apply(R"({"v": 1})", "other"));
  EXPECT_EQ(RowJson(*Stored("other")), R"({"kinds":1})");
}

}  // namespace
}  // namespace kiq::node
