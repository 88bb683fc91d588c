#include "router/entry.h"

#include <limits>
#include <string>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/topology/value_codec.h"
#include "common/topology/window_key.h"
#include "gtest/gtest.h"
#include "router/port/local_stores.h"
#include "tests/testing/deep_json.h"

namespace kiq::router {
namespace {

kiq::v1::Entry Render(ValueKind kind, std::string value) {
  StoreInfo store;
  store.name = "s";
  store.value_kind = kind;
  return RenderEntry(store, KeyValue{"k", std::move(value), PartitionId(3)});
}

TEST(RenderEntryTest, DoubleIsShortestRoundTripTextAndAJsonNumber) {
  const double values[] = {
      0.1, 0.1 + 0.2, -2.5, 17, 1e300, 5e-324, std::numeric_limits<double>::max()};
  const char* texts[] = {"0.1",    "0.30000000000000004",    "-2.5", "17", "1e+300",
                         "5e-324", "1.7976931348623157e+308"};
  for (size_t i = 0; i < std::size(values); ++i) {
    SCOPED_TRACE(texts[i]);
    kiq::v1::Entry entry = Render(ValueKind::kDouble, EncodeDouble(values[i]));
    EXPECT_EQ(entry.value(), texts[i]);
    EXPECT_EQ(std::strtod(entry.value().c_str(), nullptr), values[i]);
    EXPECT_EQ(entry.json().number_value(), values[i]);
    EXPECT_EQ(entry.partition(), 3);
  }
}

TEST(RenderEntryTest, DoubleThatIsNot8BytesFallsBackToBytes) {
  kiq::v1::Entry entry = Render(ValueKind::kDouble, "abc");
  EXPECT_EQ(entry.value(), "abc");
  EXPECT_FALSE(entry.has_json());
}

TEST(RenderEntryTest, DoubleCodecRoundTrips) {
  for (double v : {0.0, -0.0, 1.5, -1e-300, std::numeric_limits<double>::infinity()}) {
    const std::string bytes = EncodeDouble(v);
    ASSERT_EQ(bytes.size(), 8u);
    std::optional<double> back = DecodeDouble(bytes);
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, v);
    EXPECT_EQ(std::signbit(*back), std::signbit(v));
  }
  // Big-endian IEEE bits: 1.0 is 3FF0000000000000.
  EXPECT_EQ(EncodeDouble(1.0), std::string("\x3f\xf0\0\0\0\0\0\0", 8));
  EXPECT_FALSE(DecodeDouble("1234567").has_value());
}

TEST(RenderEntryTest, LatestJsonTextIsParsed) {
  kiq::v1::Entry entry = Render(ValueKind::kJson, R"("cat.png")");
  EXPECT_EQ(entry.value(), R"("cat.png")");
  EXPECT_EQ(entry.json().string_value(), "cat.png");
}

int DepthOf(const google::protobuf::Value& v) {
  int depth = 0;
  const google::protobuf::Value* at = &v;
  while (at->has_struct_value()) {
    ++depth;
    at = &at->struct_value().fields().at("a");
  }
  return depth;
}

TEST(RenderEntryTest, JsonIsWhatProtobufsJsonParserMakesOfIt) {
  for (const char* text :
       {R"({"a": [1, -2.5, "x", true, false, null, {}], "b": {"c": "\u00e9"}, "n": 1e300})", "17",
        R"("s")", "null", "[]", R"({"big": 12345678901234567890, "neg": -9223372036854775808})"}) {
    SCOPED_TRACE(text);
    google::protobuf::Value want;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(text, &want).ok());
    kiq::v1::Entry entry = Render(ValueKind::kJson, text);
    EXPECT_EQ(entry.value(), text);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(entry.json(), want))
        << entry.json().DebugString() << " vs " << want.DebugString();
  }
}

// RFC 8259 leaves repeated names to the implementation (protobuf's JSON parser refuses them,
// which left json unset): the last one counts.
TEST(RenderEntryTest, RepeatedNamesKeepTheLastValue) {
  kiq::v1::Entry entry = Render(ValueKind::kJson, R"({"dup": 1, "dup": 2})");
  ASSERT_TRUE(entry.has_json());
  EXPECT_EQ(entry.json().struct_value().fields().at("dup").number_value(), 2);
}

// The deepest Entry.json still reaches a client: every response parses with protobuf's default
// recursion limit (what gRPC and the HTTP gateway use).
TEST(RenderEntryTest, JsonAtTheEntryDepthLimitParsesInEveryResponse) {
  kiq::v1::Entry entry = Render(ValueKind::kJson, testing::DeepJsonObject(kMaxEntryJsonDepth));
  ASSERT_TRUE(entry.has_json());
  EXPECT_EQ(DepthOf(entry.json()), kMaxEntryJsonDepth);
  kiq::v1::GetResponse get;
  *get.mutable_entry() = entry;
  kiq::v1::GetResponse get_back;
  EXPECT_TRUE(get_back.ParseFromString(get.SerializeAsString()));
  kiq::v1::SubscribeResponse change;
  *change.mutable_entry() = entry;
  *change.mutable_old_json() = entry.json();
  kiq::v1::SubscribeResponse change_back;
  EXPECT_TRUE(change_back.ParseFromString(change.SerializeAsString()));
  // One level more and a client could not read the response at all.
  google::protobuf::Value deeper;
  *deeper.mutable_struct_value()->mutable_fields()->operator[]("a").mutable_struct_value() =
      entry.json().struct_value();
  *get.mutable_entry()->mutable_json() = deeper;
  EXPECT_FALSE(get_back.ParseFromString(get.SerializeAsString()));
}

TEST(RenderEntryTest, JsonDeeperThanAnEntryCarriesIsLeftToTheValue) {
  const std::string text = testing::DeepJsonObject(kMaxEntryJsonDepth + 1);
  kiq::v1::Entry entry = Render(ValueKind::kJson, text);
  EXPECT_FALSE(entry.has_json());
  EXPECT_EQ(entry.value(), text);
}

// Before, a stored value 20,000 levels deep cost 18 s of CPU per Get in JsonStringToMessage,
// whose result was then dropped.
TEST(RenderEntryTest, VeryDeepStoredJsonRendersQuickly) {
  const std::string objects = testing::DeepJsonObject(20'000);
  const std::string arrays = testing::DeepJsonArray(20'000);
  const absl::Time start = absl::Now();
  for (const std::string* text : {&objects, &arrays}) {
    kiq::v1::Entry entry = Render(ValueKind::kJson, *text);
    EXPECT_FALSE(entry.has_json());
    EXPECT_EQ(entry.value(), *text);
  }
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(500));
}

TEST(RenderEntryTest, StoredJsonThatIsNotUtf8LeavesJsonUnset) {
  kiq::v1::Entry entry = Render(ValueKind::kJson, "{\"s\": \"\xff\"}");
  EXPECT_FALSE(entry.has_json());
  EXPECT_EQ(entry.value(), "{\"s\": \"\xff\"}");
}

// Found by fuzz/changelog_record_fuzzer: a restored window key starting near INT64_MAX made
// start + size overflow (undefined behaviour). kiq writes no such window: the key is shown whole.
TEST(RenderEntryTest, WindowKeyWhoseEndWouldOverflowIsShownWhole) {
  StoreInfo store;
  store.value_kind = ValueKind::kInt64;
  store.window_size_ms = 30'000;
  const std::string key = WindowKey("k", std::numeric_limits<int64_t>::max() - 10);
  kiq::v1::Entry e = RenderEntry(store, KeyValue{key, EncodeInt64(1), PartitionId(0)});
  EXPECT_FALSE(e.has_window());
  EXPECT_EQ(e.key_bytes(), key);
  const std::string last = WindowKey("k", std::numeric_limits<int64_t>::max() - 30'000);
  e = RenderEntry(store, KeyValue{last, EncodeInt64(1), PartitionId(0)});
  EXPECT_EQ(e.key(), "k");
  EXPECT_EQ(e.window().end_ms(), std::numeric_limits<int64_t>::max());
}

TEST(RenderEntryTest, WindowedKeysAreSplitIntoKeyAndWindow) {
  StoreInfo store;
  store.value_kind = ValueKind::kInt64;
  store.window_size_ms = 30'000;
  kiq::v1::Entry e = RenderEntry(
      store, KeyValue{WindowKey("books", 1'700'000'040'000), EncodeInt64(3), PartitionId(2)});
  EXPECT_EQ(e.key(), "books");
  EXPECT_EQ(e.value(), "3");
  EXPECT_EQ(e.window().start_ms(), 1'700'000'040'000);
  EXPECT_EQ(e.window().end_ms(), 1'700'000'070'000);
  // A binary user key still goes to key_bytes, without the window suffix.
  e = RenderEntry(store, KeyValue{WindowKey("\xff", 0), EncodeInt64(1), PartitionId(0)});
  EXPECT_EQ(e.key_bytes(), "\xff");
  EXPECT_EQ(e.window().start_ms(), 0);
  // Stores that are not windowed keep the whole key.
  store.window_size_ms = 0;
  e = RenderEntry(store, KeyValue{WindowKey("a", 0), EncodeInt64(1), PartitionId(0)});
  EXPECT_EQ(e.key_bytes(), WindowKey("a", 0));
  EXPECT_FALSE(e.has_window());
}

}  // namespace
}  // namespace kiq::router
