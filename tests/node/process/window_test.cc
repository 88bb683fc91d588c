// Window assignment, window key encoding, and the windowed processor over a real StoreEngine:
// grace, stream time in the store, retention sweep.
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/kafka/record.h"
#include "common/topology/store_info.h"
#include "common/topology/value_codec.h"
#include "common/topology/window.h"
#include "common/topology/window_key.h"
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

using ::testing::ElementsAre;
using ::testing::IsEmpty;

WindowParams Params(const std::string& text) {
  kiq::v1::WindowSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &spec)) << text;
  std::vector<std::pair<std::string, std::string>> problems;
  WindowParams w = ParseWindowSpec(spec, &problems);
  EXPECT_THAT(problems, IsEmpty()) << text;
  return w;
}

std::vector<std::pair<std::string, std::string>> Problems(const std::string& text) {
  kiq::v1::WindowSpec spec;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &spec)) << text;
  std::vector<std::pair<std::string, std::string>> problems;
  ParseWindowSpec(spec, &problems);
  return problems;
}

TEST(WindowSpecTest, DurationsAndDefaults) {
  WindowParams tumbling = Params("size: '30s'");
  EXPECT_EQ(tumbling.size_ms, 30'000);
  EXPECT_EQ(tumbling.advance_ms, 30'000);
  EXPECT_EQ(tumbling.grace_ms, kDefaultWindowGraceMs);
  EXPECT_EQ(tumbling.retention_ms, 30'000 + kDefaultWindowGraceMs);
  EXPECT_EQ(Params("size: '30s' grace: '0s'").grace_ms, 0);
  EXPECT_EQ(Params("size: '30s' grace: '0s'").retention_ms, kDefaultWindowRetentionMs);
  // An explicit retention without a grace leaves the grace what the window does not use.
  EXPECT_EQ(Params("size: '1m' retention: '1h'").grace_ms, 59 * 60'000);
  EXPECT_EQ(Params("size: '1m' retention: '1h'").retention_ms, 3600'000);
  EXPECT_EQ(Params("size: '1m' retention: '720h'").grace_ms, kDefaultWindowGraceMs);
  WindowParams hopping = Params("size: '1m' advance: '20s' grace: '500ms' retention: '2h'");
  EXPECT_EQ(hopping.size_ms, 60'000);
  EXPECT_EQ(hopping.advance_ms, 20'000);
  EXPECT_EQ(hopping.grace_ms, 500);
  EXPECT_EQ(hopping.retention_ms, 2 * 3600 * 1000);
  // The default retention is never below size + grace.
  EXPECT_EQ(Params("size: '30h' grace: '1h'").retention_ms, 31LL * 3600 * 1000);
}

TEST(WindowSpecTest, ProblemsNameTheirField) {
  using P = std::pair<std::string, std::string>;
  EXPECT_THAT(Problems(""), ElementsAre(P{"size", "required, e.g. \"30s\""}));
  EXPECT_THAT(Problems("size: 'soon'"),
              ElementsAre(P{"size",
                            "\"soon\" is not a duration (write e.g. \"500ms\", \"30s\", "
                            "\"5m\", \"1h\")"}));
  EXPECT_THAT(Problems("size: '0s'"), ElementsAre(P{"size", "must be > 0, got \"0s\""}));
  EXPECT_THAT(Problems("size: '10s' grace: '-1s'"),
              ElementsAre(P{"grace", "must be >= 0, got \"-1s\""}));
  EXPECT_THAT(Problems("size: '10s' advance: '0s'"),
              ElementsAre(P{"advance", "must be > 0, got \"0s\""}));
  EXPECT_THAT(Problems("size: '10s' advance: '11s'"),
              ElementsAre(P{"advance", "must be <= size (10s), got \"11s\""}));
  EXPECT_THAT(Problems("size: '1.5ms'"),
              ElementsAre(P{"size", "\"1.5ms\" is not a whole number of milliseconds"}));
  EXPECT_THAT(Problems("size: '10s' grace: '5s' retention: '14s'"),
              ElementsAre(P{"retention",
                            "must be >= size + grace (15000ms) so that every window is kept "
                            "until it closes, got \"14s\""}));
  EXPECT_THAT(Problems("size: '10s' grace: '5s' retention: '15s'"), IsEmpty());
}

TEST(WindowAssignmentTest, TumblingWindowsAtTheBoundaries) {
  const WindowParams w = Params("size: '10s'");
  EXPECT_THAT(WindowStartsFor(w, 0), ElementsAre(0));
  EXPECT_THAT(WindowStartsFor(w, 9'999), ElementsAre(0));
  EXPECT_THAT(WindowStartsFor(w, 10'000), ElementsAre(10'000));
  EXPECT_THAT(WindowStartsFor(w, 1'700'000'012'345), ElementsAre(1'700'000'010'000));
  EXPECT_THAT(WindowStartsFor(w, -1), IsEmpty());
  EXPECT_THAT(WindowStartsFor(w, std::numeric_limits<int64_t>::max()), IsEmpty());
}

TEST(WindowAssignmentTest, HoppingWindowsContainTheTimestamp) {
  const WindowParams w = Params("size: '10s' advance: '4s'");
  // Windows [s, s + 10s) for every s multiple of 4s: 12s is in [4,14), [8,18), [12,22).
  EXPECT_THAT(WindowStartsFor(w, 12'000), ElementsAre(4'000, 8'000, 12'000));
  EXPECT_THAT(WindowStartsFor(w, 13'999), ElementsAre(4'000, 8'000, 12'000));
  EXPECT_THAT(WindowStartsFor(w, 14'000), ElementsAre(8'000, 12'000));
  // No window starts before the epoch.
  EXPECT_THAT(WindowStartsFor(w, 3'000), ElementsAre(0));
  // Brute force against the definition.
  for (int64_t ts = 0; ts < 50'000; ts += 250) {
    std::vector<int64_t> want;
    for (int64_t s = 0; s <= ts; s += 4'000) {
      if (ts < s + 10'000) want.push_back(s);
    }
    EXPECT_EQ(WindowStartsFor(w, ts), want) << ts;
  }
}

TEST(WindowKeyTest, EncodingSortsByKeyThenStartAndRoundTrips) {
  const std::vector<int64_t> starts = {std::numeric_limits<int64_t>::min(), -5, -1, 0, 1, 1000,
                                       std::numeric_limits<int64_t>::max()};
  std::vector<std::string> keys;
  for (int64_t s : starts) {
    std::string k = WindowKey("user", s);
    ASSERT_EQ(k.size(), 4 + kWindowSuffixSize);
    std::optional<DecodedWindowKey> d = DecodeWindowKey(k);
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->user_key, "user");
    EXPECT_EQ(d->start_ms, s);
    keys.push_back(k);
  }
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  // Binary keys, and the reserved stream time key is never a window.
  std::string binary("\0\xff", 2);
  EXPECT_EQ(DecodeWindowKey(WindowKey(binary, 7))->user_key, binary);
  EXPECT_FALSE(DecodeWindowKey(kStreamTimeKey).has_value());
  EXPECT_EQ(DecodeWindowKey(WindowKey("", 3))->user_key, "");
}

class WindowedProcessorTest : public OneStoreTest {
 protected:
  WindowedProcessorTest() : OneStoreTest("w") {}

  void Make(const std::string& text) {
    kiq::v1::Store store;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &store)) << text;
    store.set_name("w");
    store.set_source("events");
    absl::StatusOr<std::unique_ptr<Processor>> p =
        MakeProcessor(store, kiq::v1::FORMAT_JSON, handle_, engine_.get());
    ASSERT_OK(p);
    processor_ = std::move(*p);
  }

  absl::Status Apply(int64_t ts, absl::string_view value = "{}", absl::string_view key = "k") {
    Record r;
    r.topic = "events";
    r.partition = PartitionId(0);
    r.offset = Offset(offset_++);
    r.timestamp_ms = ts;
    r.key = key;
    r.value = value;
    absl::Status s = processor_->Process(r, *batch_);
    EXPECT_OK(batch_->Commit(nullptr));
    return s;
  }

  // Every stored entry: (key, start) → value, and the stream time.
  std::vector<std::pair<std::pair<std::string, int64_t>, int64_t>> Windows() {
    std::vector<std::pair<std::pair<std::string, int64_t>, int64_t>> out;
    auto all = engine_->Scan(handle_, PartitionId(0), router::KeyRange{}, std::nullopt, 1000);
    EXPECT_OK(all);
    for (const router::KeyValue& kv : *all) {
      auto w = DecodeWindowKey(kv.key);
      if (!w) continue;
      out.push_back({{std::string(w->user_key), w->start_ms}, *DecodeInt64(kv.value)});
    }
    return out;
  }
  std::optional<int64_t> StreamTime() {
    auto v = engine_->Get(handle_, PartitionId(0), kStreamTimeKey);
    EXPECT_OK(v);
    return v.ok() && *v ? DecodeInt64(**v) : std::nullopt;
  }

  int64_t offset_ = 0;
};

using W = std::pair<std::pair<std::string, int64_t>, int64_t>;

TEST_F(WindowedProcessorTest, GraceDecidesWhichLateRecordsAreCounted) {
  Make("count {} window { size: '10s' grace: '2s' }");
  ASSERT_OK(Apply(10'000));  // window 10s
  ASSERT_OK(Apply(21'000));  // stream time 21s: window 10s closes at 20s + 2s grace
  ASSERT_OK(Apply(19'999));  // 20s + 2s > 21s: accepted
  EXPECT_EQ(processor_->TakeLateRecords(), 0);
  ASSERT_OK(Apply(22'000));  // stream time 22s: window 10s no longer accepts
  ASSERT_OK(Apply(15'000));
  EXPECT_EQ(processor_->TakeLateRecords(), 1);
  EXPECT_EQ(processor_->TakeLateRecords(), 0);
  EXPECT_THAT(Windows(), ElementsAre(W{{"k", 10'000}, 2}, W{{"k", 20'000}, 2}));
  EXPECT_EQ(StreamTime(), 22'000);
}

TEST_F(WindowedProcessorTest, HoppingSumAndStreamTimeSurviveANewProcessor) {
  Make("sum { field: 'n' } window { size: '10s' advance: '5s' grace: '0s' }");
  ASSERT_OK(Apply(7'000, R"({"n": 3})"));   // windows 0s and 5s
  ASSERT_OK(Apply(12'000, R"({"n": 4})"));  // windows 5s and 10s
  // A processor built afresh (a restart) reads the stream time from the store: 5s's window
  // [5s, 15s) still accepts at 12s, 0s's [0, 10s) does not.
  Make("sum { field: 'n' } window { size: '10s' advance: '5s' grace: '0s' }");
  ASSERT_OK(Apply(9'000, R"({"n": 10})"));
  EXPECT_EQ(processor_->TakeLateRecords(), 1);
  EXPECT_THAT(Windows(), ElementsAre(W{{"k", 0}, 3}, W{{"k", 5'000}, 17}, W{{"k", 10'000}, 4}));
  // A bad record moves nothing: no window, no stream time.
  EXPECT_EQ(Apply(40'000, R"({"n": "x"})").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(StreamTime(), 12'000);
  EXPECT_EQ(Apply(-1, R"({"n": 1})").code(), absl::StatusCode::kInvalidArgument);
}

// count_distinct per window: each hopping window counts the distinct values of its own
// records (a truth computed here), its state kept per window beside the row.
TEST_F(WindowedProcessorTest, CountDistinctCountsEachWindowsOwnValues) {
  const std::string store =
      "aggregate { columns { name: 'users' count_distinct { field: 'u' } } } "
      "window { size: '10s' advance: '5s' }";
  Make(store);
  std::map<int64_t, std::set<std::string>> truth;  // window start → distinct users
  for (int i = 0; i < 200; ++i) {
    const int64_t ts = i * 150;  // 0 .. 29.85 s
    const std::string user = absl::StrCat("u", (i * 7) % 23);
    ASSERT_OK(Apply(ts, absl::StrCat(R"({"u": ")", user, "\"}")));
    for (int64_t start = 0; start <= ts; start += 5'000) {
      if (ts < start + 10'000) truth[start].insert(user);
    }
  }
  auto all = engine_->Scan(handle_, PartitionId(0), router::KeyRange{}, std::nullopt, 1000);
  ASSERT_OK(all);
  std::map<int64_t, std::string> got;
  for (const router::KeyValue& kv : *all) {
    auto w = DecodeWindowKey(kv.key);
    if (w) got[w->start_ms] = std::string(RowJson(kv.value));
  }
  std::map<int64_t, std::string> want;
  for (const auto& [start, users] : truth) {
    want[start] = absl::StrCat(R"({"users":)", users.size(), "}");
  }
  EXPECT_EQ(got, want);
}

TEST_F(WindowedProcessorTest, ExpiredWindowsAreSweptWhenStreamTimeCrossesABoundary) {
  Make("count {} window { size: '10s' retention: '30s' }");
  for (int i = 0; i < 600; ++i) {
    ASSERT_OK(Apply(1'000, "{}", "key" + std::to_string(i)));  // > one sweep step of keys
  }
  ASSERT_OK(Apply(25'000));
  EXPECT_EQ(Windows().size(), 601u);
  // Stream time 30s: window 0 expires (0 + 30s <= 30s); the sweep removes it in steps.
  ASSERT_OK(Apply(30'000));
  for (int i = 0; i < 5; ++i) ASSERT_OK(Apply(30'001));
  EXPECT_THAT(Windows(), ElementsAre(W{{"k", 20'000}, 1}, W{{"k", 30'000}, 6}));
}

}  // namespace
}  // namespace kiq::node
