#pragma once

#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "kiq/v1/topology.pb.h"
#include "node/json_value.h"
#include "node/processor.h"
#include "node/store_engine.h"
#include "node/window.h"
#include "router/local_stores.h"

namespace kiq::node {

struct CompiledSource {
  // For a repartition topic (internal), a spec made up by Compile: key STRING, murmur2.
  kiq::v1::Source spec;
  // `<app>-<store>-repartition`, fed by this application itself.
  bool repartition = false;
  int32_t num_partitions = 0;
  router::PartitionerKind partitioner = router::PartitionerKind::kMurmur2;
  std::vector<int> stores;  // indexes into CompiledTopology::stores()
};

struct CompiledStore {
  kiq::v1::Store spec;
  // The first half of a group_by store: it reads the user's source, joins and filters, and
  // forwards each record re-keyed to the repartition topic, whose consumer (the store itself,
  // `grouped`) aggregates. Internal: no column family, not queryable, not advertised.
  bool internal = false;
  int grouped = -1;  // for internal stages: index of the store they feed
  // Stream–table join: index of the table store read for each record, and the names of the
  // two sides in the joined value (-1: no join).
  int join_table = -1;
  std::string join_source_as;
  std::string join_table_as;
  router::StoreInfo info;
  StoreHandle handle;
  int source = -1;  // index into CompiledTopology::sources()
  std::unique_ptr<Processor> processor;
  // Set for windowed stores.
  std::optional<WindowParams> window;
  // `<app>-<store>-changelog` for stores that cannot be rebuilt from their source alone
  // (aggregates); empty for tables, whose source topic is their changelog.
  std::string changelog_topic;
  // Names under which the store engine keeps this store's offsets: the next source offset
  // ("<store>/<topic>") and the next changelog offset to restore from ("<store>/<changelog>").
  // Store and topic names cannot contain '/', so these never collide.
  std::string source_stream;
  std::string changelog_stream;
};

// Why a record was not applied to a store.
struct BadRecord {
  std::string store;
  std::string reason;
};

// A validated topology bound to the node's store engine and the source topics' partition
// counts: which stores each topic feeds and how. Process() is called by the ingestion thread
// only; the lookups are immutable after Compile and safe from any thread.
class CompiledTopology {
 public:
  // `partition_counts`: topic → number of partitions, for every source (from Kafka metadata).
  // Refuses sources that are not co-partitioned (every store partition p must be fed by
  // partition p of each source). Without an engine (kiq-router), stores are only described:
  // no column family handles, no processors.
  static absl::StatusOr<std::unique_ptr<CompiledTopology>> Compile(
      const kiq::v1::Topology& topology, StoreEngine* engine,
      const absl::flat_hash_map<std::string, int32_t>& partition_counts);

  const std::string& application_id() const { return topology_.application_id(); }
  int32_t num_partitions() const { return num_partitions_; }
  const std::vector<CompiledSource>& sources() const { return sources_; }
  const std::vector<CompiledStore>& stores() const { return stores_; }
  // A queryable store by name (internal stages are not found).
  const CompiledStore* FindStore(absl::string_view name) const;
  const CompiledSource* FindSource(absl::string_view topic) const;

  // The partition the record's key maps to under its source's partitioner (nullopt for a null
  // key), for checking that producers partition as the topology says.
  std::optional<PartitionId> ExpectedPartition(const CompiledSource& source,
                                               absl::string_view key) const;

  // Why the record does not decode under its source's key/value formats, if it does not
  // (formats belong to the source: such a record is bad for every store it feeds). Ingestion
  // thread only: a JSON value is parsed here once and kept for the Process calls that follow
  // for the same record.
  std::optional<std::string> DecodeError(const Record& record, const CompiledSource& source);

  // Applies one record to one store. INVALID_ARGUMENT: the record is bad for this store (the
  // batch stays valid); any other error is a storage failure. Ingestion thread only.
  absl::Status Process(const Record& record, int store_index, StagedBatch& batch);

  // Record–window pairs the store dropped as late since the last call. Ingestion thread only.
  int64_t TakeLateRecords(int store_index);

  // Every changelog and repartition topic, with the partition count it must have.
  struct InternalTopic {
    std::string name;
    int32_t partitions = 0;
    bool compacted = false;  // changelogs are compacted; repartition topics are not
  };
  std::vector<InternalTopic> InternalTopics() const;

  // The header that carries, on a repartition record, the upstream partition and offset it
  // came from ("<partition>:<offset>"), so the grouped store can drop the duplicates that a
  // re-processed upstream batch forwards again.
  static constexpr char kUpstreamHeader[] = "kiq.upstream";

 private:
  CompiledTopology() = default;

  kiq::v1::Topology topology_;
  int32_t num_partitions_ = 0;
  std::vector<CompiledSource> sources_;
  std::vector<CompiledStore> stores_;
  absl::flat_hash_map<std::string, int> store_index_;
  absl::flat_hash_map<std::string, int> source_index_;

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
