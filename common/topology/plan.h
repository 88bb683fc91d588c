#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/topology/partitioner.h"
#include "common/topology/store_info.h"
#include "common/topology/window.h"
#include "common/types.h"
#include "kiq/v1/topology.pb.h"

namespace kiq {

// `<app>-<store>-join-repartition`: the stream of a store that joins on a field, re-keyed by
// the join key.
inline std::string JoinRepartitionTopic(absl::string_view application_id,
                                        absl::string_view store) {
  return absl::StrCat(application_id, "-", store, "-join-repartition");
}

// What one topic feeds: a source of the topology, or a repartition topic it implies.
struct SourcePlan {
  // For a repartition topic (internal), a spec made up by the plan: key STRING, murmur2.
  kiq::v1::Source spec;
  // `<app>-<store>-repartition` or `<app>-<store>-join-repartition`, fed by this application
  // itself.
  bool repartition = false;
  int32_t num_partitions = 0;
  PartitionerKind partitioner = PartitionerKind::kMurmur2;
  std::vector<int> stores;  // indexes into TopologyPlan::stores()
};

// One store as it is laid out: where it reads from, what it is called in Kafka and RocksDB.
struct StorePlan {
  kiq::v1::Store spec;
  // The first half of a group_by store: it reads the user's source, joins and filters, and
  // forwards each record re-keyed to the repartition topic, whose consumer (the store itself,
  // `grouped`) aggregates. Internal: no column family, not queryable, not advertised.
  // A store that joins on a field (join.by) has a second internal stage before it: it reads
  // the user's source and forwards each record, re-keyed by the join key and unjoined, to the
  // join repartition topic, which the joining stage (the store, or its group_by stage) reads.
  bool internal = false;
  int grouped = -1;  // for internal stages: index of the store they feed
  // For internal stages: the spec of the key they forward under (group_by, or join.by), and
  // the index into TopologyPlan::sources() of the repartition topic they forward to.
  kiq::v1::GroupBy rekey;
  int forward_to = -1;
  // Stream–table join: index of the table store read for each record, and the names of the
  // two sides in the joined value (-1: no join).
  int join_table = -1;
  std::string join_source_as;
  std::string join_table_as;
  StoreInfo info;
  int source = -1;  // index into TopologyPlan::sources()
  // The format of the values the store's own processor reads (JSON after a join).
  kiq::v1::Format value_format = kiq::v1::FORMAT_UNSPECIFIED;
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

  // Name under which the store engine keeps a grouped store's next offset from one upstream
  // partition (its dedup watermark for records forwarded through the repartition topic).
  std::string UpstreamStream(int32_t upstream) const {
    return absl::StrCat(source_stream, "/", upstream);
  }
};

// A topic kiq itself owns (members, dead letters, changelog, repartition).
struct InternalTopic {
  std::string name;
  int32_t partitions = 0;
  // The members topic and changelogs are compacted (only the newest value per key matters);
  // dead letters and repartition topics keep the broker's default delete policy.
  bool compacted = false;
  // Changelogs and repartition topics must have exactly `partitions` (partition p holds store
  // partition p); the others only need to exist.
  bool co_partitioned = true;
};

// The layout of a validated topology over the source topics' partition counts: which stores
// each topic feeds, the internal topics and offset streams they imply, and how each store is
// described to the router. No runtime state: kiq-router builds one to describe the stores,
// kiq-node binds one to its store engine (node/process/compiled_topology.h). Immutable after
// Build; thread-safe.
class TopologyPlan {
 public:
  // `partition_counts`: topic → number of partitions, for every source (from Kafka metadata).
  // Refuses sources that are not co-partitioned (every store partition p must be fed by
  // partition p of each source).
  static absl::StatusOr<TopologyPlan> Build(
      const kiq::v1::Topology& topology,
      const absl::flat_hash_map<std::string, int32_t>& partition_counts);

  const kiq::v1::Topology& topology() const { return topology_; }
  const std::string& application_id() const { return topology_.application_id(); }
  int32_t num_partitions() const { return num_partitions_; }
  const std::vector<SourcePlan>& sources() const { return sources_; }
  const std::vector<StorePlan>& stores() const { return stores_; }
  // Index of a queryable store by name (internal stages are not found), or -1.
  int StoreIndex(absl::string_view name) const;
  const SourcePlan* FindSource(absl::string_view topic) const;
  // The stores the router serves (every store but the internal stages).
  std::vector<StoreInfo> QueryableStores() const;

  // The partition the record's key maps to under its source's partitioner, for checking that
  // producers partition as the topology says.
  static PartitionId ExpectedPartition(const SourcePlan& source, absl::string_view key);

  // `<app>-members`: where nodes advertise themselves (compacted, keyed by node id).
  std::string members_topic() const { return absl::StrCat(application_id(), "-members"); }
  // `<app>-dlq`: records skipped as bad, with the reason in their headers.
  std::string dlq_topic() const { return absl::StrCat(application_id(), "-dlq"); }

  // Every topic kiq owns: members, dead letters, changelogs, repartition topics.
  std::vector<InternalTopic> InternalTopics() const;

 private:
  kiq::v1::Topology topology_;
  int32_t num_partitions_ = 0;
  std::vector<SourcePlan> sources_;
  std::vector<StorePlan> stores_;
  absl::flat_hash_map<std::string, int> store_index_;
  absl::flat_hash_map<std::string, int> source_index_;
};

}  // namespace kiq
