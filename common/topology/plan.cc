#include "common/topology/plan.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/topology/formats.h"

namespace kiq {

absl::StatusOr<TopologyPlan> TopologyPlan::Build(
    const kiq::v1::Topology& topology,
    const absl::flat_hash_map<std::string, int32_t>& partition_counts) {
  TopologyPlan out;
  out.topology_ = topology;
  std::vector<std::string> counts;
  for (const kiq::v1::Source& spec : topology.sources()) {
    auto it = partition_counts.find(spec.topic());
    if (it == partition_counts.end() || it->second <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("source topic \"", spec.topic(), "\" does not exist"));
    }
    SourcePlan source;
    source.spec = spec;
    source.num_partitions = it->second;
    source.partitioner = spec.partitioner() == kiq::v1::PARTITIONER_CONSISTENT
                             ? PartitionerKind::kConsistent
                             : PartitionerKind::kMurmur2;
    counts.push_back(absl::StrCat(spec.topic(), "=", it->second));
    if (out.num_partitions_ == 0) out.num_partitions_ = it->second;
    out.source_index_[spec.topic()] = static_cast<int>(out.sources_.size());
    out.sources_.push_back(std::move(source));
  }
  for (const SourcePlan& source : out.sources_) {
    if (source.num_partitions != out.num_partitions_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "source topics are not co-partitioned (partition counts: ", absl::StrJoin(counts, ", "),
          "): every source of a topology must have the same number of partitions"));
    }
  }
  // A repartition topic fed by this application (string keys); returns its source index.
  auto add_repartition = [&out](std::string topic, kiq::v1::Format value_format,
                                PartitionerKind partitioner) {
    SourcePlan repartition;
    repartition.spec.set_topic(std::move(topic));
    repartition.spec.set_key_format(kiq::v1::FORMAT_STRING);
    repartition.spec.set_value_format(value_format);
    repartition.spec.set_partitioner(partitioner == PartitionerKind::kConsistent
                                         ? kiq::v1::PARTITIONER_CONSISTENT
                                         : kiq::v1::PARTITIONER_MURMUR2);
    repartition.partitioner = partitioner;
    repartition.num_partitions = out.num_partitions_;
    repartition.repartition = true;
    const int index = static_cast<int>(out.sources_.size());
    out.source_index_[repartition.spec.topic()] = index;
    out.sources_.push_back(std::move(repartition));
    return index;
  };
  for (const kiq::v1::Store& spec : topology.stores()) {
    auto source_it = out.source_index_.find(spec.source());
    if (source_it == out.source_index_.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("store \"", spec.name(), "\": unknown source \"", spec.source(), "\""));
    }
    // What the store's own processor reads: the user's source, or for group_by the repartition
    // topic, whose records are already joined and filtered by the internal first stage; a join
    // on a field reads the join repartition topic, whose records are only re-keyed.
    int source_index = source_it->second;
    kiq::v1::Format value_format = DecodedFormat(out.sources_[source_index].spec.value_format());
    if (spec.has_join() && spec.join().has_by()) {
      // Partitioned as the table, so that partition p of it meets the table's partition p.
      PartitionerKind table_partitioner = PartitionerKind::kMurmur2;
      for (const kiq::v1::Store& table : topology.stores()) {
        if (table.name() != spec.join().table()) continue;
        if (auto it = out.source_index_.find(table.source()); it != out.source_index_.end()) {
          table_partitioner = out.sources_[it->second].partitioner;
        }
      }
      source_index = add_repartition(JoinRepartitionTopic(topology.application_id(), spec.name()),
                                     value_format, table_partitioner);
    }
    if (spec.has_join()) value_format = kiq::v1::FORMAT_JSON;
    if (spec.has_group_by()) {
      source_index =
          add_repartition(absl::StrCat(topology.application_id(), "-", spec.name(), "-repartition"),
                          value_format, PartitionerKind::kMurmur2);
    }
    SourcePlan& source = out.sources_[source_index];
    StorePlan store;
    store.spec = spec;
    store.source = source_index;
    store.value_format = value_format;
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
    source.stores.push_back(static_cast<int>(out.stores_.size()));
    out.store_index_[spec.name()] = static_cast<int>(out.stores_.size());
    out.stores_.push_back(std::move(store));
  }
  // The internal stages of group_by stores and of joins on a field come after the user's
  // stores, so that a store's index stays its column family's (StoreEngine::Handle order).
  const size_t user_stores = out.stores_.size();
  for (size_t i = 0; i < user_stores; ++i) {
    const kiq::v1::Store spec = out.stores_[i].spec;
    const bool join_by = spec.has_join() && spec.join().has_by();
    if (!spec.has_group_by() && !join_by) continue;
    // The topic the next stage reads: the user's source, then each stage's repartition topic.
    int upstream = out.source_index_.at(spec.source());
    if (join_by) {
      // Re-keys the unjoined stream by the join key; the join, filter and group_by run after.
      StorePlan stage;
      stage.spec = spec;
      stage.spec.clear_join();
      stage.spec.clear_filter();
      stage.spec.clear_group_by();
      stage.spec.clear_window();
      stage.internal = true;
      stage.grouped = static_cast<int>(i);
      stage.source = upstream;
      stage.value_format = DecodedFormat(out.sources_[upstream].spec.value_format());
      stage.rekey = spec.join().by();
      stage.forward_to =
          out.source_index_.at(JoinRepartitionTopic(topology.application_id(), spec.name()));
      // '#' cannot appear in a store name: no user store or offset stream collides with it.
      stage.info.name = absl::StrCat(spec.name(), "#join-repartition");
      stage.info.kind = "repartition";
      stage.info.num_partitions = out.num_partitions_;
      stage.source_stream = absl::StrCat(stage.info.name, "/", spec.source());
      out.sources_[upstream].stores.push_back(static_cast<int>(out.stores_.size()));
      out.stores_.push_back(std::move(stage));
      upstream = out.stores_.back().forward_to;
    }
    if (!spec.has_group_by()) continue;
    StorePlan stage;
    stage.spec = spec;
    stage.internal = true;
    stage.grouped = static_cast<int>(i);
    stage.source = upstream;
    stage.value_format = spec.has_join()
                             ? kiq::v1::FORMAT_JSON
                             : DecodedFormat(out.sources_[upstream].spec.value_format());
    stage.rekey = spec.group_by();
    stage.forward_to = out.stores_[i].source;
    stage.info.name = absl::StrCat(spec.name(), "#repartition");
    stage.info.kind = "repartition";
    stage.info.num_partitions = out.num_partitions_;
    stage.source_stream =
        absl::StrCat(stage.info.name, "/", out.sources_[upstream].spec.topic());
    out.sources_[upstream].stores.push_back(static_cast<int>(out.stores_.size()));
    out.stores_.push_back(std::move(stage));
  }
  // Joins run in the stage before the group_by (the store itself without one), which reads the
  // user's source, or the join repartition topic for a join on a field. The stage that only
  // re-keys for the join has no join in its spec.
  for (StorePlan& store : out.stores_) {
    if (!store.spec.has_join() || (store.spec.has_group_by() && !store.internal)) continue;
    const kiq::v1::Join& join = store.spec.join();
    auto table = out.store_index_.find(join.table());
    if (table == out.store_index_.end() || !out.stores_[table->second].spec.has_table()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "store \"", store.spec.name(), "\": join.table \"", join.table(), "\" is not a table"));
    }
    store.join_table = table->second;
    store.join_source_as = join.source_as().empty() ? store.spec.source() : join.source_as();
    store.join_table_as = join.table_as().empty() ? join.table() : join.table_as();
  }
  return out;
}

int TopologyPlan::StoreIndex(absl::string_view name) const {
  // Internal stages are not in store_index_.
  auto it = store_index_.find(name);
  return it == store_index_.end() ? -1 : it->second;
}

const SourcePlan* TopologyPlan::FindSource(absl::string_view topic) const {
  auto it = source_index_.find(topic);
  return it == source_index_.end() ? nullptr : &sources_[it->second];
}

std::vector<StoreInfo> TopologyPlan::QueryableStores() const {
  std::vector<StoreInfo> out;
  for (const StorePlan& store : stores_) {
    if (!store.internal) out.push_back(store.info);
  }
  return out;
}

PartitionId TopologyPlan::ExpectedPartition(const SourcePlan& source, absl::string_view key) {
  return PartitionId(PartitionForKey(source.partitioner, key, source.num_partitions));
}

std::vector<InternalTopic> TopologyPlan::InternalTopics() const {
  // One members partition: a handful of small records, read whole by every node and router.
  std::vector<InternalTopic> out = {
      {members_topic(), 1, /*compacted=*/true, /*co_partitioned=*/false},
      {dlq_topic(), num_partitions_, /*compacted=*/false, /*co_partitioned=*/false}};
  for (const StorePlan& store : stores_) {
    if (!store.changelog_topic.empty()) {
      out.push_back({store.changelog_topic, num_partitions_, /*compacted=*/true});
    }
  }
  for (const SourcePlan& source : sources_) {
    if (source.repartition) out.push_back({source.spec.topic(), num_partitions_, false});
  }
  return out;
}

}  // namespace kiq
