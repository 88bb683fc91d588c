#include "node/compiled_topology.h"

#include <rapidjson/document.h>

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
    CompiledSource& source = out->sources_[source_it->second];
    CompiledStore store;
    store.spec = spec;
    store.source = source_it->second;
    if (engine != nullptr) {
      absl::StatusOr<StoreHandle> handle = engine->Handle(spec.name());
      if (!handle.ok()) return handle.status();
      absl::StatusOr<std::unique_ptr<Processor>> processor =
          MakeProcessor(spec, source.spec.value_format(), *handle, engine);
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
    store.source_stream = absl::StrCat(spec.name(), "/", spec.source());
    source.stores.push_back(static_cast<int>(out->stores_.size()));
    out->store_index_[spec.name()] = static_cast<int>(out->stores_.size());
    out->stores_.push_back(std::move(store));
  }
  return out;
}

const CompiledStore* CompiledTopology::FindStore(absl::string_view name) const {
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

int64_t CompiledTopology::TakeLateRecords(int store_index) {
  CompiledStore& store = stores_[store_index];
  return store.processor ? store.processor->TakeLateRecords() : 0;
}

absl::Status CompiledTopology::Process(const Record& record, int store_index, StagedBatch& batch) {
  CompiledStore& store = stores_[store_index];
  absl::Status s;
  if (record.value && record.json == nullptr &&
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

std::vector<std::pair<std::string, int32_t>> CompiledTopology::InternalTopics() const {
  std::vector<std::pair<std::string, int32_t>> out;
  for (const CompiledStore& store : stores_) {
    if (!store.changelog_topic.empty()) out.emplace_back(store.changelog_topic, num_partitions_);
  }
  return out;
}

}  // namespace kiq::node
