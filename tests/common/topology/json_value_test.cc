#include "common/topology/json_value.h"

#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/deep_json.h"
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

absl::Status Parse(absl::string_view text, JsonLimits limits = {}) {
  rapidjson::Document doc;
  return ParseJson(text, limits, "value", &doc);
}

TEST(ParseJsonTest, DefaultLimitsAreDocumented) {
  const JsonLimits limits;
  EXPECT_EQ(limits.max_depth, 64);
  EXPECT_EQ(limits.max_value_bytes, size_t{1} << 20);
}

TEST(ParseJsonTest, NestingUpToTheLimitIsAcceptedDeeperIsRefused) {
  EXPECT_OK(Parse(testing::DeepJsonArray(64)));
  EXPECT_OK(Parse(testing::DeepJsonObject(64)));
  EXPECT_OK(Parse(R"([1, {"a": [2, 3]}, {"b": {}}])"));
  EXPECT_THAT(Parse(testing::DeepJsonArray(65)), IsBad("value nests deeper than 64 levels"));
  EXPECT_THAT(Parse(testing::DeepJsonObject(65)), IsBad("value nests deeper than 64 levels"));
  JsonLimits two;
  two.max_depth = 2;
  EXPECT_OK(Parse("[[1], {\"a\": 2}]", two));
  EXPECT_THAT(Parse("[[[1]]]", two), IsBad("value nests deeper than 2 levels"));
  // Siblings do not add up: depth is nesting, not count.
  std::string wide = "[";
  for (int i = 0; i < 1000; ++i) absl::StrAppend(&wide, i == 0 ? "" : ",", "[[1]]");
  wide += "]";
  EXPECT_OK(Parse(wide, JsonLimits{3, size_t{1} << 20}));
}

// Before the limit, RapidJSON's recursive reader overflowed the stack on this (the node died in
// a crash loop on one record).
TEST(ParseJsonTest, ThreeHundredThousandLevelsAreRefusedWithoutRecursion) {
  EXPECT_THAT(Parse(testing::DeepJsonArray(300'000)), IsBad("value nests deeper than 64 levels"));
  EXPECT_THAT(Parse(testing::DeepJsonObject(300'000), JsonLimits{64, size_t{10} << 20}),
              IsBad("value nests deeper than 64 levels"));
  // Through the records' parser (which crashed before).
  LazyJson json;
  const std::string deep = testing::DeepJsonArray(300'000);
  json.Reset(deep);
  EXPECT_EQ(json.Root(), nullptr);
  EXPECT_THAT(json.error(), IsBad("value nests deeper than 64 levels"));
  // Unterminated, and with the limit raised past the nesting: the iterative reader's stack
  // is on the heap.
  EXPECT_THAT(Parse(std::string(300'000, '['), JsonLimits{1'000'000, size_t{1} << 20}),
              IsBad("value is not JSON"));
  EXPECT_OK(Parse(testing::DeepJsonArray(300'000), JsonLimits{1'000'000, size_t{1} << 20}));
}

TEST(ParseJsonTest, TwentyThousandLevelsAreRefusedQuickly) {
  const absl::Time start = absl::Now();
  EXPECT_THAT(Parse(testing::DeepJsonObject(20'000)), IsBad("value nests deeper than 64 levels"));
  EXPECT_THAT(Parse(testing::DeepJsonArray(20'000)), IsBad("value nests deeper than 64 levels"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST(ParseJsonTest, ValueOverTheSizeLimitIsTooLarge) {
  JsonLimits limits;
  limits.max_value_bytes = 10;
  EXPECT_OK(Parse("[1,2,3,45]", limits));
  EXPECT_THAT(Parse("[1,2,3,456]", limits), IsBad("value too large (11 bytes; the limit is 10)"));
  rapidjson::Document doc;
  EXPECT_THAT(ParseJson("\"0123456789\"", limits, "key", &doc),
              IsBad("key too large (12 bytes; the limit is 10)"));
}

// RFC 8259: JSON text is UTF-8. Raw bytes and escapes are checked after unescaping.
TEST(ParseJsonTest, StringsThatAreNotUtf8AreRefused) {
  const std::string not_utf8 = "value is not UTF-8 (a JSON string holds invalid UTF-8)";
  EXPECT_OK(Parse("{\"s\": \"h\xc3\xa9 \\u00e9 \\ud83d\\ude00\"}"));
  EXPECT_THAT(Parse("{\"s\": \"\xff\"}"), IsBad(not_utf8));
  EXPECT_THAT(Parse("{\"\xc3\x28\": 1}"), IsBad(not_utf8));         // in a name
  EXPECT_THAT(Parse("[\"\xed\xa0\x80\"]"), IsBad(not_utf8));        // a surrogate
  EXPECT_THAT(Parse("[\"\xc0\xaf\"]"), IsBad(not_utf8));            // overlong '/'
  EXPECT_THAT(Parse("[\"\\udc00\"]"), IsBad(not_utf8));             // lone low surrogate
  EXPECT_THAT(Parse("[\"\\ud800\"]"), IsBad("value is not JSON"));  // lone high one
}

TEST(ParseJsonTest, OneValueAndNothingAfterIt) {
  EXPECT_OK(Parse(" {\"a\": 1} \n"));
  EXPECT_OK(Parse("\xEF\xBB\xBF{\"a\": 1}"));  // a byte order mark may be ignored
  EXPECT_THAT(Parse("{\"a\": 1} x"), IsBad("value is not JSON"));
  EXPECT_THAT(Parse(std::string("{\"a\": 1}\0x", 10)), IsBad("value is not JSON"));
  EXPECT_THAT(Parse(std::string("{\"a\": 1}\0", 9)), IsBad("value is not JSON"));
  EXPECT_THAT(Parse(""), IsBad("value is not JSON"));
  EXPECT_THAT(Parse("[1] [2]"), IsBad("value is not JSON"));
}

// Found by fuzz/record_decoder_fuzzer: RapidJSON's default number parsing can be an ulp off,
// so a value rendered (Latest, Entry.json) and parsed again changed; its precise mode calls
// clz(0) on "0e54" (undefined behaviour).
TEST(ParseJsonTest, NumbersAreTheNearestDouble) {
  for (const char* number :
       {"-92233723860254775808", "0.1", "2.2250738585072011e-308", "9007199254740993",
        "1.7976931348623157e308", "123456789012345678901234567890e-5"}) {
    SCOPED_TRACE(number);
    rapidjson::Document doc;
    ASSERT_OK(ParseJson(number, JsonLimits{}, "value", &doc));
    EXPECT_EQ(doc.GetDouble(), std::strtod(number, nullptr));
    rapidjson::Document again;
    const std::string text = ToJsonText(doc);
    ASSERT_OK(ParseJson(text, JsonLimits{}, "value", &again));
    EXPECT_EQ(ToJsonText(again), text);
  }
}

TEST(ParseJsonTest, IntegersKeepTheirTypeAndHugeNumbersAreRefused) {
  rapidjson::Document doc;
  ASSERT_OK(ParseJson("[-9223372036854775808, 18446744073709551615, 18446744073709551616, 7]",
                      JsonLimits{}, "value", &doc));
  EXPECT_TRUE(doc[0].IsInt64());
  EXPECT_EQ(doc[0].GetInt64(), std::numeric_limits<int64_t>::min());
  EXPECT_TRUE(doc[1].IsUint64());
  EXPECT_EQ(doc[1].GetUint64(), std::numeric_limits<uint64_t>::max());
  EXPECT_TRUE(doc[2].IsDouble());
  EXPECT_TRUE(doc[3].IsInt());
  EXPECT_THAT(Parse("[1e400]"), IsBad("value is not JSON"));
  EXPECT_OK(Parse("[1e-400]"));
}

TEST(LazyJsonTest, RefusesPastItsLimitsAndSaysWhy) {
  LazyJson json(JsonLimits{2, 100});
  const std::string deep = "[[[1]]]";
  EXPECT_THAT(Read(json, deep, FieldPath("")), IsBad("value nests deeper than 2 levels"));
  EXPECT_THAT(json.error(), IsBad("value nests deeper than 2 levels"));
  const std::string ok = "[[1]]";
  EXPECT_OK(Read(json, ok, FieldPath("")));
  EXPECT_OK(json.error());
  const std::string big(101, ' ');
  EXPECT_THAT(Read(json, big, FieldPath("")),
              IsBad("value too large (101 bytes; the limit is 100)"));
}

}  // namespace
}  // namespace kiq
