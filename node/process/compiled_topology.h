#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>
#include "absl/strings/string_view.h"

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "common/schema/schema_decoder.h"
#include "common/topology/json_value.h"
#include "common/topology/plan.h"
#include "kiq/v1/topology.pb.h"
#include "node/process/processor.h"
#include "node/store/store_engine.h"
#include "router/port/local_stores.h"

namespace kiq::node {

// A source as the ingestion sees it: the plan's (no runtime state).
using CompiledSource = SourcePlan;

// A store bound to its column family and processor.
struct CompiledStore : StorePlan {
  StoreHandle handle;
  std::unique_ptr<Processor> processor;
};

// Why a record was not applied to a store.
struct BadRecord {
  std::string store;
  std::string reason;
};

// A TopologyPlan (common/topology/plan.h) bound to the node's store engine: every store gets
// its column family handle and its processor. Process() is called by the ingestion thread
// only; the lookups are immutable after Compile and safe from any thread.
class CompiledTopology {
 public:
  // See TopologyPlan::Build; `engine` gives every store its column family. `json_limits`
  // bound every record key and value this topology decodes (see DecodeError).
  static absl::StatusOr<std::unique_ptr<CompiledTopology>> Compile(
      const kiq::v1::Topology& topology, StoreEngine& engine,
      const absl::flat_hash_map<std::string, int32_t>& partition_counts,
      const JsonLimits& json_limits = {}, schema::SchemaDecoder* schemas = nullptr);

  const TopologyPlan& plan() const { return plan_; }
  const std::string& application_id() const { return plan_.application_id(); }
  int32_t num_partitions() const { return plan_.num_partitions(); }
  const std::vector<CompiledSource>& sources() const { return plan_.sources(); }
  const std::vector<CompiledStore>& stores() const { return stores_; }
  // A queryable store by name (internal stages are not found).
  const CompiledStore* FindStore(absl::string_view name) const;
  const CompiledSource* FindSource(absl::string_view topic) const {
    return plan_.FindSource(topic);
  }

  // The partition the record's key maps to under its source's partitioner (nullopt for a null
  // key), for checking that producers partition as the topology says.
  static PartitionId ExpectedPartition(const CompiledSource& source, absl::string_view key) {
    return TopologyPlan::ExpectedPartition(source, key);
  }

  // Decodes the key and value of a source in a Schema Registry format (avro, protobuf,
  // json_sr): the value is replaced by its JSON text (kept here until the next call), which
  // DecodeError then checks and every store reads; the key is checked only (it stays the bytes
  // the producer wrote and partitioned by). OK at once for other formats. INVALID_ARGUMENT:
  // the record is bad (the reason); UNAVAILABLE: a schema id not cached yet (`*schema_id` says
  // which; its fetch runs on the decoder's thread): the record must wait, not be skipped. Thread as
  // DecodeError; the SchemaDecoder is shared and thread-safe.
  absl::Status DecodeRegistryFormats(Record& record, const CompiledSource& source,
                                     int32_t* schema_id);
  // The registry client and cache, or nullptr when no source has a registry format.
  schema::SchemaDecoder* schemas() const { return schemas_; }

  // Why the record does not decode under its source's key/value formats, if it does not
  // (formats belong to the source: such a record is bad for every store it feeds): a value
  // over json_limits().max_value_bytes (any format), JSON that is not JSON, not UTF-8 or
  // nests too deep (see ParseJson), text that is not UTF-8. Ingestion
  // thread only: a JSON value is parsed here once and kept for the Process calls that follow
  // for the same record.
  std::optional<std::string> DecodeError(const Record& record, const CompiledSource& source);

  // Applies one record to one store. INVALID_ARGUMENT: the record is bad for this store (the
  // batch stays valid); any other error is a storage failure. Ingestion thread only.
  absl::Status Process(const Record& record, int store_index, StagedBatch& batch);

  const JsonLimits& json_limits() const { return json_limits_; }

  // Record–window pairs the store dropped as late since the last call. Ingestion thread only.
  int64_t TakeLateRecords(int store_index);
  // Records the first stage of a group_by store dropped for a null key since the last call.
  int64_t TakeNullKeyRecords(int store_index);

  // Every changelog and repartition topic, with the partition count it must have.
  std::vector<InternalTopic> InternalTopics() const { return plan_.InternalTopics(); }

 private:
  CompiledTopology(TopologyPlan plan, const JsonLimits& json_limits,
                   schema::SchemaDecoder* schemas);

  const TopologyPlan plan_;
  const JsonLimits json_limits_;
  schema::SchemaDecoder* const schemas_;
  std::string decoded_key_;
  std::string decoded_value_;
  std::vector<CompiledStore> stores_;

  // The parsed value of the record being ingested (JSON sources), shared by its stores, and
  // which record that is. Used by the ingestion thread only.
  struct RecordId {
    const char* topic = nullptr;
    int32_t partition = -1;
    int64_t offset = -1;
    const char* value = nullptr;
    size_t size = 0;
    bool operator==(const RecordId& o) const {
      return topic == o.topic && partition == o.partition && offset == o.offset &&
             value == o.value && size == o.size;
    }
  };
  static RecordId IdOf(const Record& record);
  LazyJson& ValueJson(const Record& record);

  // Writes the joined value of `record` into join_value_ (see Store.join).
  absl::Status Join(const CompiledStore& store, const Record& record, StagedBatch& batch);

  LazyJson value_json_;
  RecordId value_json_of_;
  std::string join_value_;
  LazyJson join_json_;
};

}  // namespace kiq::node
