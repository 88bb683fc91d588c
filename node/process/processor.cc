#include "node/process/processor.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/topology/json_value.h"
#include "common/topology/partitioner.h"
#include "common/topology/store_info.h"
#include "common/topology/value_codec.h"
#include "common/topology/window.h"
#include "common/topology/window_key.h"
#include "node/process/distinct_counter.h"

namespace kiq::node {
namespace {

// Latest value per key; a null value deletes the key (KTable semantics).
class TableProcessor final : public Processor {
 public:
  explicit TableProcessor(StoreHandle handle) : handle_(handle) {}

  absl::Status Process(const Record& record, StagedBatch& batch) override {
    if (!record.key) return absl::InvalidArgumentError("null key");
    std::optional<std::string> value;
    if (record.value) value.emplace(*record.value);
    return batch.Write(handle_, record.partition, *record.key, std::move(value));
  }

 private:
  const StoreHandle handle_;
};

// Number of records per key (groupByKey().count()). Records with a null key or value are
// skipped as bad records, as KGroupedStream ignores them.
class CountProcessor final : public Processor {
 public:
  explicit CountProcessor(StoreHandle handle) : handle_(handle) {}

  absl::Status Process(const Record& record, StagedBatch& batch) override {
    if (!record.key) return absl::InvalidArgumentError("null key");
    if (!record.value) return absl::InvalidArgumentError("null value");
    absl::StatusOr<const std::optional<std::string>*> current =
        batch.Read(handle_, record.partition, *record.key);
    if (!current.ok()) return current.status();
    int64_t count = 0;
    if (**current) {
      std::optional<int64_t> stored = DecodeInt64(***current);
      if (!stored) {
        return absl::DataLossError(absl::StrCat("count store entry is not 8 bytes (partition ",
                                                record.partition.value(), ")"));
      }
      count = *stored;
    }
    return batch.Write(handle_, record.partition, *record.key, EncodeInt64(count + 1));
  }

 private:
  const StoreHandle handle_;
};

// A processor that reads fields of its records' values. For JSON sources it makes sure the
// record carries its parsed value (the one CompiledTopology shares across the source's stores,
// else one parsed here) before ProcessParsed.
class FieldProcessor : public Processor {
 public:
  explicit FieldProcessor(bool json_source) : json_source_(json_source) {}

  absl::Status Process(const Record& record, StagedBatch& batch) final {
    if (json_source_ && record.json == nullptr && record.value) {
      LazyJson json;
      json.Reset(*record.value);
      Record parsed = record;
      parsed.json = &json;
      return ProcessParsed(parsed, batch);
    }
    return ProcessParsed(record, batch);
  }

 protected:
  // `record.json` is set if the source is JSON and the value is not null.
  virtual absl::Status ProcessParsed(const Record& record, StagedBatch& batch) = 0;

  // The field `path` of a non-null record value.
  absl::StatusOr<Scalar> Read(const Record& record, const FieldPath& path) const {
    return ReadField(path, *record.value, json_source_ ? record.json : nullptr);
  }
  absl::StatusOr<std::optional<Scalar>> ReadOptional(const Record& record,
                                                     const FieldPath& path) const {
    return ReadOptionalField(path, *record.value, json_source_ ? record.json : nullptr);
  }

 private:
  const bool json_source_;
};

// Null keys and values are skipped as bad records, as KGroupedStream ignores them.
absl::Status CheckKeyAndValue(const Record& record) {
  if (!record.key) return absl::InvalidArgumentError("null key");
  if (!record.value) return absl::InvalidArgumentError("null value");
  return absl::OkStatus();
}

enum class Fold { kSum, kMin, kMax };

absl::StatusOr<int64_t> Convert(const Scalar& scalar, const FieldPath& path, int64_t*) {
  return ToInt64(scalar, path);
}
absl::StatusOr<double> Convert(const Scalar& scalar, const FieldPath& path, double*) {
  return ToDouble(scalar, path);
}
std::string Encode(int64_t v) { return EncodeInt64(v); }
std::string Encode(double v) { return EncodeDouble(v); }
std::optional<int64_t> Decode(absl::string_view bytes, int64_t*) { return DecodeInt64(bytes); }
std::optional<double> Decode(absl::string_view bytes, double*) { return DecodeDouble(bytes); }

// Sum, minimum or maximum of a numeric field per key, kept as T (int64_t or double). A sum
// that leaves T's finite range makes the record bad (the stored sum is unchanged).
template <typename T>
class NumberProcessor final : public FieldProcessor {
 public:
  NumberProcessor(StoreHandle handle, Fold fold, std::string field, bool json_source)
      : FieldProcessor(json_source), handle_(handle), fold_(fold), path_(std::move(field)) {}

 protected:
  absl::Status ProcessParsed(const Record& record, StagedBatch& batch) override {
    if (absl::Status s = CheckKeyAndValue(record); !s.ok()) return s;
    absl::StatusOr<Scalar> scalar = Read(record, path_);
    if (!scalar.ok()) return scalar.status();
    // SUM, MIN and MAX skip nulls, as in SQL (e.g. a field of a left join's missing side).
    if (scalar->json != nullptr && scalar->json->IsNull()) return absl::OkStatus();
    absl::StatusOr<T> x = Convert(*scalar, path_, static_cast<T*>(nullptr));
    if (!x.ok()) return x.status();
    absl::StatusOr<const std::optional<std::string>*> current =
        batch.Read(handle_, record.partition, *record.key);
    if (!current.ok()) return current.status();
    T result = *x;
    if (**current) {
      std::optional<T> stored = Decode(***current, static_cast<T*>(nullptr));
      if (!stored) {
        return absl::DataLossError(absl::StrCat("numeric store entry is not 8 bytes (partition ",
                                                record.partition.value(), ")"));
      }
      switch (fold_) {
        case Fold::kSum:
          if constexpr (std::is_same_v<T, int64_t>) {
            if (__builtin_add_overflow(*stored, *x, &result)) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "sum overflows int64: ", *stored, " + ", *x, " (", path_.Describe(), ")"));
            }
          } else {
            result = *stored + *x;
            if (!std::isfinite(result)) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "sum overflows double: ", *stored, " + ", *x, " (", path_.Describe(), ")"));
            }
          }
          break;
        case Fold::kMin:
          result = std::min(*stored, *x);
          break;
        case Fold::kMax:
          result = std::max(*stored, *x);
          break;
      }
    }
    return batch.Write(handle_, record.partition, *record.key, Encode(result));
  }

 private:
  const StoreHandle handle_;
  const Fold fold_;
  const FieldPath path_;
};

// Latest value of a JSON field per key (LATEST_BY_OFFSET), stored as its JSON text. A record
// without the field is bad; a field that is JSON null is a value like any other.
class LatestProcessor final : public FieldProcessor {
 public:
  LatestProcessor(StoreHandle handle, std::string field)
      : FieldProcessor(/*json_source=*/true), handle_(handle), path_(std::move(field)) {}

 protected:
  absl::Status ProcessParsed(const Record& record, StagedBatch& batch) override {
    if (absl::Status s = CheckKeyAndValue(record); !s.ok()) return s;
    absl::StatusOr<Scalar> scalar = Read(record, path_);
    if (!scalar.ok()) return scalar.status();
    return batch.Write(handle_, record.partition, *record.key, ToJsonText(*scalar->json));
  }

 private:
  const StoreHandle handle_;
  const FieldPath path_;
};

// Several aggregates per key in one row, as a ksqlDB table has several columns. The stored
// value is the row's JSON object (what answers show), then, if the store has avg or
// count_distinct columns, a NUL byte and a JSON array of their state, one element per such
// column in column order (not shown; see RowJson): [sum, count] for avg, a DistinctCounter's
// JSON for count_distinct. Every column is computed before anything is written: a record that is
// bad for one column (a missing field, a value that is not a number) is bad for the row.
class AggregateProcessor final : public FieldProcessor {
 public:
  AggregateProcessor(StoreHandle handle, const kiq::v1::AggregateSpec& spec, bool json_source)
      : FieldProcessor(json_source), handle_(handle), reads_json_(json_source) {
    for (const kiq::v1::Column& c : spec.columns()) {
      Column column{c.name(), c.aggregate_case(), FieldPath("")};
      switch (c.aggregate_case()) {
        case kiq::v1::Column::kSum:
          column.path = FieldPath(c.sum().field());
          column.as_double = c.sum().type() == kiq::v1::NUMBER_TYPE_DOUBLE;
          break;
        case kiq::v1::Column::kMin:
          column.path = FieldPath(c.min().field());
          column.as_double = c.min().type() == kiq::v1::NUMBER_TYPE_DOUBLE;
          break;
        case kiq::v1::Column::kMax:
          column.path = FieldPath(c.max().field());
          column.as_double = c.max().type() == kiq::v1::NUMBER_TYPE_DOUBLE;
          break;
        case kiq::v1::Column::kLatest:
          column.path = FieldPath(c.latest().field());
          break;
        case kiq::v1::Column::kAvg:
          column.path = FieldPath(c.avg().field());
          column.as_double = true;
          column.state = state_columns_++;
          break;
        case kiq::v1::Column::kCountDistinct:
          column.path = FieldPath(c.count_distinct().field());
          column.state = state_columns_++;
          break;
        case kiq::v1::Column::kTopK:
          column.path = FieldPath(c.top_k().field());
          column.as_double = c.top_k().type() == kiq::v1::NUMBER_TYPE_DOUBLE;
          column.k = static_cast<size_t>(std::max(1, c.top_k().k()));
          break;
        default:
          break;
      }
      columns_.push_back(std::move(column));
    }
  }

 protected:
  absl::Status ProcessParsed(const Record& record, StagedBatch& batch) override {
    if (absl::Status s = CheckKeyAndValue(record); !s.ok()) return s;
    // A value that is not JSON is bad as such, not for its first column.
    if (reads_json_ && record.json->Root() == nullptr) return record.json->error();
    absl::StatusOr<const std::optional<std::string>*> current =
        batch.Read(handle_, record.partition, *record.key);
    if (!current.ok()) return current.status();
    rapidjson::Document old_row;
    rapidjson::Document old_state;
    if (**current) {
      if (absl::Status s = ParseStored(***current, record, &old_row, &old_state); !s.ok()) {
        return s;
      }
    }
    rapidjson::Document row(rapidjson::kObjectType);
    rapidjson::Document state(rapidjson::kArrayType);
    auto& alloc = row.GetAllocator();
    for (const Column& column : columns_) {
      const rapidjson::Value* old = nullptr;
      if (old_row.IsObject()) {
        auto it = old_row.FindMember(rapidjson::StringRef(column.name.data(), column.name.size()));
        if (it != old_row.MemberEnd()) old = &it->value;
      }
      rapidjson::Value value;
      absl::Status s = Fold(column, record, old, old_state, &value, &state, alloc);
      if (!s.ok()) {
        if (!absl::IsInvalidArgument(s)) return s;
        return absl::InvalidArgumentError(absl::StrCat("column ", column.name, ": ", s.message()));
      }
      row.AddMember(rapidjson::Value(column.name.data(),
                                     static_cast<rapidjson::SizeType>(column.name.size()), alloc),
                    value, alloc);
    }
    rapidjson::StringBuffer out;
    rapidjson::Writer<rapidjson::StringBuffer> writer(out);
    row.Accept(writer);
    std::string stored(out.GetString(), out.GetSize());
    if (state_columns_ > 0) {
      rapidjson::StringBuffer state_out;
      rapidjson::Writer<rapidjson::StringBuffer> state_writer(state_out);
      state.Accept(state_writer);
      stored.push_back('\0');
      stored.append(state_out.GetString(), state_out.GetSize());
    }
    return batch.Write(handle_, record.partition, *record.key, std::move(stored));
  }

 private:
  struct Column {
    std::string name;
    kiq::v1::Column::AggregateCase kind;
    FieldPath path;
    bool as_double = false;
    size_t k = 0;    // top_k
    int state = -1;  // avg, count_distinct: its index in the state array
  };

  absl::Status ParseStored(absl::string_view stored, const Record& record,
                           rapidjson::Document* row, rapidjson::Document* state) const {
    const absl::string_view shown = RowJson(stored);
    row->Parse(shown.data(), shown.size());
    bool ok = !row->HasParseError() && row->IsObject();
    if (ok && state_columns_ > 0 && shown.size() < stored.size()) {
      const absl::string_view rest = stored.substr(shown.size() + 1);
      state->Parse(rest.data(), rest.size());
      ok = !state->HasParseError() && state->IsArray();
    }
    if (ok) return absl::OkStatus();
    return absl::DataLossError(absl::StrCat("aggregate store entry is not a row (partition ",
                                            record.partition.value(), ")"));
  }

  // A number of the column's type as a JSON value; non-finite doubles refused.
  static absl::Status ToValue(const Column& column, double d, int64_t i, rapidjson::Value* out) {
    if (column.as_double) {
      if (!std::isfinite(d)) {
        return absl::InvalidArgumentError(
            absl::StrCat("overflows double (", column.path.Describe(), ")"));
      }
      out->SetDouble(d);
    } else {
      out->SetInt64(i);
    }
    return absl::OkStatus();
  }

  // The record's numeric field, nullopt for JSON null (skipped, as SQL aggregates skip nulls).
  absl::StatusOr<std::optional<std::pair<double, int64_t>>> Number(const Column& column,
                                                                   const Record& record) const {
    absl::StatusOr<Scalar> scalar = Read(record, column.path);
    if (!scalar.ok()) return scalar.status();
    if (scalar->json != nullptr && scalar->json->IsNull()) return std::nullopt;
    if (column.as_double) {
      absl::StatusOr<double> d = ToDouble(*scalar, column.path);
      if (!d.ok()) return d.status();
      return std::make_pair(*d, int64_t{0});
    }
    absl::StatusOr<int64_t> i = ToInt64(*scalar, column.path);
    if (!i.ok()) return i.status();
    return std::make_pair(static_cast<double>(*i), *i);
  }

  static bool HoldsNumber(const Column& column, const rapidjson::Value& v) {
    return column.as_double ? v.IsNumber() : v.IsInt64();
  }

  absl::Status Corrupt(const Column& column, const Record& record) const {
    return absl::DataLossError(absl::StrCat("aggregate store entry has a bad column ",
                                            column.name, " (partition ", record.partition.value(),
                                            ")"));
  }

  absl::Status Fold(const Column& column, const Record& record, const rapidjson::Value* old,
                    const rapidjson::Document& old_state, rapidjson::Value* out,
                    rapidjson::Document* state,
                    rapidjson::Document::AllocatorType& alloc) const {
    switch (column.kind) {
      case kiq::v1::Column::kCount: {
        int64_t n = 0;
        if (old != nullptr) {
          if (!old->IsInt64()) return Corrupt(column, record);
          n = old->GetInt64();
        }
        out->SetInt64(n + 1);
        return absl::OkStatus();
      }
      case kiq::v1::Column::kLatest: {
        absl::StatusOr<Scalar> scalar = Read(record, column.path);
        if (!scalar.ok()) return scalar.status();
        if (scalar->json == nullptr) {  // refused by validation: latest reads JSON
          out->SetString(scalar->text.data(), static_cast<rapidjson::SizeType>(scalar->text.size()),
                         alloc);
        } else {
          out->CopyFrom(*scalar->json, alloc);
        }
        return absl::OkStatus();
      }
      case kiq::v1::Column::kSum:
      case kiq::v1::Column::kMin:
      case kiq::v1::Column::kMax: {
        auto x = Number(column, record);
        if (!x.ok()) return x.status();
        const bool had = old != nullptr && !old->IsNull();
        if (had && !HoldsNumber(column, *old)) return Corrupt(column, record);
        if (!*x) {  // null: the column keeps what it had (null until a first value)
          if (had) out->CopyFrom(*old, alloc);
          return absl::OkStatus();
        }
        double d = (*x)->first;
        int64_t i = (*x)->second;
        if (had) {
          const double od = old->GetDouble();
          const int64_t oi = column.as_double ? 0 : old->GetInt64();
          if (column.kind == kiq::v1::Column::kSum) {
            d += od;
            if (!column.as_double && __builtin_add_overflow(oi, (*x)->second, &i)) {
              return absl::InvalidArgumentError(absl::StrCat("sum overflows int64: ", oi, " + ",
                                                             (*x)->second, " (",
                                                             column.path.Describe(), ")"));
            }
          } else {
            const bool take_old = column.kind == kiq::v1::Column::kMin
                                      ? (column.as_double ? od < d : oi < i)
                                      : (column.as_double ? od > d : oi > i);
            if (take_old) {
              d = od;
              i = oi;
            }
          }
        }
        return ToValue(column, d, i, out);
      }
      case kiq::v1::Column::kAvg: {
        auto x = Number(column, record);
        if (!x.ok()) return x.status();
        double sum = 0;
        int64_t count = 0;
        if (old_state.IsArray() && static_cast<int>(old_state.Size()) > column.state) {
          const rapidjson::Value& s = old_state[column.state];
          if (!s.IsArray() || s.Size() != 2 || !s[0].IsNumber() || !s[1].IsInt64()) {
            return Corrupt(column, record);
          }
          sum = s[0].GetDouble();
          count = s[1].GetInt64();
        }
        if (*x) {
          sum += (*x)->first;
          ++count;
          if (!std::isfinite(sum)) {
            return absl::InvalidArgumentError(
                absl::StrCat("sum overflows double (", column.path.Describe(), ")"));
          }
        }
        rapidjson::Value pair(rapidjson::kArrayType);
        pair.PushBack(rapidjson::Value(sum), state->GetAllocator());
        pair.PushBack(rapidjson::Value(static_cast<int64_t>(count)), state->GetAllocator());
        state->PushBack(pair, state->GetAllocator());
        if (count > 0) out->SetDouble(sum / static_cast<double>(count));
        return absl::OkStatus();
      }
      case kiq::v1::Column::kTopK: {
        auto x = Number(column, record);
        if (!x.ok()) return x.status();
        std::vector<std::pair<double, int64_t>> values;
        if (old != nullptr) {
          if (!old->IsArray()) return Corrupt(column, record);
          for (const rapidjson::Value& v : old->GetArray()) {
            if (!HoldsNumber(column, v)) return Corrupt(column, record);
            values.emplace_back(v.GetDouble(), column.as_double ? 0 : v.GetInt64());
          }
        }
        if (*x) values.push_back(**x);
        auto larger = [&column](const auto& a, const auto& b) {
          return column.as_double ? a.first > b.first : a.second > b.second;
        };
        std::stable_sort(values.begin(), values.end(), larger);
        if (values.size() > column.k) values.resize(column.k);
        out->SetArray();
        for (const auto& [d, i] : values) {
          rapidjson::Value v;
          if (column.as_double) {
            v.SetDouble(d);
          } else {
            v.SetInt64(i);
          }
          out->PushBack(v, alloc);
        }
        return absl::OkStatus();
      }
      case kiq::v1::Column::kCountDistinct: {
        absl::StatusOr<Scalar> scalar = Read(record, column.path);
        if (!scalar.ok()) return scalar.status();
        DistinctCounter counter;
        if (old_state.IsArray() && static_cast<int>(old_state.Size()) > column.state) {
          absl::StatusOr<DistinctCounter> stored =
              DistinctCounter::FromJson(old_state[column.state]);
          if (!stored.ok()) return Corrupt(column, record);
          counter = *std::move(stored);
        }
        // Nulls are not values (SQL's COUNT(DISTINCT x) skips them); values are told apart by
        // their JSON text.
        if (scalar->json == nullptr) {
          counter.Add(DistinctCounter::Hash(scalar->text));
        } else if (!scalar->json->IsNull()) {
          counter.Add(DistinctCounter::Hash(ToJsonText(*scalar->json)));
        }
        rapidjson::Value json;
        counter.ToJson(&json, state->GetAllocator());
        state->PushBack(json, state->GetAllocator());
        out->SetInt64(counter.Count());
        return absl::OkStatus();
      }
      case kiq::v1::Column::AGGREGATE_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError("column without an aggregate");  // Refused by validation.
  }

  const StoreHandle handle_;
  const bool reads_json_;
  int state_columns_ = 0;  // avg and count_distinct columns
  std::vector<Column> columns_;
};

// A Filter, compiled: paths split once, the value's type resolved.
struct Predicate {
  std::vector<Predicate> all;
  std::vector<Predicate> any;
  bool has_compare = false;
  FieldPath path{""};
  kiq::v1::Comparison::Op op = kiq::v1::Comparison::OP_UNSPECIFIED;
  kiq::v1::Comparison::ValueCase value_case = kiq::v1::Comparison::VALUE_NOT_SET;
  std::string string_value;
  double number_value = 0;
  bool bool_value = false;
};

Predicate CompilePredicate(const kiq::v1::Filter& filter) {
  Predicate p;
  for (const kiq::v1::Filter& child : filter.all()) p.all.push_back(CompilePredicate(child));
  for (const kiq::v1::Filter& child : filter.any()) p.any.push_back(CompilePredicate(child));
  if (filter.has_compare()) {
    const kiq::v1::Comparison& c = filter.compare();
    p.has_compare = true;
    p.path = FieldPath(c.field());
    p.op = c.op();
    p.value_case = c.value_case();
    p.string_value = c.string_value();
    p.number_value = c.number_value();
    p.bool_value = c.bool_value();
  }
  return p;
}

template <typename T>
bool Holds(kiq::v1::Comparison::Op op, const T& a, const T& b) {
  switch (op) {
    case kiq::v1::Comparison::OP_EQ:
      return a == b;
    case kiq::v1::Comparison::OP_NE:
      return !(a == b);
    case kiq::v1::Comparison::OP_LT:
      return a < b;
    case kiq::v1::Comparison::OP_LE:
      return a < b || a == b;
    case kiq::v1::Comparison::OP_GT:
      return b < a;
    case kiq::v1::Comparison::OP_GE:
      return b < a || a == b;
    default:
      return false;  // Refused by validation.
  }
}

// Applies the store's filter; records that do not match never reach `inner` (for a table they
// delete the key instead, as KTable.filter forwards a tombstone, so that a row that stops
// matching leaves the store). Null values go to `inner` unfiltered: a table deletes, an
// aggregate reports them.
class FilterProcessor final : public FieldProcessor {
 public:
  FilterProcessor(const kiq::v1::Filter& filter, bool json_source, bool table,
                  std::unique_ptr<Processor> inner)
      : FieldProcessor(json_source),
        predicate_(CompilePredicate(filter)),
        table_(table),
        inner_(std::move(inner)) {}

  // What the stage behind the filter counted (a windowed store's late records, a group_by's
  // null keys).
  int64_t TakeLateRecords() override { return inner_->TakeLateRecords(); }
  int64_t TakeNullKeyRecords() override { return inner_->TakeNullKeyRecords(); }

 protected:
  absl::Status ProcessParsed(const Record& record, StagedBatch& batch) override {
    if (!record.value) return inner_->Process(record, batch);
    absl::StatusOr<bool> matches = Matches(predicate_, record);
    if (!matches.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("filter: ", matches.status().message()));
    }
    if (*matches) return inner_->Process(record, batch);
    if (!table_ || !record.key) return absl::OkStatus();
    Record tombstone = record;
    tombstone.value.reset();
    tombstone.json = nullptr;
    return inner_->Process(tombstone, batch);
  }

 private:
  absl::StatusOr<bool> Matches(const Predicate& p, const Record& record) const {
    for (const Predicate& child : p.all) {
      absl::StatusOr<bool> m = Matches(child, record);
      if (!m.ok() || !*m) return m;
    }
    if (!p.any.empty()) {
      bool any = false;
      for (const Predicate& child : p.any) {
        absl::StatusOr<bool> m = Matches(child, record);
        if (!m.ok()) return m;
        if (*m) {
          any = true;
          break;
        }
      }
      if (!any) return false;
    }
    if (!p.has_compare) return true;
    return Compare(p, record);
  }

  absl::StatusOr<bool> Compare(const Predicate& p, const Record& record) const {
    absl::StatusOr<Scalar> scalar = Read(record, p.path);
    if (!scalar.ok()) return scalar.status();
    const rapidjson::Value* json = scalar->json;
    // SQL: a comparison with null is unknown, so the record does not match (whatever the op).
    if (json != nullptr && json->IsNull()) return false;
    switch (p.value_case) {
      case kiq::v1::Comparison::kStringValue: {
        absl::string_view text = scalar->text;
        if (json != nullptr) {
          if (!json->IsString()) {
            return absl::InvalidArgumentError(
                absl::StrCat(p.path.Describe(), " is not a string: ", DescribeJson(*json)));
          }
          text = absl::string_view(json->GetString(), json->GetStringLength());
        }
        return Holds(p.op, text, absl::string_view(p.string_value));
      }
      case kiq::v1::Comparison::kNumberValue: {
        absl::StatusOr<double> x = ToDouble(*scalar, p.path);
        if (!x.ok()) return x.status();
        return Holds(p.op, *x, p.number_value);
      }
      case kiq::v1::Comparison::kBoolValue: {
        if (json == nullptr || !json->IsBool()) {
          return absl::InvalidArgumentError(absl::StrCat(
              p.path.Describe(),
              " is not a bool: ", json == nullptr ? std::string("a string") : DescribeJson(*json)));
        }
        return Holds(p.op, json->GetBool(), p.bool_value);
      }
      case kiq::v1::Comparison::VALUE_NOT_SET:
        break;
    }
    return absl::InvalidArgumentError("comparison without a value");  // Refused by validation.
  }

  const Predicate predicate_;
  const bool table_;
  const std::unique_ptr<Processor> inner_;
};

// The first half of a group_by store (Kafka Streams' groupBy + repartition): re-keys each
// record by a field, several fields or a constant, and forwards it to the partition of the
// repartition topic that the new key maps to; the second half (the store's kind) consumes that
// topic. A record whose key would be null (a field null or missing: ksqlDB drops null GROUP BY
// keys) is dropped and counted, not dead-lettered: with a left join, such records are expected.
// The stage before a join on a field is the same, keyed by the join key (ksqlDB drops stream
// records whose join key is null too).
class RepartitionProcessor final : public FieldProcessor {
 public:
  RepartitionProcessor(std::string topic, int32_t partitions, PartitionerKind partitioner,
                       const kiq::v1::GroupBy& group_by, bool json_source)
      : FieldProcessor(json_source),
        topic_(std::move(topic)),
        partitions_(partitions),
        partitioner_(partitioner),
        constant_(group_by.constant()),
        separator_(group_by.separator().empty() ? "|" : group_by.separator()) {
    if (group_by.fields().empty()) {
      if (constant_.empty()) fields_.emplace_back(group_by.field());
    } else {
      for (const std::string& field : group_by.fields()) fields_.emplace_back(field);
    }
  }

  int64_t TakeNullKeyRecords() override { return std::exchange(null_keys_, 0); }

 protected:
  absl::Status ProcessParsed(const Record& record, StagedBatch& batch) override {
    if (!record.value) return absl::InvalidArgumentError("null value");
    std::string key = constant_;
    for (size_t i = 0; i < fields_.size(); ++i) {
      absl::StatusOr<std::optional<std::string>> part = KeyPart(record, fields_[i]);
      if (!part.ok()) return part.status();
      if (!*part) {
        ++null_keys_;
        return absl::OkStatus();
      }
      if (i > 0) key += separator_;
      key += **part;
    }
    ForwardedRecord out;
    out.topic = topic_;
    // Kafka's default partitioner, so the topic is also readable by other Kafka tools (for a
    // join on a field: the table's, whose partition the record must meet).
    out.partition = PartitionId(PartitionForKey(partitioner_, key, partitions_));
    out.key = std::move(key);
    out.value = std::string(*record.value);
    out.timestamp_ms = record.timestamp_ms;
    out.upstream_partition = record.partition;
    out.upstream_offset = record.offset;
    batch.Forward(std::move(out));
    return absl::OkStatus();
  }

 private:
  // The key text of one field (a string as is, a number or bool as its JSON text); nullopt
  // for a null or missing field.
  absl::StatusOr<std::optional<std::string>> KeyPart(const Record& record,
                                                     const FieldPath& field) const {
    absl::StatusOr<std::optional<Scalar>> scalar = ReadOptional(record, field);
    if (!scalar.ok()) return scalar.status();
    if (!*scalar) return std::nullopt;
    const rapidjson::Value* json = (*scalar)->json;
    if (json == nullptr) return std::string((*scalar)->text);
    if (json->IsNull()) return std::nullopt;
    if (json->IsString()) return std::string(json->GetString(), json->GetStringLength());
    if (json->IsNumber() || json->IsBool()) return ToJsonText(*json);
    return absl::InvalidArgumentError(
        absl::StrCat(field.Describe(), " cannot be a key: ", DescribeJson(*json)));
  }

  const std::string topic_;
  const int32_t partitions_;
  const PartitionerKind partitioner_;
  const std::string constant_;
  const std::string separator_;
  std::vector<FieldPath> fields_;
  int64_t null_keys_ = 0;
};

// Aggregates per time window: each record goes to `inner` once per window that contains its
// timestamp and still accepts it, under the window key (user key + window start), so the
// inner aggregate keeps one value per (key, window). The partition's stream time is kept in
// the store itself under kStreamTimeKey; expired windows are deleted by a bounded sweep that
// starts whenever stream time crosses a window boundary (reads filter them out meanwhile).
class WindowedProcessor final : public Processor {
 public:
  WindowedProcessor(const WindowParams& window, StoreHandle handle, const StoreEngine& engine,
                    std::string store_name, std::unique_ptr<Processor> inner)
      : window_(window),
        handle_(handle),
        engine_(engine),
        store_name_(std::move(store_name)),
        inner_(std::move(inner)) {}

  absl::Status Process(const Record& record, StagedBatch& batch) override {
    // Checked before stream time moves: a record that is bad for every window must not
    // advance it.
    if (!record.key) return absl::InvalidArgumentError("null key");
    if (!record.value) return absl::InvalidArgumentError("null value");
    const std::vector<int64_t> starts = WindowStartsFor(window_, record.timestamp_ms);
    if (starts.empty()) {
      return absl::InvalidArgumentError(absl::StrCat("timestamp ", record.timestamp_ms,
                                                     " has no window (negative or too large)"));
    }
    absl::StatusOr<const std::optional<std::string>*> stored =
        batch.Read(handle_, record.partition, kStreamTime());
    if (!stored.ok()) return stored.status();
    std::optional<int64_t> old_time;
    if (**stored) {
      old_time = DecodeInt64(***stored);
      if (!old_time) {
        return absl::DataLossError(absl::StrCat("stream time entry is not 8 bytes (partition ",
                                                record.partition.value(), ")"));
      }
    }
    // Stream time includes the record itself (Kafka Streams updates it first).
    const int64_t stream_time =
        old_time ? std::max(*old_time, record.timestamp_ms) : record.timestamp_ms;
    for (int64_t start : starts) {
      if (!WindowAccepts(window_, start, stream_time)) {
        ++late_;
        spdlog::debug(
            "late record dropped: store={} topic={} partition={} offset={} "
            "timestamp={} window_start={} stream_time={}",
            store_name_, record.topic, record.partition.value(), record.offset.value(),
            record.timestamp_ms, start, stream_time);
        continue;
      }
      const std::string key = WindowKey(*record.key, start);
      Record windowed = record;
      windowed.key = key;
      // A bad record fails on its first window, before anything is written.
      if (absl::Status s = inner_->Process(windowed, batch); !s.ok()) return s;
    }
    if (!old_time || stream_time > *old_time) {
      if (absl::Status s =
              batch.Write(handle_, record.partition, kStreamTime(), EncodeInt64(stream_time));
          !s.ok()) {
        return s;
      }
      // Crossing a window boundary may expire the oldest windows: sweep the partition.
      if (old_time && Boundary(stream_time) != Boundary(*old_time)) {
        SweepState& state = sweeps_[record.partition.value()];
        // A sweep under way has checked its first keys against an older stream time: it
        // goes round once more when it ends.
        if (state.pending) {
          state.again = true;
        } else {
          state.pending = true;
        }
      }
    }
    return Sweep(record.partition, stream_time, batch);
  }

  int64_t TakeLateRecords() override { return std::exchange(late_, 0); }

 private:
  static absl::string_view kStreamTime() { return kStreamTimeKey; }
  int64_t Boundary(int64_t t) const { return t / window_.advance_ms; }

  struct SweepState {
    bool pending = false;
    bool again = false;
    std::optional<std::string> after;  // resume the partition scan after this key
  };

  // One bounded step of the sweep of partition `p`: deletes the expired windows among the
  // next kSweepStep committed entries. Deletes go through the batch (and so the changelog).
  absl::Status Sweep(PartitionId p, int64_t stream_time, StagedBatch& batch) {
    auto it = sweeps_.find(p.value());
    if (it == sweeps_.end() || !it->second.pending) return absl::OkStatus();
    SweepState& state = it->second;
    constexpr size_t kSweepStep = 256;
    absl::StatusOr<std::vector<router::KeyValue>> run =
        engine_.Scan(handle_, p, router::KeyRange{}, state.after, kSweepStep);
    if (!run.ok()) return run.status();
    for (const router::KeyValue& kv : *run) {
      std::optional<DecodedWindowKey> w = DecodeWindowKey(kv.key);
      if (!w || !WindowExpired(window_, w->start_ms, stream_time)) continue;
      if (absl::Status s = batch.Write(handle_, p, kv.key, std::nullopt); !s.ok()) return s;
    }
    if (run->size() < kSweepStep) {
      // The whole partition was swept.
      const bool again = state.again;
      state = SweepState{};
      state.pending = again;
    } else {
      state.after = run->back().key;
    }
    return absl::OkStatus();
  }

  const WindowParams window_;
  const StoreHandle handle_;
  const StoreEngine& engine_;
  const std::string store_name_;
  const std::unique_ptr<Processor> inner_;
  int64_t late_ = 0;
  absl::flat_hash_map<int32_t, SweepState> sweeps_;
};

template <typename Spec>
std::unique_ptr<Processor> MakeNumberProcessor(const Spec& spec, Fold fold, bool json_source,
                                               StoreHandle handle) {
  if (spec.type() == kiq::v1::NUMBER_TYPE_DOUBLE) {
    return std::make_unique<NumberProcessor<double>>(handle, fold, spec.field(), json_source);
  }
  return std::make_unique<NumberProcessor<int64_t>>(handle, fold, spec.field(), json_source);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Processor>> MakeProcessor(const kiq::v1::Store& store,
                                                         kiq::v1::Format value_format,
                                                         StoreHandle handle,
                                                         const StoreEngine* engine) {
  const bool json = value_format == kiq::v1::FORMAT_JSON;
  std::unique_ptr<Processor> processor;
  switch (store.kind_case()) {
    case kiq::v1::Store::kTable:
      processor = std::make_unique<TableProcessor>(handle);
      break;
    case kiq::v1::Store::kCount:
      processor = std::make_unique<CountProcessor>(handle);
      break;
    case kiq::v1::Store::kSum:
      processor = MakeNumberProcessor(store.sum(), Fold::kSum, json, handle);
      break;
    case kiq::v1::Store::kMin:
      processor = MakeNumberProcessor(store.min(), Fold::kMin, json, handle);
      break;
    case kiq::v1::Store::kMax:
      processor = MakeNumberProcessor(store.max(), Fold::kMax, json, handle);
      break;
    case kiq::v1::Store::kAggregate:
      processor = std::make_unique<AggregateProcessor>(handle, store.aggregate(), json);
      break;
    case kiq::v1::Store::kLatest:
      if (!json) {
        return absl::InvalidArgumentError(
            absl::StrCat("store \"", store.name(), "\": latest needs a JSON source"));
      }
      processor = std::make_unique<LatestProcessor>(handle, store.latest().field());
      break;
    case kiq::v1::Store::KIND_NOT_SET:
      return absl::InvalidArgumentError(absl::StrCat("store \"", store.name(), "\" has no kind"));
  }
  if (store.has_window()) {
    if (engine == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("store \"", store.name(), "\": a windowed store needs its store engine"));
    }
    std::vector<std::pair<std::string, std::string>> problems;
    const WindowParams window = ParseWindowSpec(store.window(), &problems);
    if (!problems.empty() || store.has_table()) {
      return absl::InvalidArgumentError(
          absl::StrCat("store \"", store.name(), "\": invalid window"));  // Refused by validation.
    }
    processor = std::make_unique<WindowedProcessor>(window, handle, *engine, store.name(),
                                                    std::move(processor));
  }
  // The filter comes first: records it drops never reach the windows (nor move stream time).
  if (store.has_filter()) {
    processor = std::make_unique<FilterProcessor>(store.filter(), json, store.has_table(),
                                                  std::move(processor));
  }
  return processor;
}

std::unique_ptr<Processor> MakeRepartitionProcessor(const kiq::v1::GroupBy& rekey,
                                                    const kiq::v1::Filter* filter,
                                                    kiq::v1::Format value_format, std::string topic,
                                                    int32_t partitions,
                                                    PartitionerKind partitioner) {
  const bool json = value_format == kiq::v1::FORMAT_JSON;
  std::unique_ptr<Processor> processor =
      std::make_unique<RepartitionProcessor>(std::move(topic), partitions, partitioner, rekey, json);
  if (filter != nullptr) {
    processor = std::make_unique<FilterProcessor>(*filter, json, /*table=*/false,
                                                  std::move(processor));
  }
  return processor;
}

}  // namespace kiq::node
