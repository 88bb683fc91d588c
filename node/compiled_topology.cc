#include "node/compiled_topology.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "router/entry.h"
#include "router/partitioner.h"

namespace kiq::node {
namespace {

// Checks a key or value against its declared format; returns the reason it is bad, if it is.
std::optional<std::string> CheckFormat(kiq::v1::Format format, absl::string_view bytes,
                                       absl::string_view what) {
  switch (format) {
    case kiq::v1::FORMAT_JSON: {
      rapidjson::Document doc;
      doc.Parse(bytes.data(), bytes.size());
      if (doc.HasParseError()) return absl::StrCat(what, " is not JSON");
      return std::nullopt;
    }
    case kiq::v1::FORMAT_BYTES:
      return std::nullopt;
    default:
      if (!router::IsValidUtf8(bytes)) return absl::StrCat(what, " is not UTF-8");
      return std::nullopt;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<CompiledTopology>> CompiledTopology::Compile(
    const kiq::v1::Topology& topology, StoreEngine* engine,
    const absl::flat_hash_map<std::string, int32_t>& partition_counts) {
  std::unique_ptr<CompiledTopology> out(new CompiledTopology());
  out->topology_ = topology;
  std::vector<std::string> counts;
  for (const kiq::v1::Source& spec : topology.sources()) {
    auto it = partition_counts.find(spec.topic());
    if (it == partition_counts.end() || it->second <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("source topic \"", spec.topic(), "\" does not exist"));
    }
    CompiledSource source;
    source.spec = spec;
    source.num_partitions = it->second;
    source.partitioner = spec.partitioner() == kiq::v1::PARTITIONER_CONSISTENT
                             ? router::PartitionerKind::kConsistent
                             : router::PartitionerKind::kMurmur2;
    counts.push_back(absl::StrCat(spec.topic(), "=", it->second));
    if (out->num_partitions_ == 0) out->num_partitions_ = it->second;
    out->source_index_[spec.topic()] = static_cast<int>(out->sources_.size());
    out->sources_.push_back(std::move(source));
  }
  for (const CompiledSource& source : out->sources_) {
    if (source.num_partitions != out->num_partitions_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "source topics are not co-partitioned (partition counts: ", absl::StrJoin(counts, ", "),
          "): every source of a topology must have the same number of partitions"));
    }
  }
  for (const kiq::v1::Store& spec : topology.stores()) {
    auto source_it = out->source_index_.find(spec.source());
    if (source_it == out->source_index_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("store \"", spec.name(),
                                                     "\": unknown source \"", spec.source(), "\""));
    }
    // What the store's own processor reads: the user's source, or for group_by the repartition
    // topic, whose records are already joined and filtered by the internal first stage.
    int source_index = source_it->second;
    kiq::v1::Store kind_spec = spec;
    kiq::v1::Format value_format = out->sources_[source_index].spec.value_format();
    if (spec.has_join()) value_format = kiq::v1::FORMAT_JSON;
    if (spec.has_group_by()) {
      CompiledSource repartition;
      repartition.spec.set_topic(
          absl::StrCat(topology.application_id(), "-", spec.name(), "-repartition"));
      repartition.spec.set_key_format(kiq::v1::FORMAT_STRING);
      repartition.spec.set_value_format(value_format);
      repartition.spec.set_partitioner(kiq::v1::PARTITIONER_MURMUR2);
      repartition.num_partitions = out->num_partitions_;
      repartition.repartition = true;
      source_index = static_cast<int>(out->sources_.size());
      out->source_index_[repartition.spec.topic()] = source_index;
      out->sources_.push_back(std::move(repartition));
      kind_spec.clear_join();
      kind_spec.clear_filter();
      kind_spec.clear_group_by();
    }
    CompiledSource& source = out->sources_[source_index];
    CompiledStore store;
    store.spec = spec;
    store.source = source_index;
    if (engine != nullptr) {
      absl::StatusOr<StoreHandle> handle = engine->Handle(spec.name());
      if (!handle.ok()) return handle.status();
      absl::StatusOr<std::unique_ptr<Processor>> processor =
          MakeProcessor(kind_spec, value_format, *handle, engine);
      if (!processor.ok()) return processor.status();
      store.handle = *handle;
      store.processor = std::move(*processor);
    }
    store.info.name = spec.name();
    store.info.kind = StoreKindName(spec);
    store.info.num_partitions = source.num_partitions;
    store.info.partitioner = source.partitioner;
    store.info.value_kind = ValueKindOf(spec, source.spec);
    if (spec.has_window()) {
      std::vector<std::pair<std::string, std::string>> problems;
      store.window = ParseWindowSpec(spec.window(), &problems);
      store.info.window_size_ms = store.window->size_ms;
    }
    if (!spec.has_table()) {
      store.changelog_topic =
          absl::StrCat(topology.application_id(), "-", spec.name(), "-changelog");
      store.changelog_stream = absl::StrCat(spec.name(), "/", store.changelog_topic);
    }
    store.source_stream = absl::StrCat(spec.name(), "/", source.spec.topic());
    source.stores.push_back(static_cast<int>(out->stores_.size()));
    out->store_index_[spec.name()] = static_cast<int>(out->stores_.size());
    out->stores_.push_back(std::move(store));
  }
  // The internal first stages of group_by stores come after the user's stores, so that a
  // store's index stays its column family's (StoreEngine::Handle order).
  const size_t user_stores = out->stores_.size();
  for (size_t i = 0; i < user_stores; ++i) {
    const kiq::v1::Store& spec = out->stores_[i].spec;
    if (!spec.has_group_by()) continue;
    const int source_index = out->source_index_.at(spec.source());
    const CompiledSource& grouped_source = out->sources_[out->stores_[i].source];
    CompiledStore stage;
    stage.spec = spec;
    stage.internal = true;
    stage.grouped = static_cast<int>(i);
    stage.source = source_index;
    // '#' cannot appear in a store name: no user store or offset stream collides with it.
    stage.info.name = absl::StrCat(spec.name(), "#repartition");
    stage.info.kind = "repartition";
    stage.info.num_partitions = out->num_partitions_;
    stage.source_stream = absl::StrCat(stage.info.name, "/", spec.source());
    if (engine != nullptr) {
      kiq::v1::Format format = out->sources_[source_index].spec.value_format();
      if (spec.has_join()) format = kiq::v1::FORMAT_JSON;
      stage.processor = MakeRepartitionProcessor(spec, format, grouped_source.spec.topic(),
                                                 out->num_partitions_);
    }
    out->sources_[source_index].stores.push_back(static_cast<int>(out->stores_.size()));
    out->stores_.push_back(std::move(stage));
  }
  // Joins run in the stage that reads the user's source: the store itself, or its first stage.
  for (CompiledStore& store : out->stores_) {
    if (!store.spec.has_join() || (store.spec.has_group_by() && !store.internal)) continue;
    const kiq::v1::Join& join = store.spec.join();
    auto table = out->store_index_.find(join.table());
    if (table == out->store_index_.end() || !out->stores_[table->second].spec.has_table()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "store \"", store.spec.name(), "\": join.table \"", join.table(), "\" is not a table"));
    }
    store.join_table = table->second;
    store.join_source_as = join.source_as().empty() ? store.spec.source() : join.source_as();
    store.join_table_as = join.table_as().empty() ? join.table() : join.table_as();
  }
  return out;
}

const CompiledStore* CompiledTopology::FindStore(absl::string_view name) const {
  // Internal stages are not in store_index_.
  auto it = store_index_.find(name);
  return it == store_index_.end() ? nullptr : &stores_[it->second];
}

const CompiledSource* CompiledTopology::FindSource(absl::string_view topic) const {
  auto it = source_index_.find(topic);
  return it == source_index_.end() ? nullptr : &sources_[it->second];
}

std::optional<PartitionId> CompiledTopology::ExpectedPartition(const CompiledSource& source,
                                                               absl::string_view key) const {
  return PartitionId(router::PartitionForKey(source.partitioner, key, source.num_partitions));
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

std::optional<std::string> CompiledTopology::DecodeError(const Record& record,
                                                         const CompiledSource& source) {
  std::optional<std::string> reason;
  if (record.key) reason = CheckFormat(source.spec.key_format(), *record.key, "key");
  if (!reason && record.value) {
    if (source.spec.value_format() == kiq::v1::FORMAT_JSON) {
      // Parsed once for the check and every store of the source.
      if (ValueJson(record).Root() == nullptr) reason = "value is not JSON";
    } else {
      reason = CheckFormat(source.spec.value_format(), *record.value, "value");
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
  // with its new value, as if the records had been processed one by one.
  absl::StatusOr<const std::optional<std::string>*> current =
      batch.Read(table.handle, record.partition, *record.key);
  if (!current.ok()) return current.status();
  join_value_.clear();
  join_value_.push_back('{');
  AppendJoinSide(join_value_, store.join_source_as, record.value,
                 sources_[store.source].spec.value_format());
  join_value_.push_back(',');
  std::optional<absl::string_view> right;
  if (**current) right = absl::string_view(***current);
  AppendJoinSide(join_value_, store.join_table_as, right,
                 sources_[table.source].spec.value_format());
  join_value_.push_back('}');
  join_json_.Reset(join_value_);
  return absl::OkStatus();
}

int64_t CompiledTopology::TakeLateRecords(int store_index) {
  CompiledStore& store = stores_[store_index];
  return store.processor ? store.processor->TakeLateRecords() : 0;
}

absl::Status CompiledTopology::Process(const Record& record, int store_index, StagedBatch& batch) {
  CompiledStore& store = stores_[store_index];
  absl::Status s;
  if (store.join_table >= 0 && record.key && record.value) {
    // Left join: every record goes on, with null for a key the table does not have. A null
    // key cannot be looked up and a null value (a tombstone) has nothing to enrich: both go on
    // as they are, for the kind to judge.
    s = Join(store, record, batch);
    if (s.ok()) {
      Record joined = record;
      joined.value = absl::string_view(join_value_);
      joined.json = &join_json_;
      s = store.processor->Process(joined, batch);
    }
  } else if (record.value && record.json == nullptr &&
             sources_[store.source].spec.value_format() == kiq::v1::FORMAT_JSON) {
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

std::vector<CompiledTopology::InternalTopic> CompiledTopology::InternalTopics() const {
  std::vector<InternalTopic> out;
  for (const CompiledStore& store : stores_) {
    if (!store.changelog_topic.empty()) {
      out.push_back({store.changelog_topic, num_partitions_, /*compacted=*/true});
    }
  }
  for (const CompiledSource& source : sources_) {
    if (source.repartition) out.push_back({source.spec.topic(), num_partitions_, false});
  }
  return out;
}

}  // namespace kiq::node
