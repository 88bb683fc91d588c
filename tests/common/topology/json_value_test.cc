#include "common/topology/json_value.h"

#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace kiq {
namespace {

using ::kiq::testing::IsOkAndHolds;
using ::kiq::testing::StatusIs;
using ::testing::Eq;

// A bad record: INVALID_ARGUMENT with exactly `message`.
MATCHER_P(IsBad, message, "") {
  const absl::Status& s = ::kiq::testing::GetStatus(arg);
  *result_listener << "status is " << s;
  return s.code() == absl::StatusCode::kInvalidArgument && s.message() == message;
}

// Reads `path` of `json` (a JSON value) as the stores do.
absl::StatusOr<Scalar> Read(LazyJson& json, const std::string& text, const FieldPath& path) {
  json.Reset(text);
  return ReadField(path, text, &json);
}

TEST(FieldPathTest, ValidPathsAndProblems) {
  EXPECT_EQ(FieldPath::Problem(""), "");
  EXPECT_EQ(FieldPath::Problem("points"), "");
  EXPECT_EQ(FieldPath::Problem("customer.id"), "");
  EXPECT_EQ(FieldPath::Problem("a.b.c"), "");
  for (const char* bad : {".", "a.", ".a", "a..b"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(FieldPath::Problem(bad), ::testing::HasSubstr("is not a field path"));
  }
}

TEST(FieldPathTest, FindsNestedFieldsAndReportsMissingOnes) {
  LazyJson json;
  const std::string text = R"({"points": 3, "customer": {"id": "c7", "tier": null}, "n": [1]})";
  EXPECT_THAT(Read(json, text, FieldPath("customer.id")).value().json->GetString(),
              ::testing::StrEq("c7"));
  EXPECT_TRUE(Read(json, text, FieldPath("customer.tier")).value().json->IsNull());
  EXPECT_TRUE(Read(json, text, FieldPath("")).value().json->IsObject());
  EXPECT_THAT(Read(json, text, FieldPath("customer.name")),
              IsBad("field customer.name is missing"));
  // A path through a non-object is missing, not an error of another kind.
  EXPECT_THAT(Read(json, text, FieldPath("points.x")), IsBad("field points.x is missing"));
  EXPECT_THAT(Read(json, "{oops", FieldPath("points")), IsBad("value is not JSON"));
}

TEST(LazyJsonTest, ParsesOnceAndResetsBetweenRecords) {
  LazyJson json;
  json.Reset(R"({"a": 1})");
  const rapidjson::Value* first = json.Root();
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(json.Root(), first);
  EXPECT_EQ((*first)["a"].GetInt(), 1);
  // A document larger than the inline buffer, then a small one again.
  std::string big = "[";
  for (int i = 0; i < 5000; ++i) big += (i ? ",\"xxxxxxxxxx\"" : "\"xxxxxxxxxx\"");
  big += "]";
  json.Reset(big);
  ASSERT_NE(json.Root(), nullptr);
  EXPECT_EQ(json.Root()->Size(), 5000u);
  json.Reset("not json");
  EXPECT_EQ(json.Root(), nullptr);
  json.Reset(R"({"a": 2})");
  ASSERT_NE(json.Root(), nullptr);
  EXPECT_EQ((*json.Root())["a"].GetInt(), 2);
}

absl::StatusOr<int64_t> Int(const std::string& json_text) {
  LazyJson json;
  const FieldPath path("points");
  absl::StatusOr<Scalar> s = Read(json, json_text, path);
  if (!s.ok()) return s.status();
  return ToInt64(*s, path);
}

absl::StatusOr<double> Double(const std::string& json_text) {
  LazyJson json;
  const FieldPath path("points");
  absl::StatusOr<Scalar> s = Read(json, json_text, path);
  if (!s.ok()) return s.status();
  return ToDouble(*s, path);
}

TEST(NumericCastTest, Int64FromNumbersAndNumericStrings) {
  EXPECT_THAT(Int(R"({"points": 17})"), IsOkAndHolds(17));
  EXPECT_THAT(Int(R"({"points": -9223372036854775808})"),
              IsOkAndHolds(std::numeric_limits<int64_t>::min()));
  EXPECT_THAT(Int(R"({"points": "17"})"), IsOkAndHolds(17));
  EXPECT_THAT(Int(R"({"points": "-4"})"), IsOkAndHolds(-4));
  EXPECT_THAT(Int(R"({"points": 1e3})"), IsOkAndHolds(1000));  // integral
  EXPECT_THAT(Int(R"({"points": "abc"})"), IsBad("field points is not a number: \"abc\""));
  EXPECT_THAT(Int(R"({"points": "2.5"})"), IsBad("field points is not an integer: \"2.5\""));
  EXPECT_THAT(Int(R"({"points": 2.5})"), IsBad("field points is not an integer: 2.5"));
  EXPECT_THAT(Int(R"({"points": " 17"})"), StatusIs(absl::StatusCode::kInvalidArgument, ""));
  EXPECT_THAT(Int(R"({"points": ""})"), StatusIs(absl::StatusCode::kInvalidArgument, ""));
  EXPECT_THAT(Int(R"({"points": "9223372036854775808"})"),
              IsBad("field points is not an int64 (out of range): \"9223372036854775808\""));
  EXPECT_THAT(Int(R"({"points": 9223372036854775808})"),
              IsBad("field points is not an int64 (out of range): 9223372036854775808"));
  EXPECT_THAT(Int(R"({"points": true})"), IsBad("field points is not a number: true"));
  EXPECT_THAT(Int(R"({"points": {"a": 1}})"), IsBad("field points is not a number: an object"));
  EXPECT_THAT(Int(R"({"other": 1})"), IsBad("field points is missing"));
}

TEST(NumericCastTest, DoubleFromNumbersAndNumericStrings) {
  EXPECT_THAT(Double(R"({"points": 2.5})"), IsOkAndHolds(2.5));
  EXPECT_THAT(Double(R"({"points": 3})"), IsOkAndHolds(3.0));
  EXPECT_THAT(Double(R"({"points": "0.1"})"), IsOkAndHolds(0.1));
  EXPECT_THAT(Double(R"({"points": "-1e3"})"), IsOkAndHolds(-1000.0));
  for (const char* bad : {R"("nan")", R"("inf")", R"("0x10")", R"("1e")", R"(".")", "null"}) {
    SCOPED_TRACE(bad);
    EXPECT_THAT(Double(absl::StrCat(R"({"points": )", bad, "}")),
                StatusIs(absl::StatusCode::kInvalidArgument, ""));
  }
  EXPECT_THAT(Double(R"({"points": "1e999"})"),
              IsBad("field points is not a finite double: \"1e999\""));
}

TEST(NumericCastTest, WholePlainTextValue) {
  const FieldPath whole("");
  absl::StatusOr<Scalar> s = ReadField(whole, "17", nullptr);
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(ToInt64(*s, whole), IsOkAndHolds(17));
  EXPECT_THAT(ToDouble(*s, whole), IsOkAndHolds(17.0));
  s = ReadField(whole, "x1", nullptr);
  ASSERT_TRUE(s.ok());
  EXPECT_THAT(ToInt64(*s, whole), IsBad("the value is not a number: \"x1\""));
}

TEST(JsonTextTest, CompactTextAndShortDescriptions) {
  LazyJson json;
  json.Reset(R"({ "a" : [1, {"b": "x"}] , "s": "hé"})");
  ASSERT_NE(json.Root(), nullptr);
  EXPECT_EQ(ToJsonText(*json.Root()), R"({"a":[1,{"b":"x"}],"s":"hé"})");
  EXPECT_EQ(DescribeJson((*json.Root())["a"]), "an array");
  EXPECT_EQ(DescribeJson((*json.Root())["s"]), R"("hé")");
}

}  // namespace
}  // namespace kiq
