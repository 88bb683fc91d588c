#include "common/topology/topology_config.h"
#include "common/topology/window.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/topology/formats.h"
#include "common/topology/json_value.h"
#include "common/topology/yaml_proto.h"
#include "google/protobuf/descriptor.h"
#include "kiq/v1/topology.pb.h"
#include "yaml-cpp/eventhandler.h"
#include "yaml-cpp/yaml.h"

namespace kiq {
namespace {

// Notes where each document of a YAML stream starts (its first node), to tell a parser that
// moves on from one that reports the same document again (see ParseTopology).
class DocumentCounter : public YAML::EventHandler {
 public:
  // The document just read starts where the one before it did: the parser made no progress.
  bool stuck() const { return documents_ > 1 && start_.pos <= previous_start_.pos; }
  const YAML::Mark& start() const { return start_; }

  void OnDocumentStart(const YAML::Mark&) override {
    previous_start_ = start_;
    ++documents_;
    seen_node_ = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnMapEnd() override {}

 private:
  void Node(const YAML::Mark& mark) {
    if (seen_node_) return;
    seen_node_ = true;
    start_ = mark;
  }

  int documents_ = 0;
  bool seen_node_ = false;
  YAML::Mark start_ = YAML::Mark::null_mark();
  YAML::Mark previous_start_ = YAML::Mark::null_mark();
};

using kiq::v1::Source;
using kiq::v1::Store;
using kiq::v1::Topology;

// Kafka refuses longer topic names (org.apache.kafka.common.internals.Topic).
constexpr size_t kMaxTopicLength = 249;
// The application id prefixes internal topics (<id>-members, <id>-dlq, <id>-<store>-changelog);
// the cap leaves room for those suffixes.
constexpr size_t kMaxApplicationIdLength = 200;
constexpr int32_t kMaxStandbyReplicas = 3;
constexpr absl::string_view kChangelogSuffix = "-changelog";
constexpr absl::string_view kRepartitionSuffix = "-repartition";
constexpr absl::string_view kJoinRepartitionSuffix = "-join-repartition";
// Beyond this, further problems are likely consequences of the first ones.
constexpr size_t kMaxReportedProblems = 20;

absl::string_view View(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", absl::Utf8SafeCHexEscape(text), "\"");
}

// Kafka's legal topic characters, also used for store names so that every name can appear in
// a topic, a column family and a URL unchanged.
bool IsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

// Why `name` cannot be used where Kafka topic characters are required, or "" if it can.
std::string NameCharProblem(absl::string_view name) {
  for (char c : name) {
    if (!IsNameChar(c)) {
      return absl::StrCat(Quote(name), " contains ", Quote(absl::string_view(&c, 1)),
                          "; only letters, digits, '.', '_' and '-' are allowed");
    }
  }
  return "";
}

std::string TopicNameProblem(absl::string_view topic) {
  if (topic == "." || topic == "..") {
    return absl::StrCat(Quote(topic), " is not a valid topic name");
  }
  if (topic.size() > kMaxTopicLength) {
    return absl::StrCat("topic name is ", topic.size(), " characters long; Kafka allows at most ",
                        kMaxTopicLength);
  }
  return NameCharProblem(topic);
}

// What the per-kind checks may look at: the declared sources and stores, by name.
struct TopologyIndex {
  std::map<std::string, int> source_by_topic;  // First declaration of each topic.
  std::map<std::string, int> store_by_name;    // First declaration of each name.
  std::string declared_sources;                // "customers, orders", for messages.
  // Value format of each declared topic (UNSPECIFIED as STRING).
  std::map<std::string, kiq::v1::Format> value_format_by_topic;
  // Partitioner of each declared topic (UNSPECIFIED as MURMUR2).
  std::map<std::string, kiq::v1::Partitioner> partitioner_by_topic;
  // Key format of each declared topic, as written (UNSPECIFIED as STRING).
  std::map<std::string, kiq::v1::Format> key_format_by_topic;
};

using Problems = std::vector<std::string>;

void Add(Problems* problems, absl::string_view path, absl::string_view reason) {
  problems->push_back(absl::StrCat(path, ": ", reason));
}

// What a store kind requires beyond the fields every store has (name, source). One row per
// case of Store.kind that this version supports: adding a kind (sum, latest, windows, joins)
// means adding its row, whose check can use `index` for references to other sources or stores.
// A kind present in the proto but without a row is refused, so it cannot reach the processors
// unchecked.
struct StoreKindRule {
  Store::KindCase kind;
  // `path` is the kind's own field, e.g. "stores[2].count".
  void (*check)(const Store& store, const std::string& path, const TopologyIndex& index,
                Problems* problems);
};

void NothingMoreToCheck(const Store&, const std::string&, const TopologyIndex&, Problems*) {}

// The format of the values the store's filter, group_by and kind read: its source's, if the
// source is declared, or JSON for a join (whose output is a JSON object).
std::optional<kiq::v1::Format> SourceValueFormat(const Store& store, const TopologyIndex& index) {
  if (store.has_join()) return kiq::v1::FORMAT_JSON;
  auto it = index.value_format_by_topic.find(store.source());
  if (it == index.value_format_by_topic.end()) return std::nullopt;
  return it->second;
}

std::string FormatName(kiq::v1::Format format) {
  return absl::AsciiStrToLower(
      absl::string_view(kiq::v1::Format_Name(format)).substr(sizeof("FORMAT_") - 1));
}

// Checks a field path's syntax and that the source can be read by path. `field_path` is where
// the path is written, e.g. "stores[2].sum.field".
void CheckFieldPath(const std::string& field, const std::string& field_path, const Store& store,
                    std::optional<kiq::v1::Format> format, Problems* problems) {
  if (std::string problem = FieldPath::Problem(field); !problem.empty()) {
    Add(problems, field_path, problem);
    return;
  }
  if (!field.empty() && format && *format != kiq::v1::FORMAT_JSON) {
    Add(problems, field_path,
        absl::StrCat("a field path needs a JSON source; source ", Quote(store.source()),
                     " has value_format ", FormatName(*format),
                     " (leave field empty to read the whole value)"));
  }
}

template <typename Spec>
void CheckNumberSpec(const Spec& spec, const Store& store, const std::string& path,
                     const TopologyIndex& index, Problems* problems) {
  const std::optional<kiq::v1::Format> format = SourceValueFormat(store, index);
  if (format == kiq::v1::FORMAT_BYTES) {
    Add(problems, path,
        absl::StrCat("a numeric store needs a JSON or STRING source; source ",
                     Quote(store.source()), " has value_format bytes"));
    return;
  }
  CheckFieldPath(spec.field(), path + ".field", store, format, problems);
  if (!kiq::v1::NumberType_IsValid(spec.type())) {
    Add(problems, path + ".type", absl::StrCat("unknown number type ", spec.type()));
  }
}

void CheckSum(const Store& store, const std::string& path, const TopologyIndex& index,
              Problems* problems) {
  CheckNumberSpec(store.sum(), store, path, index, problems);
}

void CheckMin(const Store& store, const std::string& path, const TopologyIndex& index,
              Problems* problems) {
  CheckNumberSpec(store.min(), store, path, index, problems);
}

void CheckMax(const Store& store, const std::string& path, const TopologyIndex& index,
              Problems* problems) {
  CheckNumberSpec(store.max(), store, path, index, problems);
}

// A rule that reads one field of each JSON value (a `latest` store or column, a
// `count_distinct` column): a JSON source (a registry format is decoded into JSON) and the
// field. `path` is the spec's own ("stores[2].latest"); `rule` names it in messages, `why_json`
// follows the format complaint, `field_is` says what the field is for, `example` is a field.
void CheckFieldRule(const std::string& field, absl::string_view rule, absl::string_view why_json,
                    absl::string_view field_is, absl::string_view example, const Store& store,
                    const std::string& path, const TopologyIndex& index, Problems* problems) {
  const std::optional<kiq::v1::Format> format = SourceValueFormat(store, index);
  if (format && *format != kiq::v1::FORMAT_JSON) {
    Add(problems, path,
        absl::StrCat(rule, " needs a JSON source; source ", Quote(store.source()),
                     " has value_format ", FormatName(*format), why_json));
    return;
  }
  if (field.empty()) {
    Add(problems, path + ".field",
        absl::StrCat("required; the JSON field ", field_is, ", e.g. \"", example,
                     "\" or \"customer.id\""));
    return;
  }
  CheckFieldPath(field, path + ".field", store, format, problems);
}

// The latest-value rule of a `latest` store and of a `latest` column.
void CheckLatestSpec(const kiq::v1::LatestSpec& latest, const Store& store,
                     const std::string& path, const TopologyIndex& index, Problems* problems) {
  CheckFieldRule(latest.field(), "latest", " (a table keeps whole values)",
                 "whose latest value is kept", "avatar", store, path, index, problems);
}

void CheckLatest(const Store& store, const std::string& path, const TopologyIndex& index,
                 Problems* problems) {
  CheckLatestSpec(store.latest(), store, path, index, problems);
}

bool IsColumnName(absl::string_view name) {
  if (name.empty() || name.size() > 128 || absl::ascii_isdigit(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '_') return false;
  }
  return true;
}

constexpr int kMaxTopK = 1000;

// A count_distinct column.
void CheckCountDistinctSpec(const kiq::v1::CountDistinctSpec& spec, const Store& store,
                            const std::string& path, const TopologyIndex& index,
                            Problems* problems) {
  CheckFieldRule(spec.field(), "count_distinct", "", "whose distinct values are counted", "game",
                 store, path, index, problems);
}

// The columns of an aggregate store: each a valid unique name and one aggregate, checked as
// the store kind of the same name is.
void CheckAggregate(const Store& store, const std::string& path, const TopologyIndex& index,
                    Problems* problems) {
  const kiq::v1::AggregateSpec& aggregate = store.aggregate();
  if (aggregate.columns().empty()) {
    Add(problems, path + ".columns",
        "required; at least one column, e.g. {name: plays, count: {}} or "
        "{name: points, sum: {field: points}}");
    return;
  }
  absl::flat_hash_set<std::string> names;
  for (int i = 0; i < aggregate.columns_size(); ++i) {
    const kiq::v1::Column& column = aggregate.columns(i);
    const std::string column_path = absl::StrCat(path, ".columns[", i, "]");
    if (!IsColumnName(column.name())) {
      Add(problems, column_path + ".name",
          absl::StrCat(column.name().empty() ? std::string("required")
                                             : absl::StrCat(Quote(column.name()), " is invalid"),
                       "; a column name is 1-128 of [A-Za-z0-9_], not starting with a digit"));
    } else if (!names.insert(column.name()).second) {
      Add(problems, column_path + ".name",
          absl::StrCat(Quote(column.name()), " is already the name of another column"));
    }
    switch (column.aggregate_case()) {
      case kiq::v1::Column::kCount:
        break;
      case kiq::v1::Column::kSum:
        CheckNumberSpec(column.sum(), store, column_path + ".sum", index, problems);
        break;
      case kiq::v1::Column::kMin:
        CheckNumberSpec(column.min(), store, column_path + ".min", index, problems);
        break;
      case kiq::v1::Column::kMax:
        CheckNumberSpec(column.max(), store, column_path + ".max", index, problems);
        break;
      case kiq::v1::Column::kLatest:
        CheckLatestSpec(column.latest(), store, column_path + ".latest", index, problems);
        break;
      case kiq::v1::Column::kAvg: {
        kiq::v1::SumSpec as_sum;  // the same field rules; the type is always double
        as_sum.set_field(column.avg().field());
        CheckNumberSpec(as_sum, store, column_path + ".avg", index, problems);
        break;
      }
      case kiq::v1::Column::kTopK:
        CheckNumberSpec(column.top_k(), store, column_path + ".top_k", index, problems);
        if (column.top_k().k() < 1 || column.top_k().k() > kMaxTopK) {
          Add(problems, column_path + ".top_k.k",
              absl::StrCat("is ", column.top_k().k(), "; expected 1 to ", kMaxTopK,
                           " (how many of the largest values are kept)"));
        }
        break;
      case kiq::v1::Column::kCountDistinct:
        CheckCountDistinctSpec(column.count_distinct(), store, column_path + ".count_distinct",
                               index, problems);
        break;
      case kiq::v1::Column::AGGREGATE_NOT_SET:
        Add(problems, column_path,
            "no aggregate set; one of: count, sum, min, max, latest, avg, top_k, count_distinct");
        break;
    }
  }
}

constexpr StoreKindRule kStoreKindRules[] = {
    {Store::kTable, NothingMoreToCheck},
    {Store::kCount, NothingMoreToCheck},
    {Store::kSum, CheckSum},
    {Store::kMin, CheckMin},
    {Store::kMax, CheckMax},
    {Store::kLatest, CheckLatest},
    {Store::kAggregate, CheckAggregate},
};

// Windows aggregate: a table (latest value per key) has nothing to window.
void CheckWindow(const Store& store, const std::string& path, Problems* problems) {
  if (store.has_table()) {
    Add(problems, path,
        "a table cannot be windowed; windows apply to count, sum, min, max, latest and aggregate");
    return;
  }
  std::vector<std::pair<std::string, std::string>> window_problems;
  ParseWindowSpec(store.window(), &window_problems);
  for (const auto& [field, reason] : window_problems) {
    Add(problems, absl::StrCat(path, ".", field), reason);
  }
}

// Checks one node of a filter tree; `path` is where it is written ("stores[0].filter.all[1]").
void CheckFilterNode(const kiq::v1::Filter& filter, const std::string& path, const Store& store,
                     std::optional<kiq::v1::Format> format, Problems* problems) {
  if (filter.all().empty() && filter.any().empty() && !filter.has_compare()) {
    Add(problems, path, "empty filter; set all, any or compare");
    return;
  }
  for (int i = 0; i < filter.all_size(); ++i) {
    CheckFilterNode(filter.all(i), absl::StrCat(path, ".all[", i, "]"), store, format, problems);
  }
  for (int i = 0; i < filter.any_size(); ++i) {
    CheckFilterNode(filter.any(i), absl::StrCat(path, ".any[", i, "]"), store, format, problems);
  }
  if (!filter.has_compare()) return;
  const kiq::v1::Comparison& compare = filter.compare();
  const std::string compare_path = path + ".compare";
  CheckFieldPath(compare.field(), compare_path + ".field", store, format, problems);
  if (compare.op() == kiq::v1::Comparison::OP_UNSPECIFIED ||
      !kiq::v1::Comparison::Op_IsValid(compare.op())) {
    Add(problems, compare_path + ".op", "required; one of eq, ne, lt, le, gt, ge");
  }
  if (compare.value_case() == kiq::v1::Comparison::VALUE_NOT_SET) {
    Add(problems, compare_path, "no value set; one of string_value, number_value, bool_value");
  } else if (compare.value_case() == kiq::v1::Comparison::kNumberValue &&
             !std::isfinite(compare.number_value())) {
    Add(problems, compare_path + ".number_value", "must be a finite number");
  }
}

void CheckFilter(const Store& store, const std::string& path, const TopologyIndex& index,
                 Problems* problems) {
  const std::optional<kiq::v1::Format> format = SourceValueFormat(store, index);
  if (format == kiq::v1::FORMAT_BYTES) {
    Add(problems, path,
        absl::StrCat("a filter needs a JSON or STRING source; source ", Quote(store.source()),
                     " has value_format bytes"));
    return;
  }
  CheckFilterNode(store.filter(), path, store, format, problems);
}

// A key read from each record's value (group_by, join.by): exactly one of field, fields and
// constant, paths readable in values of `format`. `path` is where the spec is written.
void CheckKeySpec(const kiq::v1::GroupBy& spec, const Store& store, const std::string& path,
                  std::optional<kiq::v1::Format> format, Problems* problems) {
  const int set = (spec.field().empty() ? 0 : 1) + (spec.fields().empty() ? 0 : 1) +
                  (spec.constant().empty() ? 0 : 1);
  if (set > 1) {
    Add(problems, path, "set only one of field, fields and constant");
    return;
  }
  if (!spec.separator().empty() && spec.fields().empty()) {
    Add(problems, path + ".separator", "only with fields (it joins their values)");
  }
  if (!spec.constant().empty()) return;
  if (!spec.fields().empty()) {
    if (spec.fields_size() < 2) {
      Add(problems, path + ".fields", "needs two or more paths (use field for one)");
    }
    for (int i = 0; i < spec.fields_size(); ++i) {
      const std::string field_path = absl::StrCat(path, ".fields[", i, "]");
      if (spec.fields(i).empty()) {
        Add(problems, field_path, "empty; each is a JSON field whose value is part of the key");
        continue;
      }
      CheckFieldPath(spec.fields(i), field_path, store, format, problems);
    }
    return;
  }
  if (spec.field().empty() && format == kiq::v1::FORMAT_JSON) {
    Add(problems, path + ".field",
        "required (or fields, or constant); the JSON field whose value becomes the key");
    return;
  }
  CheckFieldPath(spec.field(), path + ".field", store, format, problems);
}

// A stream–table join reads the table partition that has the record's key, on the same node:
// the two topics must be co-partitioned (same partitioner here; same partition count is
// checked against Kafka at start-up), unless the join is on a field (`by`), which re-keys the
// stream through a repartition topic partitioned as the table.
void CheckJoin(const Topology& topology, const Store& store, const std::string& path,
               const TopologyIndex& index, Problems* problems) {
  const kiq::v1::Join& join = store.join();
  auto source_format = index.value_format_by_topic.find(store.source());
  if (source_format != index.value_format_by_topic.end() &&
      source_format->second == kiq::v1::FORMAT_BYTES) {
    Add(problems, path,
        absl::StrCat("a join needs a JSON or STRING source; source ", Quote(store.source()),
                     " has value_format bytes"));
  }
  auto table_it = index.store_by_name.find(join.table());
  if (join.table().empty()) {
    Add(problems, path + ".table", "required; the name of a table store to join with");
    return;
  }
  if (table_it == index.store_by_name.end()) {
    Add(problems, path + ".table", absl::StrCat("unknown store ", Quote(join.table())));
    return;
  }
  const Store& table = topology.stores(table_it->second);
  if (!table.has_table() || table.has_join() || table.has_group_by()) {
    Add(problems, path + ".table",
        absl::StrCat("store ", Quote(join.table()),
                     " is not a plain table (a table store without join or group_by)"));
    return;
  }
  auto table_format = index.value_format_by_topic.find(table.source());
  if (table_format != index.value_format_by_topic.end() &&
      table_format->second == kiq::v1::FORMAT_BYTES) {
    Add(problems, path + ".table",
        absl::StrCat("table ", Quote(join.table()), " has bytes values (source ",
                     Quote(table.source()), "); a join needs JSON or STRING"));
  }
  if (join.has_by()) {
    // The key is read from the stream's own value, before the join.
    std::optional<kiq::v1::Format> stream_format;
    if (source_format != index.value_format_by_topic.end()) stream_format = source_format->second;
    if (stream_format != kiq::v1::FORMAT_BYTES) {
      CheckKeySpec(join.by(), store, path + ".by", stream_format, problems);
    }
    // The re-keyed stream's keys are text; a table keyed otherwise would never match them.
    auto key_format = index.key_format_by_topic.find(table.source());
    if (key_format != index.key_format_by_topic.end() &&
        key_format->second != kiq::v1::FORMAT_STRING && key_format->second != kiq::v1::FORMAT_BYTES) {
      Add(problems, path + ".by",
          absl::StrCat("table ", Quote(join.table()), "'s source ", Quote(table.source()),
                       " has key_format ", FormatName(key_format->second),
                       "; a join on a field looks the field's text up as the table's key, so "
                       "the table needs string (or bytes) keys"));
    }
  }
  auto a = index.partitioner_by_topic.find(store.source());
  auto b = index.partitioner_by_topic.find(table.source());
  // A join on a field re-keys the stream with the table's partitioner.
  if (!join.has_by() && a != index.partitioner_by_topic.end() && b != index.partitioner_by_topic.end() &&
      a->second != b->second) {
    Add(problems, path + ".table",
        absl::StrCat("not co-partitioned: source ", Quote(store.source()), " uses ",
                     kiq::v1::Partitioner_Name(a->second), " but table ", Quote(join.table()),
                     "'s source ", Quote(table.source()), " uses ",
                     kiq::v1::Partitioner_Name(b->second)));
  }
  const std::string source_as = join.source_as().empty() ? store.source() : join.source_as();
  const std::string table_as = join.table_as().empty() ? join.table() : join.table_as();
  for (const auto& [alias, field, name] : {std::tuple(source_as, "source_as", store.source()),
                                           std::tuple(table_as, "table_as", join.table())}) {
    if (alias.find('.') != std::string::npos || alias.empty()) {
      Add(problems, absl::StrCat(path, ".", field),
          absl::StrCat(Quote(alias),
                       " cannot name a side of the joined value (field paths split "
                       "on '.'); set ",
                       field, " to a name without dots",
                       name == alias ? " (it defaults to the name)" : ""));
    }
  }
  if (source_as == table_as) {
    Add(problems, path + ".table_as",
        absl::StrCat("both sides of the joined value would be named ", Quote(source_as),
                     "; set source_as or table_as"));
  }
}

// group_by re-keys by a field: the kind must be an aggregate (a table grouped by a field
// would need KGroupedTable's subtractor semantics).
void CheckGroupBy(const Store& store, const std::string& path, const TopologyIndex& index,
                  Problems* problems) {
  if (store.has_table()) {
    Add(problems, path,
        "a table cannot be grouped; group_by needs an aggregate: count, sum, min, max, latest or "
        "aggregate");
  }
  const std::optional<kiq::v1::Format> format = SourceValueFormat(store, index);
  if (format == kiq::v1::FORMAT_BYTES) {
    Add(problems, path,
        absl::StrCat("group_by needs a JSON or STRING source; source ", Quote(store.source()),
                     " has value_format bytes"));
    return;
  }
  CheckKeySpec(store.group_by(), store, path, format, problems);
}

const StoreKindRule* FindStoreKindRule(Store::KindCase kind) {
  for (const StoreKindRule& rule : kStoreKindRules) {
    if (rule.kind == kind) return &rule;
  }
  return nullptr;
}

// The oneof case values are the field numbers, so the user-facing name comes from the schema.
std::string StoreKindName(Store::KindCase kind) {
  const google::protobuf::FieldDescriptor* field = Store::descriptor()->FindFieldByNumber(kind);
  return field == nullptr ? absl::StrCat("kind ", static_cast<int>(kind)) : field->name();
}

std::string SupportedStoreKinds() {
  std::vector<std::string> names;
  for (const StoreKindRule& rule : kStoreKindRules) names.push_back(StoreKindName(rule.kind));
  return absl::StrJoin(names, ", ");
}

void CheckApplicationId(const Topology& topology, Problems* problems) {
  const std::string& id = topology.application_id();
  if (id.empty()) {
    Add(problems, "application_id",
        "required; it names the Kafka consumer group and prefixes kiq's internal topics");
    return;
  }
  if (id.size() > kMaxApplicationIdLength) {
    Add(problems, "application_id",
        absl::StrCat("is ", id.size(), " characters long; at most ", kMaxApplicationIdLength,
                     " are allowed so that internal topic names stay within Kafka's limit"));
    return;
  }
  if (std::string problem = NameCharProblem(id); !problem.empty()) {
    Add(problems, "application_id", absl::StrCat(problem, " (it prefixes Kafka topic names)"));
  }
}

void CheckStandbyReplicas(const Topology& topology, Problems* problems) {
  const int32_t n = topology.num_standby_replicas();
  if (n < 0 || n > kMaxStandbyReplicas) {
    Add(problems, "num_standby_replicas",
        absl::StrCat("is ", n, "; expected 0 to ", kMaxStandbyReplicas,
                     " (each replica costs a node the disk and ingestion of a copy)"));
  }
}

void CheckSources(const Topology& topology, TopologyIndex* index, Problems* problems) {
  if (topology.sources().empty()) {
    Add(problems, "sources", "at least one source is required");
  }
  std::vector<std::string> declared;
  for (int i = 0; i < topology.sources_size(); ++i) {
    const Source& source = topology.sources(i);
    const std::string path = absl::StrCat("sources[", i, "]");
    const std::string& topic = source.topic();
    if (topic.empty()) {
      Add(problems, path + ".topic", "required");
    } else if (std::string problem = TopicNameProblem(topic); !problem.empty()) {
      Add(problems, path + ".topic", problem);
    } else if (const auto [it, inserted] = index->source_by_topic.emplace(topic, i); !inserted) {
      Add(problems, path + ".topic",
          absl::StrCat("duplicate topic ", Quote(topic), " (also sources[", it->second, "])"));
    } else {
      declared.push_back(topic);
      // Stores read registry formats as the JSON they decode to.
      index->value_format_by_topic[topic] = source.value_format() == kiq::v1::FORMAT_UNSPECIFIED
                                                ? kiq::v1::FORMAT_STRING
                                                : DecodedFormat(source.value_format());
      index->key_format_by_topic[topic] = source.key_format() == kiq::v1::FORMAT_UNSPECIFIED
                                              ? kiq::v1::FORMAT_STRING
                                              : source.key_format();
      index->partitioner_by_topic[topic] = source.partitioner() == kiq::v1::PARTITIONER_UNSPECIFIED
                                               ? kiq::v1::PARTITIONER_MURMUR2
                                               : source.partitioner();
    }
    // Only a Topology built in code can hold numbers outside the enums.
    if (!kiq::v1::Format_IsValid(source.key_format())) {
      Add(problems, path + ".key_format", absl::StrCat("unknown format ", source.key_format()));
    }
    if (!kiq::v1::Format_IsValid(source.value_format())) {
      Add(problems, path + ".value_format", absl::StrCat("unknown format ", source.value_format()));
    }
    if (!kiq::v1::Partitioner_IsValid(source.partitioner())) {
      Add(problems, path + ".partitioner",
          absl::StrCat("unknown partitioner ", source.partitioner()));
    }
  }
  index->declared_sources = absl::StrJoin(declared, ", ");
}

void CheckStoreName(const Topology& topology, int i, const std::string& path, TopologyIndex* index,
                    Problems* problems) {
  const std::string& name = topology.stores(i).name();
  if (name.empty()) {
    Add(problems, path + ".name", "required");
    return;
  }
  if (std::string problem = NameCharProblem(name); !problem.empty()) {
    Add(problems, path + ".name", problem);
    return;
  }
  if (const auto [it, inserted] = index->store_by_name.emplace(name, i); !inserted) {
    Add(problems, path + ".name",
        absl::StrCat("duplicate store name ", Quote(name), " (also stores[", it->second, "])"));
    return;
  }
  const std::string& id = topology.application_id();
  const Store& store = topology.stores(i);
  const absl::string_view suffix = store.has_join() && store.join().has_by()
                                       ? kJoinRepartitionSuffix
                                   : store.has_group_by() ? kRepartitionSuffix
                                                          : kChangelogSuffix;
  const size_t topic_length = id.size() + 1 + name.size() + suffix.size();
  if (!id.empty() && id.size() <= kMaxApplicationIdLength && topic_length > kMaxTopicLength) {
    Add(problems, path + ".name",
        absl::StrCat("too long: the internal topic \"", id, "-", name, suffix, "\" would be ",
                     topic_length, " characters; Kafka allows at most ", kMaxTopicLength));
  }
}

void CheckStores(const Topology& topology, TopologyIndex* index, Problems* problems) {
  if (topology.stores().empty()) {
    Add(problems, "stores", "at least one store is required");
  }
  for (int i = 0; i < topology.stores_size(); ++i) {
    const Store& store = topology.stores(i);
    const std::string path = absl::StrCat("stores[", i, "]");
    CheckStoreName(topology, i, path, index, problems);

    if (store.source().empty()) {
      Add(problems, path + ".source",
          absl::StrCat("required; one of the declared sources: ", index->declared_sources));
    } else if (index->source_by_topic.count(store.source()) == 0) {
      Add(problems, path + ".source",
          absl::StrCat("unknown topic ", Quote(store.source()),
                       " (declared sources: ", index->declared_sources, ")"));
    }

    if (store.kind_case() == Store::KIND_NOT_SET) {
      Add(problems, path, absl::StrCat("no kind set; one of: ", SupportedStoreKinds()));
      continue;
    }
    if (store.has_filter()) CheckFilter(store, path + ".filter", *index, problems);
    if (store.has_group_by()) CheckGroupBy(store, path + ".group_by", *index, problems);
    if (store.has_window()) CheckWindow(store, path + ".window", problems);
    const std::string kind_path = absl::StrCat(path, ".", StoreKindName(store.kind_case()));
    const StoreKindRule* rule = FindStoreKindRule(store.kind_case());
    if (rule == nullptr) {
      Add(problems, kind_path,
          absl::StrCat("this kiq version does not support this store kind; supported: ",
                       SupportedStoreKinds()));
      continue;
    }
    rule->check(store, kind_path, *index, problems);
  }
  // Joins may name tables declared after them.
  for (int i = 0; i < topology.stores_size(); ++i) {
    const Store& store = topology.stores(i);
    if (store.has_join()) {
      CheckJoin(topology, store, absl::StrCat("stores[", i, "].join"), *index, problems);
    }
  }
}

// Avro, Protobuf and JSON Schema sources need a registry to fetch their writer schemas from.
// The password may come later (a flag or the environment); the node checks that at start-up.
void CheckSchemaRegistry(const Topology& topology, Problems* problems) {
  const kiq::v1::SchemaRegistry& registry = topology.schema_registry();
  const std::string& url = registry.url();
  if (!url.empty()) {
    if (std::string problem = RegistryUrlProblem(url); !problem.empty()) {
      Add(problems, "schema_registry.url", absl::StrCat(Quote(url), " ", problem));
    }
  } else if (topology.has_schema_registry()) {
    Add(problems, "schema_registry.url", "required (http(s)://host:port of the Schema Registry)");
  }
  if (registry.cache_size() < 0) {
    Add(problems, "schema_registry.cache_size",
        absl::StrCat("is ", registry.cache_size(), "; expected 0 (the default, 1000) or more"));
  }
  if (registry.timeout_ms() < 0 || registry.timeout_ms() > 600000) {
    Add(problems, "schema_registry.timeout_ms",
        absl::StrCat("is ", registry.timeout_ms(),
                     "; expected 0 (the default, 5000) to 600000 milliseconds"));
  }
  if (!registry.password().empty() && registry.username().empty()) {
    Add(problems, "schema_registry.username", "required with a password (basic auth)");
  }
  if (!url.empty()) return;
  for (int i = 0; i < topology.sources_size(); ++i) {
    const Source& source = topology.sources(i);
    for (const auto& [field, format] : {std::pair<const char*, kiq::v1::Format>{
                                            "key_format", source.key_format()},
                                        {"value_format", source.value_format()}}) {
      if (!IsRegistryFormat(format)) continue;
      Add(problems, absl::StrCat("sources[", i, "].", field),
          absl::StrCat(FormatName(format),
                       " needs schema_registry.url (the Schema Registry that holds the writer "
                       "schemas)"));
    }
  }
}

Problems FindProblems(const Topology& topology) {
  Problems problems;
  TopologyIndex index;
  CheckApplicationId(topology, &problems);
  CheckStandbyReplicas(topology, &problems);
  CheckSources(topology, &index, &problems);
  CheckSchemaRegistry(topology, &problems);
  CheckStores(topology, &index, &problems);
  return problems;
}

// One line per problem, each starting with `prefix`.
absl::Status ProblemsToStatus(const Problems& problems, absl::string_view prefix) {
  if (problems.empty()) return absl::OkStatus();
  std::vector<std::string> lines;
  for (size_t i = 0; i < problems.size() && i < kMaxReportedProblems; ++i) {
    lines.push_back(absl::StrCat(prefix, problems[i]));
  }
  if (problems.size() > kMaxReportedProblems) {
    lines.push_back(
        absl::StrCat(prefix, "... and ", problems.size() - kMaxReportedProblems, " more problems"));
  }
  return absl::InvalidArgumentError(absl::StrJoin(lines, "\n"));
}

// UNSPECIFIED means the default; resolving it here spares every later reader the case.
void ApplyDefaults(Topology* topology) {
  for (Source& source : *topology->mutable_sources()) {
    if (source.key_format() == kiq::v1::FORMAT_UNSPECIFIED) {
      source.set_key_format(kiq::v1::FORMAT_STRING);
    }
    if (source.value_format() == kiq::v1::FORMAT_UNSPECIFIED) {
      source.set_value_format(kiq::v1::FORMAT_STRING);
    }
    if (source.partitioner() == kiq::v1::PARTITIONER_UNSPECIFIED) {
      source.set_partitioner(kiq::v1::PARTITIONER_MURMUR2);
    }
  }
}

}  // namespace

absl::Status ValidateTopology(const Topology& topology) {
  return ProblemsToStatus(FindProblems(topology), "");
}

absl::StatusOr<Topology> ParseTopology(std::string_view text, std::string_view source_name) {
  const std::string prefix = absl::StrCat(View(source_name), ": ");
  // yaml-cpp counts lines and columns from 0; editors count from 1.
  auto invalid = [&](const YAML::Mark& mark, absl::string_view why) {
    const std::string where =
        mark.is_null() ? ""
                       : absl::StrCat("line ", mark.line + 1, ", column ", mark.column + 1, ": ");
    return absl::InvalidArgumentError(absl::StrCat(prefix, where, "invalid YAML: ", why));
  };
  size_t documents = 0;
  YAML::Node document;
  try {
    // Not YAML::LoadAll: on a document that starts with ',' outside [] or {} yaml-cpp 0.7's
    // parser reports the same empty document forever without consuming anything, and LoadAll
    // loops, piling up nodes until memory runs out (found by fuzz/topology_fuzzer). The
    // documents are counted first, stopping where one makes no progress.
    std::istringstream stream{std::string(text)};
    YAML::Parser parser(stream);
    DocumentCounter counter;
    while (parser.HandleNextDocument(counter)) {
      if (counter.stuck()) return invalid(counter.start(), "cannot parse past here");
      ++documents;
    }
    if (documents == 1) document = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return invalid(e.mark, e.msg);
  }
  if (documents > 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "expected one YAML document, found ", documents));
  }
  if (documents == 0 || document.IsNull()) {
    return absl::InvalidArgumentError(
        absl::StrCat(prefix, "the topology is empty; expected application_id, sources and stores"));
  }

  Topology topology;
  if (absl::Status status = YamlToMessage(document, &topology); !status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, status.message()));
  }
  if (absl::Status status = ProblemsToStatus(FindProblems(topology), prefix); !status.ok()) {
    return status;
  }
  ApplyDefaults(&topology);
  return topology;
}

absl::StatusOr<Topology> LoadTopologyFile(const std::string& path) {
  const std::string doing = absl::StrCat(path, ": cannot read the topology file");
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"),
                                                       &std::fclose);
  if (file == nullptr) return absl::ErrnoToStatus(errno, doing);
  std::string text;
  char buffer[1 << 14];
  size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof(buffer), file.get())) > 0) text.append(buffer, n);
  // fopen succeeds on a directory; the read is what fails (EISDIR).
  if (std::ferror(file.get())) return absl::ErrnoToStatus(errno, doing);
  return ParseTopology(text, path);
}

}  // namespace kiq
