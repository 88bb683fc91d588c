#include "common/topology/topology_config.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/text_format.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "kiq/v1/topology.pb.h"

#ifndef KIQ_SOURCE_DIR
#error "KIQ_SOURCE_DIR must name the repository root (the test reads examples/)"
#endif

namespace kiq {
namespace {

using google::protobuf::Message;
using kiq::v1::Topology;
using ::testing::AllOf;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const absl::Status& GetStatus(const absl::Status& status) { return status; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& status_or) {
  return status_or.status();
}

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

// Written the way users write YAML: comments, block and flow style, short enum names in
// mixed case, a camelCase key, formats left to their defaults.
constexpr char kGoodYaml[] = R"(
# The shop.
application_id: shop.v2
sources:
  - topic: customers          # key and value formats default to string
  - topic: orders
    keyFormat: bytes
    value_format: Json
    partitioner: consistent
  - {topic: payments, partitioner: MURMUR2}
stores:
  - name: customers
    source: customers
    table: {}
  - name: order_count
    source: orders
    count:
  - {name: payments.latest, source: payments, table: {}}
)";

// The same topology as JSON, with full enum names.
constexpr char kGoodJson[] = R"({
  "application_id": "shop.v2",
  "sources": [
    {"topic": "customers"},
    {"topic": "orders", "key_format": "FORMAT_BYTES", "value_format": "FORMAT_JSON",
     "partitioner": "PARTITIONER_CONSISTENT"},
    {"topic": "payments", "partitioner": "PARTITIONER_MURMUR2"}
  ],
  "stores": [
    {"name": "customers", "source": "customers", "table": {}},
    {"name": "order_count", "source": "orders", "count": {}},
    {"name": "payments.latest", "source": "payments", "table": {}}
  ]
})";

// A valid topology in flow style, for the error cases to vary.
constexpr char kValidFlow[] =
    "application_id: app\n"
    "sources: [{topic: customers}, {topic: orders}]\n"
    "stores: [{name: customers, source: customers, table: {}},\n"
    "         {name: order_count, source: orders, count: {}}]\n";

TEST(ParseTopologyTest, YamlAndJsonGiveTheSameTopology) {
  absl::StatusOr<Topology> from_yaml = ParseTopology(kGoodYaml, "shop.yaml");
  absl::StatusOr<Topology> from_json = ParseTopology(kGoodJson, "shop.json");
  ASSERT_THAT(from_yaml, IsOk());
  ASSERT_THAT(from_json, IsOk());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(*from_yaml, *from_json))
      << from_yaml->DebugString() << "\nvs\n"
      << from_json->DebugString();
  EXPECT_THAT(*from_yaml, EqualsTextProto(R"pb(
    application_id: "shop.v2"
    sources {
      topic: "customers"
      key_format: FORMAT_STRING
      value_format: FORMAT_STRING
      partitioner: PARTITIONER_MURMUR2
    }
    sources {
      topic: "orders"
      key_format: FORMAT_BYTES
      value_format: FORMAT_JSON
      partitioner: PARTITIONER_CONSISTENT
    }
    sources {
      topic: "payments"
      key_format: FORMAT_STRING
      value_format: FORMAT_STRING
      partitioner: PARTITIONER_MURMUR2
    }
    stores {
      name: "customers"
      source: "customers"
      table {}
    }
    stores {
      name: "order_count"
      source: "orders"
      count {}
    }
    stores {
      name: "payments.latest"
      source: "payments"
      table {}
    }
  )pb"));
}

// Found by fuzz/topology_fuzzer: yaml-cpp 0.7's LoadAll never returned on these (the same
// empty document, again and again, until memory ran out).
TEST(ParseTopologyTest, FlowEntryOutsideACollectionIsInvalidYamlNotAHang) {
  for (const char* text : {",", ", a", "\n  ,"}) {
    SCOPED_TRACE(text);
    EXPECT_THAT(ParseTopology(text, "t.yaml"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(StartsWith("t.yaml: line "), HasSubstr("invalid YAML"))));
  }
}

// Found by fuzz/topology_fuzzer: aliases of aliases expand exponentially as the file is mapped
// ("billion laughs"); 700 bytes of YAML took 2 minutes and 1.5 GB before the node budget.
TEST(ParseTopologyTest, AliasExpansionIsBounded) {
  std::string yaml =
      "application_id: a\n"
      "sources:\n"
      "  - topic: t\n"
      "    value_format: json\n"
      "stores:\n"
      "  - name: s\n"
      "    source: t\n"
      "    table: {}\n"
      "    filter:\n"
      "      all:\n"
      "        - &f0 {compare: {field: a, op: eq, number_value: 1}}\n";
  for (int i = 1; i < 7; ++i) {
    absl::StrAppend(&yaml, "        - &f", i, " {all: [");
    for (int j = 0; j < 10; ++j) absl::StrAppend(&yaml, j == 0 ? "" : ", ", "*f", i - 1);
    absl::StrAppend(&yaml, "]}\n");
  }
  const absl::Time start = absl::Now();
  EXPECT_THAT(
      ParseTopology(yaml, "laughs.yaml"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than 100000 YAML nodes")));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  // A few aliases are fine.
  EXPECT_THAT(ParseTopology("application_id: a\n"
                            "sources: [{topic: t, value_format: json}]\n"
                            "stores:\n"
                            "  - {name: s, source: t, table: {}, filter: &f {compare: "
                            "{field: a, op: eq, number_value: 1}}}\n"
                            "  - {name: u, source: t, count: {}, filter: *f}\n",
                            "aliases.yaml"),
              IsOk());
}

TEST(ParseTopologyTest, UnspecifiedFormatsAndPartitionerBecomeDefaults) {
  absl::StatusOr<Topology> topology = ParseTopology(
      "application_id: a\n"
      "sources: [{topic: t, key_format: unspecified, partitioner: PARTITIONER_UNSPECIFIED}]\n"
      "stores: [{name: s, source: t, count: {}}]\n",
      "t.yaml");
  ASSERT_THAT(topology, IsOk());
  EXPECT_EQ(topology->sources(0).key_format(), kiq::v1::FORMAT_STRING);
  EXPECT_EQ(topology->sources(0).value_format(), kiq::v1::FORMAT_STRING);
  EXPECT_EQ(topology->sources(0).partitioner(), kiq::v1::PARTITIONER_MURMUR2);
}

struct ErrorCase {
  const char* name;
  std::string yaml;
  const char* message;  // The whole status message.
};

TEST(ParseTopologyTest, EachMistakeIsReportedWithFileFieldPathAndReason) {
  const ErrorCase cases[] = {
      {"unknown field at depth",
       "application_id: a\nsources: [{topic: t}]\n"
       "stores: [{name: x, source: t, table: {}}, {name: y, sorce: t}]",
       "t.yaml: stores[1]: unknown field \"sorce\" (known: name, source, table, count, sum, min, "
       "max, "
       "latest, aggregate, filter, join, group_by, window)"},
      {"wrong type", "application_id: a\nsources: [{topic: t}]\nstores: [{name: {x: 1}}]",
       "t.yaml: stores[0].name: expected a string, found a mapping"},
      {"kind given a scalar",
       "application_id: a\nsources: [{topic: t}]\nstores: [{name: x, source: t, count: yes}]",
       "t.yaml: stores[0].count: expected a mapping (kiq.v1.CountSpec), found \"yes\" (write "
       "`count: {}`)"},
      {"bad enum name", "application_id: a\nsources: [{topic: t, value_format: jsn}]",
       "t.yaml: sources[0].value_format: unknown Format \"jsn\" "
       "(valid: unspecified, string, json, bytes, avro, protobuf, json_sr)"},
      {"bad partitioner name", "sources: [{topic: t, partitioner: random}]",
       "t.yaml: sources[0].partitioner: unknown Partitioner \"random\" "
       "(valid: unspecified, murmur2, consistent)"},
      {"oneof set twice",
       "application_id: a\nsources: [{topic: t}]\nstores: [{name: x, table: {}, count: {}}]",
       "t.yaml: stores[0]: \"table\" and \"count\" are both set, but only one of them may be "
       "(oneof kind)"},
      {"too many standby replicas",
       "application_id: a\nnum_standby_replicas: 4\nsources: [{topic: t}]\n"
       "stores: [{name: x, source: t, count: {}}]",
       "t.yaml: num_standby_replicas: is 4; expected 0 to 3 (each replica costs a node the disk "
       "and ingestion of a copy)"},
      {"duplicate store",
       "application_id: a\nsources: [{topic: t}]\n"
       "stores: [{name: x, source: t, table: {}}, {name: y, source: t, count: {}},\n"
       "         {name: z, source: t, count: {}}, {name: x, source: t, count: {}}]",
       "t.yaml: stores[3].name: duplicate store name \"x\" (also stores[0])"},
      {"unknown source reference",
       "application_id: a\nsources: [{topic: customers}, {topic: orders}]\n"
       "stores: [{name: c, source: customers, table: {}}, {name: o, source: ordrs, count: {}}]",
       "t.yaml: stores[1].source: unknown topic \"ordrs\" (declared sources: customers, orders)"},
      {"missing source reference",
       "application_id: a\nsources: [{topic: customers}, {topic: orders}]\n"
       "stores: [{name: c, table: {}}]",
       "t.yaml: stores[0].source: required; one of the declared sources: customers, orders"},
      {"missing kind",
       "application_id: a\nsources: [{topic: t}]\n"
       "stores: [{name: x, source: t, table: {}}, {name: y, source: t}]",
       "t.yaml: stores[1]: no kind set; one of: table, count, sum, min, max, latest, aggregate"},
      {"missing application_id", "sources: [{topic: t}]\nstores: [{name: x, source: t, count: {}}]",
       "t.yaml: application_id: required; it names the Kafka consumer group and prefixes kiq's "
       "internal topics"},
      {"bad application_id",
       "application_id: my app\nsources: [{topic: t}]\nstores: [{name: x, source: t, count: {}}]",
       "t.yaml: application_id: \"my app\" contains \" \"; only letters, digits, '.', '_' and "
       "'-' are allowed (it prefixes Kafka topic names)"},
      {"application_id too long",
       absl::StrCat("application_id: ", std::string(201, 'a'),
                    "\nsources: [{topic: t}]\nstores: [{name: x, source: t, count: {}}]"),
       "t.yaml: application_id: is 201 characters long; at most 200 are allowed so that "
       "internal topic names stay within Kafka's limit"},
      {"no sources and no stores", "application_id: a\nsources: []\nstores:",
       "t.yaml: sources: at least one source is required\n"
       "t.yaml: stores: at least one store is required"},
      {"missing topic",
       "application_id: a\nsources: [{value_format: json}, {topic: t}]\n"
       "stores: [{name: x, source: t, count: {}}]",
       "t.yaml: sources[0].topic: required"},
      {"bad topic",
       "application_id: a\nsources: [{topic: t}, {topic: a/b}]\n"
       "stores: [{name: x, source: t, count: {}}]",
       "t.yaml: sources[1].topic: \"a/b\" contains \"/\"; only letters, digits, '.', '_' and "
       "'-' are allowed"},
      {"topic '..'",
       "application_id: a\nsources: [{topic: t}, {topic: ..}]\n"
       "stores: [{name: x, source: t, count: {}}]",
       "t.yaml: sources[1].topic: \"..\" is not a valid topic name"},
      {"duplicate topic",
       "application_id: a\nsources: [{topic: t}, {topic: u}, {topic: t}]\n"
       "stores: [{name: x, source: t, count: {}}]",
       "t.yaml: sources[2].topic: duplicate topic \"t\" (also sources[0])"},
      {"missing store name",
       "application_id: a\nsources: [{topic: t}]\nstores: [{source: t, count: {}}]",
       "t.yaml: stores[0].name: required"},
      {"bad store name",
       "application_id: a\nsources: [{topic: t}]\nstores: [{name: 'a b', source: t, count: {}}]",
       "t.yaml: stores[0].name: \"a b\" contains \" \"; only letters, digits, '.', '_' and '-' "
       "are allowed"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseTopology(c.yaml, "t.yaml"),
                StatusIs(absl::StatusCode::kInvalidArgument, Eq(c.message)));
  }
}

TEST(ParseTopologyTest, LongNamesAreCheckedAgainstKafkasTopicLimit) {
  EXPECT_THAT(
      ParseTopology(absl::StrCat("application_id: a\nsources: [{topic: ", std::string(250, 't'),
                                 "}]\nstores: [{name: x, source: t, count: {}}]"),
                    "t.yaml"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("t.yaml: sources[0].topic: topic name is 250 characters long; Kafka "
                         "allows at most 249")));
  // 200 + "-" + 38 + "-changelog" = 249 fits; one more character does not.
  const std::string id(200, 'a');
  EXPECT_THAT(ParseTopology(absl::StrCat("application_id: ", id, "\nsources: [{topic: t}]\n",
                                         "stores: [{name: ", std::string(38, 's'),
                                         ", source: t, count: {}}]"),
                            "t.yaml"),
              IsOk());
  EXPECT_THAT(ParseTopology(absl::StrCat("application_id: ", id, "\nsources: [{topic: t}]\n",
                                         "stores: [{name: ", std::string(39, 's'),
                                         ", source: t, count: {}}]"),
                            "t.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(StartsWith("t.yaml: stores[0].name: too long: the internal topic \""),
                             HasSubstr("\" would be 250 characters; Kafka allows at most 249"))));
}

TEST(ParseTopologyTest, AllValidationProblemsAreReportedOnePerLine) {
  EXPECT_THAT(ParseTopology("application_id: a\nsources: [{topic: t}, {topic: t}]\n"
                            "stores: [{name: x, source: nope}, {name: x, source: t, count: {}}]",
                            "t.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("t.yaml: sources[1].topic: duplicate topic \"t\" (also sources[0])\n"
                          "t.yaml: stores[0].source: unknown topic \"nope\" (declared sources: t)\n"
                          "t.yaml: stores[0]: no kind set; one of: table, count, sum, min, max, "
                          "latest, aggregate\n"
                          "t.yaml: stores[1].name: duplicate store name \"x\" (also stores[0])")));
}

// Sources of every value format, for the aggregate and filter cases.
constexpr char kFormats[] =
    "application_id: a\n"
    "sources: [{topic: j, value_format: json}, {topic: s}, {topic: b, value_format: bytes}]\n";

TEST(ParseTopologyTest, AggregatesAndFiltersParse) {
  absl::StatusOr<Topology> topology = ParseTopology(
      absl::StrCat(kFormats,
                   "stores:\n"
                   "  - {name: total, source: j, sum: {field: order.amount, type: double}}\n"
                   "  - {name: n, source: s, sum: {}}\n"
                   "  - {name: lo, source: j, min: {field: x}}\n"
                   "  - {name: hi, source: j, max: {field: x, type: int64}}\n"
                   "  - {name: last, source: j, latest: {field: avatar}}\n"
                   "  - name: big\n"
                   "    source: j\n"
                   "    count: {}\n"
                   "    filter:\n"
                   "      all:\n"
                   "        - {compare: {field: amount, op: gt, number_value: 100}}\n"
                   "        - any: [{compare: {field: c.id, op: eq, string_value: '7'}},\n"
                   "                {compare: {field: vip, op: ne, bool_value: false}}]\n"
                   "  - {name: yes, source: s, table: {}, filter: {compare: {op: ge, "
                   "string_value: m}}}\n"),
      "t.yaml");
  ASSERT_THAT(topology, IsOk());
  EXPECT_THAT(topology->stores(0).sum(), EqualsTextProto(R"pb(field: "order.amount"
                                                              type: NUMBER_TYPE_DOUBLE)pb"));
  EXPECT_THAT(topology->stores(5).filter(), EqualsTextProto(R"pb(
                all { compare { field: "amount" op: OP_GT number_value: 100 } }
                all {
                  any { compare { field: "c.id" op: OP_EQ string_value: "7" } }
                  any { compare { field: "vip" op: OP_NE bool_value: false } }
                }
              )pb"));
  EXPECT_EQ(topology->stores(6).filter().compare().op(), kiq::v1::Comparison::OP_GE);
}

TEST(ParseTopologyTest, AggregateAndFilterMistakesNameTheirFieldPath) {
  const ErrorCase cases[] = {
      {"sum over bytes", "stores: [{name: x, source: b, sum: {}}]",
       "t.yaml: stores[0].sum: a numeric store needs a JSON or STRING source; source \"b\" has "
       "value_format bytes"},
      {"max over bytes", "stores: [{name: x, source: b, max: {type: double}}]",
       "t.yaml: stores[0].max: a numeric store needs a JSON or STRING source; source \"b\" has "
       "value_format bytes"},
      {"empty path segment", "stores: [{name: x, source: j, sum: {field: a..b}}]",
       "t.yaml: stores[0].sum.field: \"a..b\" is not a field path: expected names separated by "
       "single dots, e.g. \"points\" or \"customer.id\""},
      {"trailing dot", "stores: [{name: x, source: j, min: {field: 'a.'}}]",
       "t.yaml: stores[0].min.field: \"a.\" is not a field path: expected names separated by "
       "single dots, e.g. \"points\" or \"customer.id\""},
      {"field of a string source", "stores: [{name: x, source: s, sum: {field: points}}]",
       "t.yaml: stores[0].sum.field: a field path needs a JSON source; source \"s\" has "
       "value_format string (leave field empty to read the whole value)"},
      {"latest without field", "stores: [{name: x, source: j, latest: {}}]",
       "t.yaml: stores[0].latest.field: required; the JSON field whose latest value is kept, "
       "e.g. \"avatar\" or \"customer.id\""},
      {"latest over a string source", "stores: [{name: x, source: s, latest: {field: a}}]",
       "t.yaml: stores[0].latest: latest needs a JSON source; source \"s\" has value_format "
       "string (a table keeps whole values)"},
      {"bad number type", "stores: [{name: x, source: j, sum: {type: float}}]",
       "t.yaml: stores[0].sum.type: unknown NumberType \"float\" (valid: unspecified, int64, "
       "double)"},
      {"empty filter", "stores: [{name: x, source: j, count: {}, filter: {}}]",
       "t.yaml: stores[0].filter: empty filter; set all, any or compare"},
      {"empty nested filter",
       "stores: [{name: x, source: j, count: {}, filter: {all: [{compare: {field: a, op: eq, "
       "number_value: 1}}, {any: [{}]}]}}]",
       "t.yaml: stores[0].filter.all[1].any[0]: empty filter; set all, any or compare"},
      {"comparison without op",
       "stores: [{name: x, source: j, count: {}, filter: {any: [{compare: {field: a, "
       "string_value: v}}]}}]",
       "t.yaml: stores[0].filter.any[0].compare.op: required; one of eq, ne, lt, le, gt, ge"},
      {"comparison without value",
       "stores: [{name: x, source: j, count: {}, filter: {compare: {field: a, op: lt}}}]",
       "t.yaml: stores[0].filter.compare: no value set; one of string_value, number_value, "
       "bool_value"},
      {"comparison with two values",
       "stores: [{name: x, source: j, count: {}, filter: {compare: {field: a, op: lt, "
       "number_value: 1, string_value: b}}}]",
       "t.yaml: stores[0].filter.compare: \"number_value\" and \"string_value\" are both set, "
       "but only one of them may be (oneof value)"},
      {"bad op", "stores: [{name: x, source: j, count: {}, filter: {compare: {op: like}}}]",
       "t.yaml: stores[0].filter.compare.op: unknown Op \"like\" (valid: unspecified, eq, ne, "
       "lt, le, gt, ge)"},
      {"filter field on a string source",
       "stores: [{name: x, source: s, table: {}, filter: {compare: {field: a, op: eq, "
       "string_value: v}}}]",
       "t.yaml: stores[0].filter.compare.field: a field path needs a JSON source; source \"s\" "
       "has value_format string (leave field empty to read the whole value)"},
      {"filter on a bytes source",
       "stores: [{name: x, source: b, table: {}, filter: {compare: {op: eq, string_value: v}}}]",
       "t.yaml: stores[0].filter: a filter needs a JSON or STRING source; source \"b\" has "
       "value_format bytes"},
      {"bad filter path",
       "stores: [{name: x, source: j, sum: {field: a}, filter: {compare: {field: .a, op: eq, "
       "number_value: 1}}}]",
       "t.yaml: stores[0].filter.compare.field: \".a\" is not a field path: expected names "
       "separated by single dots, e.g. \"points\" or \"customer.id\""},
      {"non-finite number",
       "stores: [{name: x, source: j, count: {}, filter: {compare: {field: a, op: eq, "
       "number_value: .nan}}}]",
       "t.yaml: stores[0].filter.compare.number_value: must be a finite number"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseTopology(absl::StrCat(kFormats, c.yaml), "t.yaml"),
                StatusIs(absl::StatusCode::kInvalidArgument, Eq(c.message)));
  }
}

TEST(ParseTopologyTest, AggregateColumnsParse) {
  absl::StatusOr<Topology> topology = ParseTopology(
      absl::StrCat(kFormats,
                   "stores:\n"
                   "  - name: players\n"
                   "    source: j\n"
                   "    aggregate:\n"
                   "      columns:\n"
                   "        - {name: points, sum: {field: points}}\n"
                   "        - {name: plays, count: {}}\n"
                   "        - {name: best, max: {field: points, type: double}}\n"
                   "        - {name: avatar, latest: {field: avatar}}\n"
                   "        - {name: mean, avg: {field: points}}\n"
                   "        - {name: top3, top_k: {field: points, k: 3}}\n"
                   "  - {name: n, source: s, aggregate: {columns: [{name: n, count: {}}, "
                   "{name: total, sum: {}}]}}\n"),
      "t.yaml");
  ASSERT_THAT(topology, IsOk());
  EXPECT_THAT(topology->stores(0).aggregate(), EqualsTextProto(R"pb(
                columns { name: "points" sum { field: "points" } }
                columns { name: "plays" count {} }
                columns { name: "best" max { field: "points" type: NUMBER_TYPE_DOUBLE } }
                columns { name: "avatar" latest { field: "avatar" } }
                columns { name: "mean" avg { field: "points" } }
                columns { name: "top3" top_k { field: "points" k: 3 } }
              )pb"));
}

TEST(ParseTopologyTest, AggregateColumnMistakesNameTheirFieldPath) {
  const ErrorCase cases[] = {
      {"no columns", "stores: [{name: x, source: j, aggregate: {}}]",
       "t.yaml: stores[0].aggregate.columns: required; at least one column, e.g. {name: plays, "
       "count: {}} or {name: points, sum: {field: points}}"},
      {"column without name", "stores: [{name: x, source: j, aggregate: {columns: [{count: {}}]}}]",
       "t.yaml: stores[0].aggregate.columns[0].name: required; a column name is 1-128 of "
       "[A-Za-z0-9_], not starting with a digit"},
      {"bad column name",
       "stores: [{name: x, source: j, aggregate: {columns: [{name: 'a b', count: {}}]}}]",
       "t.yaml: stores[0].aggregate.columns[0].name: \"a b\" is invalid; a column name is 1-128 "
       "of [A-Za-z0-9_], not starting with a digit"},
      {"repeated column name",
       "stores: [{name: x, source: j, aggregate: {columns: [{name: n, count: {}}, {name: n, "
       "sum: {field: a}}]}}]",
       "t.yaml: stores[0].aggregate.columns[1].name: \"n\" is already the name of another "
       "column"},
      {"column without aggregate",
       "stores: [{name: x, source: j, aggregate: {columns: [{name: n}]}}]",
       "t.yaml: stores[0].aggregate.columns[0]: no aggregate set; one of: count, sum, min, max, "
       "latest, avg, top_k, count_distinct"},
      {"count_distinct without field",
       "stores: [{name: x, source: j, aggregate: {columns: [{name: d, count_distinct: {}}]}}]",
       "t.yaml: stores[0].aggregate.columns[0].count_distinct.field: required; the JSON field "
       "whose distinct values are counted, e.g. \"game\" or \"customer.id\""},
      {"count_distinct over a string source",
       "stores: [{name: x, source: s, aggregate: {columns: [{name: d, count_distinct: {field: "
       "a}}]}}]",
       "t.yaml: stores[0].aggregate.columns[0].count_distinct: count_distinct needs a JSON "
       "source; source \"s\" has value_format string"},
      {"top_k without k",
       "stores: [{name: x, source: j, aggregate: {columns: [{name: t, top_k: {field: a}}]}}]",
       "t.yaml: stores[0].aggregate.columns[0].top_k.k: is 0; expected 1 to 1000 (how many of "
       "the largest values are kept)"},
      {"avg over bytes",
       "stores: [{name: x, source: b, aggregate: {columns: [{name: m, avg: {}}]}}]",
       "t.yaml: stores[0].aggregate.columns[0].avg: a numeric store needs a JSON or STRING "
       "source; source \"b\" has value_format bytes"},
      {"latest column over a string source",
       "stores: [{name: x, source: s, aggregate: {columns: [{name: l, latest: {field: a}}]}}]",
       "t.yaml: stores[0].aggregate.columns[0].latest: latest needs a JSON source; source \"s\" "
       "has value_format string (a table keeps whole values)"},
      {"bad column field",
       "stores: [{name: x, source: j, aggregate: {columns: [{name: m, max: {field: a..b}}]}}]",
       "t.yaml: stores[0].aggregate.columns[0].max.field: \"a..b\" is not a field path: "
       "expected names separated by single dots, e.g. \"points\" or \"customer.id\""},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseTopology(absl::StrCat(kFormats, c.yaml), "t.yaml"),
                StatusIs(absl::StatusCode::kInvalidArgument, Eq(c.message)));
  }
}

TEST(ParseTopologyTest, WindowsParseOnAggregates) {
  absl::StatusOr<Topology> topology = ParseTopology(
      absl::StrCat(kFormats,
                   "stores:\n"
                   "  - {name: t, source: j, count: {}, window: {size: 30s}}\n"
                   "  - {name: h, source: j, sum: {field: a}, window: {size: 1m, advance: 20s, "
                   "grace: 5s, retention: 2h}}\n"
                   "  - {name: l, source: j, latest: {field: a}, window: {size: 1h}}\n"),
      "t.yaml");
  ASSERT_THAT(topology, IsOk());
  EXPECT_EQ(topology->stores(1).window().advance(), "20s");
  EXPECT_EQ(topology->stores(2).window().size(), "1h");
}

TEST(ParseTopologyTest, WindowMistakesNameTheirFieldPath) {
  const ErrorCase cases[] = {
      {"windowed table", "stores: [{name: x, source: j, table: {}, window: {size: 1s}}]",
       "t.yaml: stores[0].window: a table cannot be windowed; windows apply to count, sum, min, "
       "max, latest and aggregate"},
      {"no size", "stores: [{name: x, source: j, count: {}, window: {grace: 1s}}]",
       "t.yaml: stores[0].window.size: required, e.g. \"30s\""},
      {"bad duration", "stores: [{name: x, source: j, count: {}, window: {size: 30 seconds}}]",
       "t.yaml: stores[0].window.size: \"30 seconds\" is not a duration (write e.g. \"500ms\", "
       "\"30s\", \"5m\", \"1h\")"},
      {"zero size", "stores: [{name: x, source: j, count: {}, window: {size: 0s}}]",
       "t.yaml: stores[0].window.size: must be > 0, got \"0s\""},
      {"negative grace",
       "stores: [{name: x, source: j, count: {}, window: {size: 1s, grace: -1s}}]",
       "t.yaml: stores[0].window.grace: must be >= 0, got \"-1s\""},
      {"advance beyond size",
       "stores: [{name: x, source: j, count: {}, window: {size: 1s, advance: 2s}}]",
       "t.yaml: stores[0].window.advance: must be <= size (1s), got \"2s\""},
      {"too many windows per record",
       "stores: [{name: x, source: j, count: {}, window: {size: 24h, advance: 1ms}}]",
       "t.yaml: stores[0].window.advance: puts each record in 86400000 windows (size 24h / "
       "advance 1ms); at most 1000 are allowed: use an advance of at least 86400ms"},
      {"one window too many per record",
       "stores: [{name: x, source: j, count: {}, window: {size: 1001ms, advance: 1ms}}]",
       "t.yaml: stores[0].window.advance: puts each record in 1001 windows (size 1001ms / "
       "advance 1ms); at most 1000 are allowed: use an advance of at least 2ms"},
      {"short retention",
       "stores: [{name: x, source: j, count: {}, window: {size: 1m, grace: 1m, retention: 90s}}]",
       "t.yaml: stores[0].window.retention: must be >= size + grace (120000ms) so that every "
       "window is kept until it closes, got \"90s\""},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseTopology(absl::StrCat(kFormats, c.yaml), "t.yaml"),
                StatusIs(absl::StatusCode::kInvalidArgument, Eq(c.message)));
  }
}

TEST(ParseTopologyTest, ManyProblemsAreCapped) {
  std::string yaml = "application_id: a\nsources: [{topic: t}]\nstores:\n";
  for (int i = 0; i < 30; ++i) yaml += "  - {name: s, source: t}\n";
  const absl::StatusOr<Topology> topology = ParseTopology(yaml, "t.yaml");
  ASSERT_THAT(topology, StatusIs(absl::StatusCode::kInvalidArgument,
                                 HasSubstr("\nt.yaml: ... and 39 more problems")));
}

TEST(ParseTopologyTest, YamlSyntaxErrorGivesLineAndColumn) {
  EXPECT_THAT(ParseTopology("application_id: a\nsources:\n  - topic: t\n bad: 1\n", "t.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("t.yaml: line 4, column 2: invalid YAML: ")));
  EXPECT_THAT(ParseTopology("application_id: a\nsources: [{topic: t}\n", "t.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       StartsWith("t.yaml: line 3, column 1: invalid YAML: ")));
}

TEST(ParseTopologyTest, EmptyOrMultiDocumentFilesAreRefused) {
  for (const char* text : {"", "# nothing\n", "~\n"}) {
    SCOPED_TRACE(text);
    EXPECT_THAT(ParseTopology(text, "t.yaml"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         Eq("t.yaml: the topology is empty; expected application_id, sources "
                            "and stores")));
  }
  EXPECT_THAT(ParseTopology(absl::StrCat(kValidFlow, "---\n", kValidFlow), "t.yaml"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("t.yaml: expected one YAML document, found 2")));
  EXPECT_THAT(ParseTopology(absl::StrCat("---\n", kValidFlow), "t.yaml"), IsOk());
}

TEST(ParseTopologyTest, TopLevelMustBeAMapping) {
  EXPECT_THAT(ParseTopology("[1, 2]", "t.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("t.json: expected a mapping (kiq.v1.Topology), found a sequence")));
}

TEST(ValidateTopologyTest, AcceptsUnspecifiedEnumsInATopologyBuiltInCode) {
  Topology topology;
  ASSERT_TRUE(google::protobuf::TextFormat::ParseFromString(
      R"pb(
        application_id: "a"
        sources { topic: "t" }
        stores {
          name: "s"
          source: "t"
          table {}
        }
      )pb",
      &topology));
  EXPECT_THAT(ValidateTopology(topology), IsOk());
}

TEST(ValidateTopologyTest, RefusesEnumNumbersOutsideTheSchema) {
  Topology topology;
  topology.set_application_id("a");
  kiq::v1::Source* source = topology.add_sources();
  source->set_topic("t");
  source->set_value_format(static_cast<kiq::v1::Format>(7));
  source->set_partitioner(static_cast<kiq::v1::Partitioner>(9));
  kiq::v1::Store* store = topology.add_stores();
  store->set_name("s");
  store->set_source("t");
  store->mutable_count();
  EXPECT_THAT(ValidateTopology(topology),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq("sources[0].value_format: unknown format 7\n"
                          "sources[0].partitioner: unknown partitioner 9")));
}

// When a kind is added to Store.kind, validation must learn it too; until then such stores
// are refused as unsupported, which this test catches.
TEST(ValidateTopologyTest, EveryStoreKindInTheSchemaHasAValidationRule) {
  const google::protobuf::OneofDescriptor* kind =
      kiq::v1::Store::descriptor()->FindOneofByName("kind");
  ASSERT_NE(kind, nullptr);
  for (int i = 0; i < kind->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* field = kind->field(i);
    SCOPED_TRACE(field->name());
    Topology topology;
    topology.set_application_id("a");
    topology.add_sources()->set_topic("t");
    kiq::v1::Store* store = topology.add_stores();
    store->set_name("s");
    store->set_source("t");
    store->GetReflection()->MutableMessage(store, field);
    EXPECT_THAT(ValidateTopology(topology),
                ::testing::Not(StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("does not support this store kind"))));
  }
}

class LoadTopologyFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::path(::testing::TempDir()) /
           absl::StrCat("kiq_topology_config_test_", ::getpid());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string Write(const std::string& name, const std::string& text) {
    const std::filesystem::path path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  std::filesystem::path dir_;
};

TEST_F(LoadTopologyFileTest, ReadsAFile) {
  absl::StatusOr<Topology> topology = LoadTopologyFile(Write("topology.yaml", kGoodYaml));
  ASSERT_THAT(topology, IsOk());
  EXPECT_EQ(topology->application_id(), "shop.v2");
}

TEST_F(LoadTopologyFileTest, MissingFileIsNotFoundNamingThePath) {
  const std::string path = (dir_ / "absent.yaml").string();
  EXPECT_THAT(LoadTopologyFile(path),
              StatusIs(absl::StatusCode::kNotFound,
                       StartsWith(absl::StrCat(path, ": cannot read the topology file: "))));
}

TEST_F(LoadTopologyFileTest, DirectoryIsRefusedNamingThePath) {
  EXPECT_THAT(LoadTopologyFile(dir_.string()), ::testing::Not(IsOk()));
  EXPECT_THAT(std::string(LoadTopologyFile(dir_.string()).status().message()),
              StartsWith(dir_.string()));
}

TEST_F(LoadTopologyFileTest, ErrorsStartWithThePath) {
  const std::string path = Write("bad.json", R"({"application_id": "a", "sources": [})");
  const std::string bad = Write("bad.yaml",
                                "application_id: a\nsources: [{topic: t}]\n"
                                "stores: [{name: s, source: ordrs, table: {}}]\n");
  EXPECT_THAT(LoadTopologyFile(bad),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       Eq(absl::StrCat(bad,
                                       ": stores[0].source: unknown topic \"ordrs\" "
                                       "(declared sources: t)"))));
  EXPECT_THAT(LoadTopologyFile(path),
              StatusIs(absl::StatusCode::kInvalidArgument, StartsWith(path + ": line ")));
}

TEST(ExampleTopologyTest, ShopExampleLoadsWithItsWindows) {
  absl::StatusOr<Topology> topology =
      LoadTopologyFile(KIQ_SOURCE_DIR "/examples/shop/topology.yaml");
  ASSERT_THAT(topology, IsOk());
  ASSERT_EQ(topology->stores_size(), 6);
  EXPECT_EQ(topology->stores(0).window().size(), "30s");
  EXPECT_EQ(topology->stores(1).window().advance(), "30s");
  EXPECT_TRUE(topology->stores(2).has_sum());
  EXPECT_FALSE(topology->stores(3).has_window());
  // Join, group_by and a window together.
  const auto& per_city = topology->stores(5);
  EXPECT_EQ(per_city.join().table(), "customers");
  EXPECT_EQ(per_city.group_by().field(), "customer.city");
  EXPECT_EQ(per_city.window().size(), "30m");
}

TEST(ExampleTopologyTest, BookInteractionsExampleLoadsWithItsJoinsOnAField) {
  absl::StatusOr<Topology> topology =
      LoadTopologyFile(KIQ_SOURCE_DIR "/examples/book-interactions/topology.yaml");
  ASSERT_THAT(topology, IsOk());
  ASSERT_EQ(topology->stores_size(), 5);
  for (int i = 1; i < 5; ++i) {
    EXPECT_EQ(topology->stores(i).join().table(), "books");
    EXPECT_EQ(topology->stores(i).join().by().field(), "book_id");
  }
  EXPECT_EQ(topology->stores(3).group_by().field(), "book.genre");
  EXPECT_EQ(topology->stores(3).filter().compare().field(), "interaction.event");
  EXPECT_EQ(topology->stores(4).sum().field(), "interaction.quantity");
}

TEST(ExampleTopologyTest, OrdersExampleLoads) {
  absl::StatusOr<Topology> topology =
      LoadTopologyFile(KIQ_SOURCE_DIR "/examples/orders/topology.yaml");
  ASSERT_THAT(topology, IsOk());
  EXPECT_THAT(*topology, EqualsTextProto(R"pb(
    application_id: "orders-demo"
    num_standby_replicas: 1
    sources {
      topic: "customers"
      key_format: FORMAT_STRING
      value_format: FORMAT_STRING
      partitioner: PARTITIONER_MURMUR2
    }
    sources {
      topic: "orders"
      key_format: FORMAT_STRING
      value_format: FORMAT_STRING
      partitioner: PARTITIONER_MURMUR2
    }
    stores {
      name: "customers"
      source: "customers"
      table {}
    }
    stores {
      name: "order_count"
      source: "orders"
      count {}
    }
  )pb"));
}

}  // namespace

TEST(ParseTopologyTest, JoinAndGroupByMistakesAreRefusedWithTheirPath) {
  const std::string sources =
      "application_id: a\n"
      "sources: [{topic: orders}, {topic: customers, value_format: json},"
      " {topic: blobs, value_format: bytes}, {topic: crc, partitioner: consistent}]\n";
  const ErrorCase cases[] = {
      {"join of an unknown store",
       sources + "stores: [{name: c, source: orders, count: {}, join: {table: nope}}]",
       "t.yaml: stores[0].join.table: unknown store \"nope\""},
      {"join without a table", sources + "stores: [{name: c, source: orders, count: {}, join: {}}]",
       "t.yaml: stores[0].join.table: required; the name of a table store to join with"},
      {"join of a count",
       sources + "stores: [{name: n, source: customers, count: {}},"
                 " {name: c, source: orders, count: {}, join: {table: n}}]",
       "t.yaml: stores[1].join.table: store \"n\" is not a plain table (a table store without "
       "join or group_by)"},
      {"join of non-co-partitioned topics",
       sources + "stores: [{name: t, source: crc, table: {}},"
                 " {name: c, source: orders, count: {}, join: {table: t}}]",
       "t.yaml: stores[1].join.table: not co-partitioned: source \"orders\" uses "
       "PARTITIONER_MURMUR2 but table \"t\"'s source \"crc\" uses PARTITIONER_CONSISTENT"},
      {"join of a bytes stream",
       sources + "stores: [{name: t, source: customers, table: {}},"
                 " {name: c, source: blobs, count: {}, join: {table: t}}]",
       "t.yaml: stores[1].join: a join needs a JSON or STRING source; source \"blobs\" has "
       "value_format bytes"},
      {"join sides with the same name",
       sources + "stores: [{name: t, source: customers, table: {}},"
                 " {name: c, source: orders, count: {}, join: {table: t, source_as: x,"
                 " table_as: x}}]",
       "t.yaml: stores[1].join.table_as: both sides of the joined value would be named \"x\"; "
       "set source_as or table_as"},
      {"join side with a dot",
       sources + "stores: [{name: t, source: customers, table: {}},"
                 " {name: c, source: orders, count: {}, join: {table: t, table_as: a.b}}]",
       "t.yaml: stores[1].join.table_as: \"a.b\" cannot name a side of the joined value (field "
       "paths split on '.'); set table_as to a name without dots"},
      {"group_by a table",
       sources + "stores: [{name: t, source: customers, table: {}, group_by: {field: city}}]",
       "t.yaml: stores[0].group_by: a table cannot be grouped; group_by needs an aggregate: "
       "count, sum, min, max, latest or aggregate"},
      {"group_by without a field on JSON",
       sources + "stores: [{name: c, source: customers, count: {}, group_by: {}}]",
       "t.yaml: stores[0].group_by.field: required (or fields, or constant); the JSON field "
       "whose value becomes the key"},
      {"group_by with a field and a constant",
       sources + "stores: [{name: c, source: customers, count: {},"
                 " group_by: {field: city, constant: all}}]",
       "t.yaml: stores[0].group_by: set only one of field, fields and constant"},
      {"group_by on one of fields",
       sources + "stores: [{name: c, source: customers, count: {}, group_by: {fields: [city]}}]",
       "t.yaml: stores[0].group_by.fields: needs two or more paths (use field for one)"},
      {"group_by on a bad path of fields",
       sources + "stores: [{name: c, source: customers, count: {},"
                 " group_by: {fields: [city, \"a..b\"]}}]",
       "t.yaml: stores[0].group_by.fields[1]: \"a..b\" is not a field path: expected names "
       "separated by single dots, e.g. \"points\" or \"customer.id\""},
      {"group_by separator without fields",
       sources + "stores: [{name: c, source: customers, count: {},"
                 " group_by: {field: city, separator: \"/\"}}]",
       "t.yaml: stores[0].group_by.separator: only with fields (it joins their values)"},
      {"join on a field of a string stream",
       sources + "stores: [{name: t, source: customers, table: {}},"
                 " {name: c, source: orders, count: {}, join: {table: t, by: {field: book_id}}}]",
       "t.yaml: stores[1].join.by.field: a field path needs a JSON source; source \"orders\" "
       "has value_format string (leave field empty to read the whole value)"},
      {"join on a bad field path",
       sources + "stores: [{name: t, source: orders, table: {}},"
                 " {name: c, source: customers, count: {}, join: {table: t, by: {field: \"a..b\"}}}]",
       "t.yaml: stores[1].join.by.field: \"a..b\" is not a field path: expected names "
       "separated by single dots, e.g. \"points\" or \"customer.id\""},
      {"join on no field of a JSON stream",
       sources + "stores: [{name: t, source: orders, table: {}},"
                 " {name: c, source: customers, count: {}, join: {table: t, by: {}}}]",
       "t.yaml: stores[1].join.by.field: required (or fields, or constant); the JSON field "
       "whose value becomes the key"},
      {"join on a field with an unknown table",
       sources + "stores: [{name: c, source: customers, count: {},"
                 " join: {table: books, by: {field: book_id}}}]",
       "t.yaml: stores[0].join.table: unknown store \"books\""},
      {"join on a field with a JSON-keyed table",
       "application_id: a\n"
       "sources: [{topic: views, value_format: json},"
       " {topic: books, key_format: json, value_format: json}]\n"
       "stores: [{name: b, source: books, table: {}},"
       " {name: c, source: views, count: {}, join: {table: b, by: {field: book_id}}}]",
       "t.yaml: stores[1].join.by: table \"b\"'s source \"books\" has key_format json; a join "
       "on a field looks the field's text up as the table's key, so the table needs string (or "
       "bytes) keys"},
      {"group_by a path of a string source",
       sources + "stores: [{name: c, source: orders, count: {}, group_by: {field: city}}]",
       "t.yaml: stores[0].group_by.field: a field path needs a JSON source; source \"orders\" "
       "has value_format string (leave field empty to read the whole value)"},
  };
  for (const ErrorCase& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_THAT(ParseTopology(c.yaml, "t.yaml"),
                StatusIs(absl::StatusCode::kInvalidArgument, Eq(c.message)));
  }
  // A joined value is JSON: a string stream joined with a table can be grouped by a path.
  // A join on a field (a JSON stream: purchases joined with customers on customer_id, then
  // grouped by a field of the joined value), even with a table partitioned otherwise.
  EXPECT_THAT(ParseTopology(sources + "stores: [{name: t, source: crc, table: {}},"
                                      " {name: c, source: customers, count: {},"
                                      " join: {table: t, table_as: t, by: {field: customer.id}},"
                                      " group_by: {field: t}}]",
                            "t.yaml"),
              IsOk());

  EXPECT_THAT(ParseTopology(sources + "stores: [{name: t, source: customers, table: {}},"
                                      " {name: c, source: orders, count: {},"
                                      " join: {table: t, table_as: customer},"
                                      " group_by: {field: customer.city}}]",
                            "t.yaml"),
              IsOk());
}

}  // namespace kiq
