#include "common/topology/yaml_proto.h"

#include <cmath>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "kiq/v1/topology.pb.h"
#include "yaml-cpp/yaml.h"

namespace kiq {
namespace {

using google::protobuf::Message;
using ::testing::Eq;
using ::testing::HasSubstr;

// A schema with every kind of field the mapper handles, built at run time so that the test
// needs no generated code beyond the project's own protos.
constexpr char kTestSchema[] = R"pb(
  name: "kiq_test/yaml_proto_test.proto"
  package: "kiq.test"
  syntax: "proto3"
  enum_type {
    name: "Color"
    value { name: "COLOR_UNSPECIFIED" number: 0 }
    value { name: "COLOR_RED" number: 1 }
    value { name: "COLOR_DARK_BLUE" number: 2 }
  }
  message_type {
    name: "Inner"
    field { name: "label" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "values" number: 2 label: LABEL_REPEATED type: TYPE_INT32 }
    field {
      name: "color"
      number: 3
      label: LABEL_OPTIONAL
      type: TYPE_ENUM
      type_name: ".kiq.test.Color"
    }
    field {
      name: "child"
      number: 4
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".kiq.test.Inner"
    }
  }
  message_type {
    name: "Everything"
    field { name: "i32" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
    field { name: "i64" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 }
    field { name: "u32" number: 3 label: LABEL_OPTIONAL type: TYPE_UINT32 }
    field { name: "u64" number: 4 label: LABEL_OPTIONAL type: TYPE_UINT64 }
    field { name: "f" number: 5 label: LABEL_OPTIONAL type: TYPE_FLOAT }
    field { name: "d" number: 6 label: LABEL_OPTIONAL type: TYPE_DOUBLE }
    field { name: "b" number: 7 label: LABEL_OPTIONAL type: TYPE_BOOL }
    field { name: "s" number: 8 label: LABEL_OPTIONAL type: TYPE_STRING }
    field { name: "raw" number: 9 label: LABEL_OPTIONAL type: TYPE_BYTES }
    field {
      name: "color"
      number: 10
      label: LABEL_OPTIONAL
      type: TYPE_ENUM
      type_name: ".kiq.test.Color"
    }
    field { name: "s32" number: 11 label: LABEL_OPTIONAL type: TYPE_SINT32 }
    field { name: "display_name" number: 12 label: LABEL_OPTIONAL type: TYPE_STRING }
    field {
      name: "custom"
      number: 13
      label: LABEL_OPTIONAL
      type: TYPE_STRING
      json_name: "customJson"
    }
    field {
      name: "inner"
      number: 20
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".kiq.test.Inner"
    }
    field {
      name: "inners"
      number: 21
      label: LABEL_REPEATED
      type: TYPE_MESSAGE
      type_name: ".kiq.test.Inner"
    }
    field { name: "tags" number: 22 label: LABEL_REPEATED type: TYPE_STRING }
    field {
      name: "counts"
      number: 23
      label: LABEL_REPEATED
      type: TYPE_MESSAGE
      type_name: ".kiq.test.Everything.CountsEntry"
    }
    field {
      name: "by_id"
      number: 24
      label: LABEL_REPEATED
      type: TYPE_MESSAGE
      type_name: ".kiq.test.Everything.ByIdEntry"
    }
    field {
      name: "first"
      number: 30
      label: LABEL_OPTIONAL
      type: TYPE_MESSAGE
      type_name: ".kiq.test.Inner"
      oneof_index: 0
    }
    field { name: "second" number: 31 label: LABEL_OPTIONAL type: TYPE_STRING oneof_index: 0 }
    field {
      name: "colors"
      number: 32
      label: LABEL_REPEATED
      type: TYPE_ENUM
      type_name: ".kiq.test.Color"
    }
    nested_type {
      name: "CountsEntry"
      field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_STRING }
      field { name: "value" number: 2 label: LABEL_OPTIONAL type: TYPE_INT64 }
      options { map_entry: true }
    }
    nested_type {
      name: "ByIdEntry"
      field { name: "key" number: 1 label: LABEL_OPTIONAL type: TYPE_INT32 }
      field {
        name: "value"
        number: 2
        label: LABEL_OPTIONAL
        type: TYPE_MESSAGE
        type_name: ".kiq.test.Inner"
      }
      options { map_entry: true }
    }
    oneof_decl { name: "choice" }
  }
)pb";

const absl::Status& GetStatus(const absl::Status& status) { return status; }

MATCHER(IsOk, "is OK") {
  *result_listener << "status is " << GetStatus(arg);
  return GetStatus(arg).ok();
}

MATCHER_P2(StatusIs, code, message_matcher,
           absl::StrCat(negation ? "isn't " : "is ", absl::StatusCodeToString(code),
                        " with a message that ",
                        ::testing::DescribeMatcher<std::string>(message_matcher))) {
  const absl::Status& status = GetStatus(arg);
  *result_listener << "status is " << status << " ";
  return status.code() == code &&
         ::testing::ExplainMatchResult(message_matcher, std::string(status.message()),
                                       result_listener);
}

// Compares with a message of the same type written in protobuf text format.
MATCHER_P(EqualsTextProto, text, "") {
  std::unique_ptr<Message> expected(arg.New());
  if (!google::protobuf::TextFormat::ParseFromString(text, expected.get())) {
    *result_listener << "the expected text does not parse";
    return false;
  }
  std::string diff;
  google::protobuf::util::MessageDifferencer differencer;
  differencer.ReportDifferencesToString(&diff);
  if (differencer.Compare(*expected, arg)) return true;
  *result_listener << "differences:\n" << diff;
  return false;
}

class YamlToMessageTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    google::protobuf::FileDescriptorProto file;
    ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(kTestSchema, &file));
    pool_ = new google::protobuf::DescriptorPool();
    ASSERT_NE(pool_->BuildFile(file), nullptr);
    factory_ = new google::protobuf::DynamicMessageFactory(pool_);
  }

  static void TearDownTestSuite() {
    delete factory_;
    delete pool_;
  }

  static std::unique_ptr<Message> NewEverything() {
    return std::unique_ptr<Message>(
        factory_->GetPrototype(pool_->FindMessageTypeByName("kiq.test.Everything"))->New());
  }

  // Maps `yaml` onto `message`; the YAML itself must be well-formed.
  static absl::Status MapYaml(const std::string& yaml, Message* message,
                              std::string_view path = "") {
    return YamlToMessage(YAML::Load(yaml), message, path);
  }

  // The error for `yaml` mapped onto a fresh Everything.
  static absl::Status MapError(const std::string& yaml) {
    std::unique_ptr<Message> message = NewEverything();
    return MapYaml(yaml, message.get());
  }

  static google::protobuf::DescriptorPool* pool_;
  static google::protobuf::DynamicMessageFactory* factory_;
};

google::protobuf::DescriptorPool* YamlToMessageTest::pool_ = nullptr;
google::protobuf::DynamicMessageFactory* YamlToMessageTest::factory_ = nullptr;

struct ErrorCase {
  const char* yaml;
  const char* message;
};

TEST_F(YamlToMessageTest, MapsEveryScalarType) {
  std::unique_ptr<Message> message = NewEverything();
  ASSERT_THAT(MapYaml(R"(
i32: -2147483648
i64: -9223372036854775808
u32: 4294967295
u64: 18446744073709551615
f: 1.5
d: -2.5e-3
b: TRUE
s: hello world
raw: "bytes\x01"
color: red
s32: -7
)",
                      message.get()),
              IsOk());
  EXPECT_THAT(*message, EqualsTextProto(R"pb(
    i32: -2147483648
    i64: -9223372036854775808
    u32: 4294967295
    u64: 18446744073709551615
    f: 1.5
    d: -0.0025
    b: true
    s: "hello world"
    raw: "bytes\001"
    color: COLOR_RED
    s32: -7
  )pb"));
}

TEST_F(YamlToMessageTest, TakesAnyScalarAsStringAndIntegersAsFloats) {
  std::unique_ptr<Message> message = NewEverything();
  ASSERT_THAT(
      MapYaml("s: 2024\ntags: [true, 1.5, '']\nd: 3\nf: -4\nu32: -0\nb: false", message.get()),
      IsOk());
  EXPECT_THAT(*message, EqualsTextProto(R"pb(
    s: "2024" tags: "true" tags: "1.5" tags: "" d: 3 f: -4
  )pb"));
}

TEST_F(YamlToMessageTest, AcceptsNonFiniteFloats) {
  std::unique_ptr<Message> message = NewEverything();
  ASSERT_THAT(MapYaml("f: .inf\nd: .NaN", message.get()), IsOk());
  const google::protobuf::Reflection* reflection = message->GetReflection();
  const google::protobuf::Descriptor* type = message->GetDescriptor();
  EXPECT_TRUE(std::isinf(reflection->GetFloat(*message, type->FindFieldByName("f"))));
  EXPECT_TRUE(std::isnan(reflection->GetDouble(*message, type->FindFieldByName("d"))));

  ASSERT_THAT(MapYaml("d: -.Inf", message.get()), IsOk());
  EXPECT_EQ(reflection->GetDouble(*message, type->FindFieldByName("d")), -INFINITY);
}

TEST_F(YamlToMessageTest, AcceptsJsonNameAndLowerCamelCase) {
  std::unique_ptr<Message> message = NewEverything();
  ASSERT_THAT(MapYaml("displayName: a\ncustomJson: b", message.get()), IsOk());
  EXPECT_THAT(*message, EqualsTextProto(R"pb(display_name: "a" custom: "b")pb"));

  kiq::v1::Topology topology;
  ASSERT_THAT(
      YamlToMessage(YAML::Load("applicationId: x\nsources: [{valueFormat: json}]"), &topology),
      IsOk());
  EXPECT_THAT(topology, EqualsTextProto(R"pb(
                application_id: "x"
                sources { value_format: FORMAT_JSON }
              )pb"));
}

TEST_F(YamlToMessageTest, MapsNestedRepeatedAndMapFields) {
  std::unique_ptr<Message> message = NewEverything();
  ASSERT_THAT(MapYaml(R"(
inner:
  label: top
  values: [1, -2, 3]
  child: {label: nested, color: dark_blue}
inners:
  - label: a
  - {}
  -
tags: [x, y]
colors: [RED, Dark_Blue, COLOR_UNSPECIFIED]
counts: {a: 1, b: -2}
by_id:
  7: {label: seven}
  -1:
)",
                      message.get()),
              IsOk());
  EXPECT_THAT(*message, EqualsTextProto(R"pb(
    inner {
      label: "top"
      values: [ 1, -2, 3 ]
      child { label: "nested" color: COLOR_DARK_BLUE }
    }
    inners { label: "a" }
    inners {}
    inners {}
    tags: [ "x", "y" ]
    colors: [ COLOR_RED, COLOR_DARK_BLUE, COLOR_UNSPECIFIED ]
    counts { key: "a" value: 1 }
    counts { key: "b" value: -2 }
    by_id {
      key: 7
      value { label: "seven" }
    }
    by_id {
      key: -1
      value {}
    }
  )pb"));
}

TEST_F(YamlToMessageTest, ReadsJson) {
  std::unique_ptr<Message> message = NewEverything();
  ASSERT_THAT(MapYaml(R"({"i32": 5, "b": false, "tags": ["a", "b"],
                          "inner": {"label": "x", "values": [1, 2], "color": "COLOR_RED"},
                          "counts": {"k": 9}, "displayName": "d"})",
                      message.get()),
              IsOk());
  EXPECT_THAT(*message, EqualsTextProto(R"pb(
    i32: 5
    tags: [ "a", "b" ]
    inner {
      label: "x"
      values: [ 1, 2 ]
      color: COLOR_RED
    }
    counts { key: "k" value: 9 }
    display_name: "d"
  )pb"));
}

TEST_F(YamlToMessageTest, EnumNamesMatchWithOrWithoutPrefixInAnyCase) {
  for (const char* spelling : {"json", "JSON", "Json", "FORMAT_JSON", "format_json"}) {
    SCOPED_TRACE(spelling);
    kiq::v1::Source source;
    ASSERT_THAT(YamlToMessage(YAML::Load(absl::StrCat("value_format: ", spelling)), &source),
                IsOk());
    EXPECT_EQ(source.value_format(), kiq::v1::FORMAT_JSON);
  }
  for (const char* spelling : {"murmur2", "MURMUR2", "partitioner_murmur2"}) {
    SCOPED_TRACE(spelling);
    kiq::v1::Source source;
    ASSERT_THAT(YamlToMessage(YAML::Load(absl::StrCat("partitioner: ", spelling)), &source),
                IsOk());
    EXPECT_EQ(source.partitioner(), kiq::v1::PARTITIONER_MURMUR2);
  }
}

TEST_F(YamlToMessageTest, BadEnumNameListsValidNames) {
  EXPECT_THAT(MapError("color: purple"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("color: unknown Color \"purple\" (valid: unspecified, red, dark_blue)")));
  EXPECT_THAT(MapError("colors: [red, 1]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("colors[1]: unknown Color \"1\" (valid: unspecified, red, dark_blue)")));
  kiq::v1::Source source;
  EXPECT_THAT(YamlToMessage(YAML::Load("key_format: jsn"), &source, "sources[0]"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("sources[0].key_format: unknown Format \"jsn\" "
                          "(valid: unspecified, string, json, bytes, avro, protobuf, json_sr)")));
}

TEST_F(YamlToMessageTest, UnknownFieldNamesItsPathAndTheKnownFields) {
  EXPECT_THAT(
      MapError("inners: [{label: a}, {label: b, child: {colour: red}}]"),
      StatusIs(absl::StatusCode::kInvalidArgument, Eq("inners[1].child: unknown field \"colour\" "
                                                      "(known: label, values, color, child)")));
  kiq::v1::Topology topology;
  EXPECT_THAT(YamlToMessage(YAML::Load("application_id: a\nstore: []"), &topology),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("unknown field \"store\" (known: application_id, sources, stores, num_standby_replicas, schema_registry)")));
}

TEST_F(YamlToMessageTest, WrongTypeSaysWhatWasExpectedAndWhatWasFound) {
  const ErrorCase cases[] = {
      {"s: {a: 1}", "s: expected a string, found a mapping"},
      {"s: [a]", "s: expected a string, found a sequence"},
      {"raw: [a]", "raw: expected a string (bytes), found a sequence"},
      {"i32: abc", "i32: expected an integer (int32), found \"abc\""},
      {"i64: 1.5", "i64: expected an integer (int64), found \"1.5\""},
      {"u64: 0x10", "u64: expected an integer (uint64), found \"0x10\""},
      {"d: twelve", "d: expected a number (double), found \"twelve\""},
      {"f: 1e", "f: expected a number (float), found \"1e\""},
      {"b: yes", "b: expected true or false, found \"yes\""},
      {"color: [red]", "color: expected a Color name, found a sequence"},
      {"inner: 3", "inner: expected a mapping (kiq.test.Inner), found \"3\""},
      {"inner: {child: [1]}", "inner.child: expected a mapping (kiq.test.Inner), found a sequence"},
      {"inners: {label: x}", "inners: expected a sequence, found a mapping"},
      {"inners: [{}, 1]", "inners[1]: expected a mapping (kiq.test.Inner), found \"1\""},
      {"tags: x", "tags: expected a sequence, found \"x\""},
      {"tags: [a, [b]]", "tags[1]: expected a string, found a sequence"},
      {"tags: [a, ~]", "tags[1]: expected a string, found null"},
      {"counts: [1]", "counts: expected a mapping, found a sequence"},
      {"counts: {a: x}", "counts[\"a\"]: expected an integer (int64), found \"x\""},
      {"by_id: {abc: {}}", "by_id[\"abc\"]: expected an integer (int32), found \"abc\""},
      {"by_id: {1: 2}", "by_id[\"1\"]: expected a mapping (kiq.test.Inner), found \"2\""},
      {"- a", "expected a mapping (kiq.test.Everything), found a sequence"},
      {"just text", "expected a mapping (kiq.test.Everything), found \"just text\""},
      {"? [a]\n: 1", "expected field names as keys, found a sequence"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.yaml);
    EXPECT_THAT(MapError(c.yaml), StatusIs(absl::StatusCode::kInvalidArgument, Eq(c.message)));
  }
}

TEST_F(YamlToMessageTest, IntegersOutOfRangeAreRefused) {
  const ErrorCase cases[] = {
      {"i32: 2147483648", "i32: 2147483648 is out of range for int32 (-2147483648 to 2147483647)"},
      {"i32: -2147483649",
       "i32: -2147483649 is out of range for int32 (-2147483648 to 2147483647)"},
      {"s32: 9999999999", "s32: 9999999999 is out of range for int32 (-2147483648 to 2147483647)"},
      {"u32: -1", "u32: -1 is out of range for uint32 (0 to 4294967295)"},
      {"u32: 4294967296", "u32: 4294967296 is out of range for uint32 (0 to 4294967295)"},
      {"i64: 9223372036854775808",
       "i64: 9223372036854775808 is out of range for int64 "
       "(-9223372036854775808 to 9223372036854775807)"},
      {"u64: 18446744073709551616",
       "u64: 18446744073709551616 is out of range for uint64 (0 to 18446744073709551615)"},
      {"u64: 99999999999999999999999999",
       "u64: 99999999999999999999999999 is out of range for uint64 (0 to 18446744073709551615)"},
      {"inner: {values: [1, 99999999999]}",
       "inner.values[1]: 99999999999 is out of range for int32 (-2147483648 to 2147483647)"},
      {"by_id: {4294967296: {}}",
       "by_id[\"4294967296\"]: 4294967296 is out of range for int32 "
       "(-2147483648 to 2147483647)"},
      {"f: 1e39", "f: 1e39 is out of range for float"},
      {"d: -1e999", "d: -1e999 is out of range for double"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.yaml);
    EXPECT_THAT(MapError(c.yaml), StatusIs(absl::StatusCode::kInvalidArgument, Eq(c.message)));
  }
}

TEST_F(YamlToMessageTest, OneofSetTwiceNamesBothFields) {
  EXPECT_THAT(MapError("first: {label: a}\nsecond: b"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("\"first\" and \"second\" are both set, but only one of them may be "
                          "(oneof choice)")));
  kiq::v1::Topology topology;
  EXPECT_THAT(
      YamlToMessage(YAML::Load("stores: [{name: a, table: {}}, {name: b, table: {}, count: {}}]"),
                    &topology),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Eq("stores[1]: \"table\" and \"count\" are both set, but only one of them may be "
                  "(oneof kind)")));
}

TEST_F(YamlToMessageTest, EmptyOrNullMappingSelectsTheOneofCase) {
  kiq::v1::Topology topology;
  ASSERT_THAT(YamlToMessage(YAML::Load(R"(
stores:
  - {name: a, table: {}}
  - name: b
    count:
  - {name: c, table: ~}
)"),
                            &topology),
              IsOk());
  ASSERT_EQ(topology.stores_size(), 3);
  EXPECT_EQ(topology.stores(0).kind_case(), kiq::v1::Store::kTable);
  EXPECT_EQ(topology.stores(1).kind_case(), kiq::v1::Store::kCount);
  EXPECT_EQ(topology.stores(2).kind_case(), kiq::v1::Store::kTable);
}

TEST_F(YamlToMessageTest, FieldGivenTwiceIsRefused) {
  EXPECT_THAT(MapError("s: a\ns: b"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("field \"s\" given twice")));
  EXPECT_THAT(MapError("inner: {display_name: a}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown field")));
  EXPECT_THAT(MapError("display_name: a\ndisplayName: b"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("field \"display_name\" given twice (as \"display_name\" and "
                          "\"displayName\")")));
  EXPECT_THAT(MapError("by_id: {1: {}, 01: {}}"),
              StatusIs(absl::StatusCode::kInvalidArgument, Eq("by_id[\"01\"]: key given twice")));
}

TEST_F(YamlToMessageTest, NullScalarClearsTheField) {
  std::unique_ptr<Message> message = NewEverything();
  ASSERT_THAT(MapYaml("s: x\ni32: 3\ncolor: red", message.get()), IsOk());
  ASSERT_THAT(MapYaml("s:\ni32: ~\ncolor: null", message.get()), IsOk());
  EXPECT_THAT(*message, EqualsTextProto(""));
}

TEST_F(YamlToMessageTest, MergesIntoTheGivenMessage) {
  std::unique_ptr<Message> message = NewEverything();
  ASSERT_THAT(MapYaml("s: x\ntags: [a]", message.get()), IsOk());
  ASSERT_THAT(MapYaml("tags: [b]\ni32: 1", message.get()), IsOk());
  EXPECT_THAT(*message, EqualsTextProto(R"pb(s: "x"
                                             tags: [ "a", "b" ]
                                             i32: 1)pb"));
}

TEST_F(YamlToMessageTest, PathArgumentPrefixesEveryError) {
  std::unique_ptr<Message> message = NewEverything();
  EXPECT_THAT(MapYaml("inner: {values: [x]}", message.get(), "config.extra"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("config.extra.inner.values[0]: expected an integer (int32), found "
                          "\"x\"")));
  EXPECT_THAT(MapYaml("nope: 1", message.get(), "config"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("config: unknown field \"nope\" (known: i32, i64, ")));
}

TEST_F(YamlToMessageTest, EmptyDocumentLeavesMessageEmpty) {
  std::unique_ptr<Message> message = NewEverything();
  EXPECT_THAT(YamlToMessage(YAML::Load(""), message.get()), IsOk());
  EXPECT_THAT(YamlToMessage(YAML::Node(), message.get()), IsOk());
  EXPECT_THAT(*message, EqualsTextProto(""));
}

TEST_F(YamlToMessageTest, LongScalarsAreClippedInErrors) {
  const std::string long_text(500, 'z');
  const absl::Status status = MapError(absl::StrCat("i32: ", long_text));
  EXPECT_THAT(status, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr(absl::StrCat("found \"", std::string(60, 'z'), "...\""))));
  EXPECT_LT(status.message().size(), 200u);
}

TEST_F(YamlToMessageTest, DeepNestingIsRefused) {
  std::string yaml = "inner: ";
  for (int i = 0; i < 150; ++i) yaml += "{child: ";
  yaml += "{}";
  for (int i = 0; i < 150; ++i) yaml += "}";
  EXPECT_THAT(MapError(yaml), StatusIs(absl::StatusCode::kInvalidArgument,
                                       HasSubstr(": nested more than 100 levels deep")));
}

}  // namespace
}  // namespace kiq
