#include "router/entry.h"

#include <limits>
#include <string>

#include "common/topology/value_codec.h"
#include "common/topology/window_key.h"
#include "gtest/gtest.h"
#include "router/port/local_stores.h"

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
