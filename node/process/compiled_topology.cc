#include "node/process/compiled_topology.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/topology/formats.h"
#include "common/topology/partitioner.h"
#include "common/utf8.h"

namespace kiq::node {
namespace {

// Checks a key or value against its declared format; returns the reason it is bad, if it is.
std::optional<std::string> CheckFormat(kiq::v1::Format format, absl::string_view bytes,
                                       absl::string_view what, const JsonLimits& limits) {
  switch (format) {
    case kiq::v1::FORMAT_JSON: {
      rapidjson::Document doc;
      absl::Status s = ParseJson(bytes, limits, what, &doc);
      if (!s.ok()) return std::string(s.message());
      return std::nullopt;
    }
    case kiq::v1::FORMAT_BYTES:
    case kiq::v1::FORMAT_AVRO:  // registry formats: see DecodeRegistryFormats
    case kiq::v1::FORMAT_PROTOBUF:
    case kiq::v1::FORMAT_JSON_SR:
      return std::nullopt;
    default:
      if (!IsValidUtf8(bytes)) return absl::StrCat(what, " is not UTF-8");
      return std::nullopt;
  }
}

// A joined value holds a source value and a table value, each within `limits`, one level
// deeper (see CompiledTopology::Join).
JsonLimits JoinedLimits(const JsonLimits& limits) {
  JsonLimits joined = limits;
  joined.max_depth = limits.max_depth + 1;
  joined.max_value_bytes = 2 * limits.max_value_bytes + 1024;
  return joined;
}

}  // namespace

CompiledTopology::CompiledTopology(TopologyPlan plan, const JsonLimits& json_limits,
                                   schema::SchemaDecoder* schemas)
    : plan_(std::move(plan)),
      json_limits_(json_limits),
      schemas_(schemas),
      value_json_(json_limits),
      join_json_(JoinedLimits(json_limits)) {}

absl::StatusOr<std::unique_ptr<CompiledTopology>> CompiledTopology::Compile(
    const kiq::v1::Topology& topology, StoreEngine& engine,
    const absl::flat_hash_map<std::string, int32_t>& partition_counts,
    const JsonLimits& json_limits, schema::SchemaDecoder* schemas) {
  absl::StatusOr<TopologyPlan> plan = TopologyPlan::Build(topology, partition_counts);
  if (!plan.ok()) return plan.status();
  for (const SourcePlan& source : plan->sources()) {
    if (schemas == nullptr && (IsRegistryFormat(source.spec.key_format()) ||
                               IsRegistryFormat(source.spec.value_format()))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "source ", source.spec.topic(), " needs a schema registry (schema_registry.url)"));
    }
  }
  std::unique_ptr<CompiledTopology> out(
      new CompiledTopology(*std::move(plan), json_limits, schemas));
  for (const StorePlan& planned : out->plan_.stores()) {
    CompiledStore store;
    static_cast<StorePlan&>(store) = planned;
    if (planned.internal) {
      const SourcePlan& forward_to = out->plan_.sources()[planned.forward_to];
      store.processor = MakeRepartitionProcessor(
          planned.rekey, planned.spec.has_filter() ? &planned.spec.filter() : nullptr,
          planned.value_format, forward_to.spec.topic(), forward_to.num_partitions,
          forward_to.partitioner);
    } else {
      // A group_by store's own processor reads the repartition topic: its join, filter and
      // grouping ran in the internal first stage. (A store that joins on a field without a
      // group_by joins and filters here, reading the join repartition topic.)
      kiq::v1::Store kind_spec = planned.spec;
      if (kind_spec.has_group_by()) {
        kind_spec.clear_join();
        kind_spec.clear_filter();
        kind_spec.clear_group_by();
      }
      absl::StatusOr<StoreHandle> handle = engine.Handle(planned.spec.name());
      if (!handle.ok()) return handle.status();
      absl::StatusOr<std::unique_ptr<Processor>> processor =
          MakeProcessor(kind_spec, planned.value_format, *handle, &engine);
      if (!processor.ok()) return processor.status();
      store.handle = *handle;
      store.processor = std::move(*processor);
    }
    out->stores_.push_back(std::move(store));
  }
  return out;
}

const CompiledStore* CompiledTopology::FindStore(absl::string_view name) const {
  const int index = plan_.StoreIndex(name);
  return index < 0 ? nullptr : &stores_[index];
}

CompiledTopology::RecordId CompiledTopology::IdOf(const Record& record) {
  RecordId id;
  id.topic = record.topic.data();
  id.partition = record.partition.value();
  id.offset = record.offset.value();
  id.value = record.value ? record.value->data() : nullptr;
  id.size = record.value ? record.value->size() : 0;
  return id;
}

LazyJson& CompiledTopology::ValueJson(const Record& record) {
  const RecordId id = IdOf(record);
  if (!(id == value_json_of_)) {
    value_json_.Reset(*record.value);
    value_json_of_ = id;
  }
  return value_json_;
}

absl::Status CompiledTopology::DecodeRegistryFormats(Record& record, const CompiledSource& source,
                                                     int32_t* schema_id) {
  const kiq::v1::Format key_format = source.spec.key_format();
  const kiq::v1::Format value_format = source.spec.value_format();
  if (record.key && IsRegistryFormat(key_format)) {
    if (absl::Status s = schemas_->Decode(key_format, *record.key, "key", json_limits_,
                                          &decoded_key_, schema_id);
        !s.ok()) {
      return s;
    }
  }
  if (record.value && IsRegistryFormat(value_format)) {
    if (record.value->size() > json_limits_.max_value_bytes) return absl::OkStatus();  // see DecodeError
    if (absl::Status s = schemas_->Decode(value_format, *record.value, "value", json_limits_,
                                          &decoded_value_, schema_id);
        !s.ok()) {
      return s;
    }
    record.value = absl::string_view(decoded_value_);
  }
  return absl::OkStatus();
}

std::optional<std::string> CompiledTopology::DecodeError(const Record& record,
                                                         const CompiledSource& source) {
  std::optional<std::string> reason;
  if (record.key) {
    reason = CheckFormat(source.spec.key_format(), *record.key, "key", json_limits_);
  }
  if (!reason && record.value) {
    if (record.value->size() > json_limits_.max_value_bytes) {
      reason = absl::StrCat("value too large (", record.value->size(), " bytes; the limit is ",
                            json_limits_.max_value_bytes, ")");
    } else if (DecodedFormat(source.spec.value_format()) == kiq::v1::FORMAT_JSON) {
      // Parsed once for the check and every store of the source.
      LazyJson& json = ValueJson(record);
      if (json.Root() == nullptr) reason = std::string(json.error().message());
    } else {
      reason = CheckFormat(source.spec.value_format(), *record.value, "value", json_limits_);
    }
  }
  return reason;
}

namespace {

// Appends `value` (of a source or table with `format`) to a JSON document: JSON text as it is,
// a string as a JSON string; null as null.
void AppendJoinSide(std::string& out, absl::string_view name,
                    const std::optional<absl::string_view>& value, kiq::v1::Format format) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.String(name.data(), static_cast<rapidjson::SizeType>(name.size()));
  out.append(buffer.GetString(), buffer.GetSize());
  out.push_back(':');
  if (!value) {
    out.append("null");
  } else if (format == kiq::v1::FORMAT_JSON) {
    out.append(value->data(), value->size());
  } else {
    buffer.Clear();
    writer.Reset(buffer);
    writer.String(value->data(), static_cast<rapidjson::SizeType>(value->size()));
    out.append(buffer.GetString(), buffer.GetSize());
  }
}

}  // namespace

absl::Status CompiledTopology::Join(const CompiledStore& store, const Record& record,
                                    StagedBatch& batch) {
  const CompiledStore& table = stores_[store.join_table];
  // The table as this batch sees it: a customer updated earlier in the same batch is joined
  // with its new value, as if the records had been processed one by one. A null key matches
  // no row (SQL): the table side is null.
  static const std::optional<std::string> kNoRow;
  const std::optional<std::string>* row = &kNoRow;
  if (record.key) {
    absl::StatusOr<const std::optional<std::string>*> current =
        batch.Read(table.handle, record.partition, *record.key);
    if (!current.ok()) return current.status();
    row = *current;
  }
  join_value_.clear();
  join_value_.push_back('{');
  AppendJoinSide(join_value_, store.join_source_as, record.value,
                 DecodedFormat(plan_.sources()[store.source].spec.value_format()));
  join_value_.push_back(',');
  std::optional<absl::string_view> right;
  if (*row) right = absl::string_view(**row);
  AppendJoinSide(join_value_, store.join_table_as, right,
                 DecodedFormat(plan_.sources()[table.source].spec.value_format()));
  join_value_.push_back('}');
  join_json_.Reset(join_value_);
  return absl::OkStatus();
}

int64_t CompiledTopology::TakeLateRecords(int store_index) {
  CompiledStore& store = stores_[store_index];
  return store.processor ? store.processor->TakeLateRecords() : 0;
}

int64_t CompiledTopology::TakeNullKeyRecords(int store_index) {
  CompiledStore& store = stores_[store_index];
  return store.processor ? store.processor->TakeNullKeyRecords() : 0;
}

absl::Status CompiledTopology::Process(const Record& record, int store_index, StagedBatch& batch) {
  CompiledStore& store = stores_[store_index];
  absl::Status s;
  if (store.join_table >= 0 && record.value) {
    // Left join: every record goes on, with null for a key the table does not have (or a null
    // key: a group_by may still re-key it). A null value (a tombstone) has nothing to enrich:
    // it goes on as it is, for the kind to judge.
    s = Join(store, record, batch);
    if (s.ok()) {
      Record joined = record;
      joined.value = absl::string_view(join_value_);
      joined.json = &join_json_;
      s = store.processor->Process(joined, batch);
    }
  } else if (record.value && record.json == nullptr &&
             DecodedFormat(plan_.sources()[store.source].spec.value_format()) ==
                 kiq::v1::FORMAT_JSON) {
    Record parsed = record;
    parsed.json = &ValueJson(record);
    s = store.processor->Process(parsed, batch);
  } else {
    s = store.processor->Process(record, batch);
  }
  if (s.ok() || absl::IsInvalidArgument(s)) return s;
  return absl::Status(s.code(), absl::StrCat("store=", store.info.name, " topic=", record.topic,
                                             " partition=", record.partition.value(),
                                             " offset=", record.offset.value(), ": ", s.message()));
}

}  // namespace kiq::node
