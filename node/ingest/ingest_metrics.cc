#include "node/ingest/ingest_metrics.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace kiq::node {

IngestMetrics::IngestMetrics(prometheus::Registry& registry)
    : consumed_(prometheus::BuildCounter()
                    .Name("kiq_records_consumed_total")
                    .Help("Source records consumed, by topic and partition.")
                    .Register(registry)),
      materialized_(prometheus::BuildCounter()
                        .Name("kiq_records_materialized_total")
                        .Help("Records applied to a store, by store and partition.")
                        .Register(registry)),
      bad_records_(prometheus::BuildCounter()
                       .Name("kiq_bad_records_total")
                       .Help("Records skipped and dead-lettered, by store and reason.")
                       .Register(registry)),
      late_records_(prometheus::BuildCounter()
                        .Name("kiq_late_records_total")
                        .Help("Records dropped from a window after its grace period, by store "
                              "(once per record and window).")
                        .Register(registry)),
      null_key_records_(prometheus::BuildCounter()
                            .Name("kiq_null_key_records_total")
                            .Help("Records a group_by store dropped because their key was null "
                                  "or missing, by store (as ksqlDB drops null GROUP BY keys).")
                            .Register(registry)),
      wrong_partition_(prometheus::BuildCounter()
                           .Name("kiq_wrong_partition_records_total")
                           .Help("Records whose key maps to another partition, by topic.")
                           .Register(registry)),
      repartition_duplicates_(
          prometheus::BuildCounter()
              .Name("kiq_repartition_duplicates_total")
              .Help("Repartition records dropped because their upstream record was already "
                    "applied (re-forwarded after an upstream crash), by store.")
              .Register(registry)),
      rebalances_(prometheus::BuildCounter()
                      .Name("kiq_rebalances_total")
                      .Help("Consumer group rebalance events, by type (assign, revoke).")
                      .Register(registry)),
      restore_records_(prometheus::BuildCounter()
                           .Name("kiq_restore_records_total")
                           .Help("Changelog records applied by restoration, by store.")
                           .Register(registry)),
      restore_duration_(prometheus::BuildHistogram()
                            .Name("kiq_restore_duration_seconds")
                            .Help("Time to restore one store partition, by store.")
                            .Register(registry)),
      lag_(prometheus::BuildGauge()
               .Name("kiq_consumer_lag_records")
               .Help("Records behind the high watermark, per owned source partition.")
               .Register(registry)),
      partitions_(
          prometheus::BuildGauge()
              .Name("kiq_partitions")
              .Help("Partitions by state: owned (active, restoring, failed) and standby replicas.")
              .Register(registry)),
      members_(prometheus::BuildGauge()
                   .Name("kiq_members")
                   .Help("Live nodes in the routing table.")
                   .Register(registry)),
      registry_waits_(prometheus::BuildGauge()
                          .Name("kiq_registry_paused_partitions")
                          .Help("Source partitions paused until the schema registry answers for "
                                "the schema id of their next record.")
                          .Register(registry)),
      kafka_connected_(prometheus::BuildGauge()
                           .Name("kiq_kafka_connected")
                           .Help("1 if a broker answered the node's last look at the members "
                                 "topic (every second), else 0.")
                           .Register(registry)),
      subscriptions_(prometheus::BuildGauge()
                         .Name("kiq_subscriptions_open")
                         .Help("Open push subscriptions.")
                         .Register(registry)),
      store_size_(prometheus::BuildGauge()
                      .Name("kiq_store_size_bytes")
                      .Help("RocksDB live data size of a store's column family.")
                      .Register(registry)),
      store_keys_(prometheus::BuildGauge()
                      .Name("kiq_store_estimated_keys")
                      .Help("RocksDB estimate of the keys in a store's column family.")
                      .Register(registry)),
      broker_rtt_(prometheus::BuildGauge()
                      .Name("kiq_kafka_broker_rtt_seconds")
                      .Help("librdkafka's average round-trip time to each broker (consumer).")
                      .Register(registry)),
      queue_messages_(prometheus::BuildGauge()
                          .Name("kiq_kafka_queue_messages")
                          .Help("Messages waiting in librdkafka's local consumer queue.")
                          .Register(registry)),
      thread_partitions_(prometheus::BuildGauge()
                             .Name("kiq_ingest_thread_partitions")
                             .Help("Partitions each ingestion thread (--ingest-threads) owns.")
                             .Register(registry)),
      standby_lag_(prometheus::BuildGauge()
                       .Name("kiq_standby_lag_records")
                       .Help("Records a standby replica has not applied yet, by store and "
                             "partition (its changelog; the source topic for a table).")
                       .Register(registry)),
      without_standby_(prometheus::BuildGauge()
                           .Name("kiq_partitions_without_standby")
                           .Help("Partitions no live in-sync standby replica covers, as this "
                                 "node's routing table shows them (num_standby_replicas > 0).")
                           .Register(registry)),
      handover_(prometheus::BuildHistogram()
                    .Name("kiq_handover_seconds")
                    .Help("Time from gaining a partition to serving it ACTIVE; warm=true when "
                          "this node held a standby replica of it.")
                    .Register(registry)),
      cache_hits_(prometheus::BuildCounter()
                      .Name("kiq_ingest_cache_hits_total")
                      .Help("Keys ingestion read from its cache of committed values instead "
                            "of RocksDB (--ingest-cache-bytes).")
                      .Register(registry)
                      .Add({})),
      cache_misses_(prometheus::BuildCounter()
                        .Name("kiq_ingest_cache_misses_total")
                        .Help("Keys ingestion looked up in its cache of committed values and "
                              "read from RocksDB.")
                        .Register(registry)
                        .Add({})),
      cache_bytes_(prometheus::BuildGauge()
                       .Name("kiq_ingest_cache_bytes")
                       .Help("Bytes charged to ingestion's cache of committed values (keys, "
                             "values and per-entry overhead), at most --ingest-cache-bytes.")
                       .Register(registry)
                       .Add({})) {
  // Present from the start so dashboards and alerts see zeros rather than nothing.
  SetPartitions(0, 0, 0);
  SetPartitionsWithoutStandby(0);
  SetMembers(0);
  SetKafkaConnected(true);
  Subscriptions().Set(0);
  SetQueueMessages(0, 0);
}

prometheus::Counter& IngestMetrics::Consumed(absl::string_view topic, int32_t partition) {
  return consumed_.Add({{"topic", std::string(topic)}, {"partition", absl::StrCat(partition)}});
}

prometheus::Counter& IngestMetrics::Materialized(absl::string_view store, int32_t partition) {
  return materialized_.Add({{"store", std::string(store)}, {"partition", absl::StrCat(partition)}});
}

std::string IngestMetrics::ReasonLabel(absl::string_view reason) {
  // Reasons of the decoder itself (ParseJson, the partition check): matched at the start, so
  // that a quoted value in another reason cannot pass for one.
  for (absl::string_view what : {"value ", "key "}) {
    if (absl::StartsWith(reason, absl::StrCat(what, "too large"))) return "too_large";
    if (absl::StartsWith(reason, absl::StrCat(what, "nests deeper"))) return "too_deep";
  }
  if (absl::StartsWith(reason, "wrong partition")) return "wrong_partition";
  // Schema Registry formats (common/schema).
  if (absl::StrContains(reason, "Schema Registry wire format") ||
      absl::StrContains(reason, "bad protobuf message indexes")) {
    return "not_wire_format";
  }
  if (absl::StrContains(reason, "unknown schema id")) return "unknown_schema";
  if (absl::StrContains(reason, "refuses the writer schema") ||
      absl::StrContains(reason, "the topology says") ||
      absl::StrContains(reason, "schema references are not supported") ||
      absl::StrContains(reason, "schema registry: schema id")) {
    return "bad_schema";
  }
  if (absl::StrContains(reason, "not valid Avro") || absl::StrContains(reason, "is not a valid ") ||
      absl::StrContains(reason, "names message index")) {
    return "undecodable";
  }
  if (absl::StrContains(reason, "not JSON")) return "not_json";
  if (absl::StrContains(reason, "not UTF-8")) return "not_utf8";
  if (absl::StrContains(reason, "null key")) return "null_key";
  if (absl::StrContains(reason, "null value")) return "null_value";
  if (absl::StrContains(reason, "cannot be a key")) return "bad_key";
  if (absl::StrContains(reason, "is missing")) return "missing_field";
  if (absl::StrContains(reason, "not a number") || absl::StrContains(reason, "not an integer") ||
      absl::StrContains(reason, "out of range") || absl::StrContains(reason, "overflow")) {
    return "bad_number";
  }
  return "other";
}

void IngestMetrics::BadRecord(absl::string_view store, absl::string_view reason) {
  bad_records_.Add({{"store", std::string(store)}, {"reason", ReasonLabel(reason)}}).Increment();
}

void IngestMetrics::RepartitionDuplicate(absl::string_view store) {
  repartition_duplicates_.Add({{"store", std::string(store)}}).Increment();
}

void IngestMetrics::LateRecords(absl::string_view store, int64_t n) {
  late_records_.Add({{"store", std::string(store)}}).Increment(static_cast<double>(n));
}

void IngestMetrics::NullKeyRecords(absl::string_view store, int64_t n) {
  null_key_records_.Add({{"store", std::string(store)}}).Increment(static_cast<double>(n));
}

void IngestMetrics::WrongPartition(absl::string_view topic) {
  wrong_partition_.Add({{"topic", std::string(topic)}}).Increment();
}

void IngestMetrics::Rebalance(absl::string_view type) {
  rebalances_.Add({{"type", std::string(type)}}).Increment();
}

void IngestMetrics::Restored(absl::string_view store, int64_t records, absl::Duration took) {
  restore_records_.Add({{"store", std::string(store)}}).Increment(static_cast<double>(records));
  static const auto* const kBuckets =
      new prometheus::Histogram::BucketBoundaries{0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300};
  restore_duration_.Add({{"store", std::string(store)}}, *kBuckets)
      .Observe(absl::ToDoubleSeconds(took));
}

void IngestMetrics::SetLag(absl::string_view topic, int32_t partition, int64_t lag) {
  lag_.Add({{"topic", std::string(topic)}, {"partition", absl::StrCat(partition)}})
      .Set(static_cast<double>(lag));
}

void IngestMetrics::SetPartitions(int64_t active, int64_t restoring, int64_t failed,
                                  int64_t standby) {
  partitions_.Add({{"state", "active"}}).Set(static_cast<double>(active));
  partitions_.Add({{"state", "restoring"}}).Set(static_cast<double>(restoring));
  partitions_.Add({{"state", "failed"}}).Set(static_cast<double>(failed));
  partitions_.Add({{"state", "standby"}}).Set(static_cast<double>(standby));
}

void IngestMetrics::SetStandbyLag(absl::string_view store, int32_t partition, int64_t lag) {
  standby_lag_.Add({{"store", std::string(store)}, {"partition", absl::StrCat(partition)}})
      .Set(static_cast<double>(lag));
}

void IngestMetrics::SetPartitionsWithoutStandby(int64_t n) {
  without_standby_.Add({}).Set(static_cast<double>(n));
}

void IngestMetrics::Handover(bool warm, absl::Duration took) {
  static const auto* const kBuckets =
      new prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  handover_.Add({{"warm", warm ? "true" : "false"}}, *kBuckets)
      .Observe(absl::ToDoubleSeconds(took));
}

void IngestMetrics::SetKafkaConnected(bool connected) {
  kafka_connected_.Add({}).Set(connected ? 1 : 0);
}

void IngestMetrics::SetLaneShare(prometheus::Gauge& gauge, int lane, double value) {
  absl::MutexLock lock(&lanes_mu_);
  std::vector<double>& values = lane_values_[&gauge];
  if (values.size() <= static_cast<size_t>(lane)) values.resize(static_cast<size_t>(lane) + 1);
  values[static_cast<size_t>(lane)] = value;
  double sum = 0;
  for (double v : values) sum += v;
  gauge.Set(sum);
}

void IngestMetrics::RegistryWaits(int lane, size_t partitions) {
  SetLaneShare(registry_waits_.Add({}), lane, static_cast<double>(partitions));
}

void IngestMetrics::SetMembers(int64_t members) {
  members_.Add({}).Set(static_cast<double>(members));
}

void IngestMetrics::SetStore(absl::string_view store, int64_t size_bytes, int64_t estimated_keys) {
  store_size_.Add({{"store", std::string(store)}}).Set(static_cast<double>(size_bytes));
  store_keys_.Add({{"store", std::string(store)}}).Set(static_cast<double>(estimated_keys));
}

void IngestMetrics::SetBrokerRtt(absl::string_view broker, double seconds) {
  broker_rtt_.Add({{"broker", std::string(broker)}}).Set(seconds);
}

void IngestMetrics::IngestCache(int lane, int64_t hits, int64_t misses, size_t bytes) {
  cache_hits_.Increment(static_cast<double>(hits));
  cache_misses_.Increment(static_cast<double>(misses));
  SetLaneShare(cache_bytes_, lane, static_cast<double>(bytes));
}

void IngestMetrics::SetThreadPartitions(int lane, int64_t partitions) {
  thread_partitions_.Add({{"thread", absl::StrCat(lane)}}).Set(static_cast<double>(partitions));
}

void IngestMetrics::SetQueueMessages(int lane, int64_t messages) {
  SetLaneShare(queue_messages_.Add({}), lane, static_cast<double>(messages));
}

prometheus::Gauge& IngestMetrics::Subscriptions() { return subscriptions_.Add({}); }

}  // namespace kiq::node
