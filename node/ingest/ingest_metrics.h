#pragma once

#include <string>
#include <vector>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiq::node {

// Ingestion, restoration and state metrics of a node, built once on a registry that outlives
// this object. Labels are bounded: topic, store, partition, state, reason, broker.
// Thread-safe (prometheus-cpp metrics are); the ingestion thread caches the Counter references
// it increments per record.
class IngestMetrics {
 public:
  explicit IngestMetrics(prometheus::Registry& registry);

  prometheus::Counter& Consumed(absl::string_view topic, int32_t partition);
  prometheus::Counter& Materialized(absl::string_view store, int32_t partition);
  void BadRecord(absl::string_view store, absl::string_view reason);
  void LateRecords(absl::string_view store, int64_t n);
  void NullKeyRecords(absl::string_view store, int64_t n);
  void WrongPartition(absl::string_view topic);
  // A repartition record dropped as a re-forwarded duplicate (group_by).
  void RepartitionDuplicate(absl::string_view store);
  void Rebalance(absl::string_view type);
  void Restored(absl::string_view store, int64_t records, absl::Duration took);
  void SetLag(absl::string_view topic, int32_t partition, int64_t lag);
  void SetPartitions(int64_t active, int64_t restoring, int64_t failed, int64_t standby = 0);
  // A standby replica's lag: records of the store's changelog (source topic, for a table) it
  // has not applied.
  void SetStandbyLag(absl::string_view store, int32_t partition, int64_t lag);
  // Partitions of the cluster that no live standby replica within `kInSyncStandbyLag` covers
  // (with num_standby_replicas > 0), as the routing table shows them.
  void SetPartitionsWithoutStandby(int64_t n);
  // A gained partition turned ACTIVE `took` after its assignment; `warm`: this node held a
  // standby replica of it (only the tail was restored).
  void Handover(bool warm, absl::Duration took);
  // Source partitions paused while the schema registry does not answer for their next record.
  // Gauges fed by each ingestion thread (`lane`) export the sum over them.
  void RegistryWaits(int lane, size_t partitions) ABSL_LOCKS_EXCLUDED(lanes_mu_);
  void SetMembers(int64_t members);
  void SetKafkaConnected(bool connected);
  void SetStore(absl::string_view store, int64_t size_bytes, int64_t estimated_keys);
  void SetBrokerRtt(absl::string_view broker, double seconds);
  void SetQueueMessages(int lane, int64_t messages) ABSL_LOCKS_EXCLUDED(lanes_mu_);
  // Partitions ingestion thread `lane` owns (kiq_ingest_thread_partitions{thread=...}).
  void SetThreadPartitions(int lane, int64_t partitions);
  // The ingestion cache's hits and misses since the last call, and its bytes now.
  void IngestCache(int lane, int64_t hits, int64_t misses, size_t bytes)
      ABSL_LOCKS_EXCLUDED(lanes_mu_);
  // The open-subscriptions gauge, set by the subscription hub.
  prometheus::Gauge& Subscriptions();

  // Maps a bad-record reason to a bounded label value.
  static std::string ReasonLabel(absl::string_view reason);

 private:
  prometheus::Family<prometheus::Counter>& consumed_;
  prometheus::Family<prometheus::Counter>& materialized_;
  prometheus::Family<prometheus::Counter>& bad_records_;
  prometheus::Family<prometheus::Counter>& late_records_;
  prometheus::Family<prometheus::Counter>& null_key_records_;
  prometheus::Family<prometheus::Counter>& wrong_partition_;
  prometheus::Family<prometheus::Counter>& repartition_duplicates_;
  prometheus::Family<prometheus::Counter>& rebalances_;
  prometheus::Family<prometheus::Counter>& restore_records_;
  prometheus::Family<prometheus::Histogram>& restore_duration_;
  prometheus::Family<prometheus::Gauge>& lag_;
  prometheus::Family<prometheus::Gauge>& partitions_;
  prometheus::Family<prometheus::Gauge>& members_;
  prometheus::Family<prometheus::Gauge>& registry_waits_;
  prometheus::Family<prometheus::Gauge>& kafka_connected_;
  prometheus::Family<prometheus::Gauge>& subscriptions_;
  prometheus::Family<prometheus::Gauge>& store_size_;
  prometheus::Family<prometheus::Gauge>& store_keys_;
  prometheus::Family<prometheus::Gauge>& broker_rtt_;
  prometheus::Family<prometheus::Gauge>& queue_messages_;
  prometheus::Family<prometheus::Gauge>& thread_partitions_;
  prometheus::Family<prometheus::Gauge>& standby_lag_;
  prometheus::Family<prometheus::Gauge>& without_standby_;
  prometheus::Family<prometheus::Histogram>& handover_;
  prometheus::Counter& cache_hits_;
  prometheus::Counter& cache_misses_;
  prometheus::Gauge& cache_bytes_;
  // Sets `gauge` to the sum of each lane's last value.
  void SetLaneShare(prometheus::Gauge& gauge, int lane, double value)
      ABSL_LOCKS_EXCLUDED(lanes_mu_);
  absl::Mutex lanes_mu_;
  absl::flat_hash_map<const prometheus::Gauge*, std::vector<double>> lane_values_
      ABSL_GUARDED_BY(lanes_mu_);
};

}  // namespace kiq::node
