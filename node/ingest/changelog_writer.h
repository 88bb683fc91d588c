#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <librdkafka/rdkafkacpp.h>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/kafka/client_config.h"

namespace kiq::node {

// The producer of kiq's own write-ahead records: changelogs and repartition topics. Records
// are produced, then flushed as a whole before the batch that made them commits locally, so
// state is never committed ahead of its changelog. Idempotent (acks=all): each partition keeps
// produce order with no duplicates, which the batch-end markers rely on.
//
// Not thread-safe: used by the ingestion thread only (delivery reports are served by its
// Flush/Poll calls).
class ChangelogWriter {
 public:
  using Headers = std::vector<std::pair<std::string, std::string>>;

  static absl::StatusOr<std::unique_ptr<ChangelogWriter>> Create(const KafkaClientConfig& kafka,
                                                                 const std::string& client_id);
  ~ChangelogWriter();

  // Queues one record for `topic`/`partition` (a null value is a tombstone), waiting for room
  // while librdkafka's queue is full. A failure here means nothing of the batch may commit.
  absl::Status Produce(const std::string& topic, int32_t partition, absl::string_view key,
                       std::optional<absl::string_view> value, int64_t timestamp_ms,
                       const Headers& headers);
  // Waits until every queued record is delivered (up to `timeout_ms`); UNAVAILABLE if one
  // produced since the last Flush was not: the batch must not be committed.
  absl::Status Flush(int timeout_ms);
  // Serves delivery reports without waiting.
  void Poll();
  // True when no produced record awaits its delivery report (call after Poll).
  bool AllDelivered();
  // The next offset after the records delivered since the last call, per (topic, partition):
  // the changelog position the committed state reflects.
  absl::flat_hash_map<std::pair<std::string, int32_t>, int64_t> TakeDelivered();

 private:
  class DeliveryReport;
  ChangelogWriter(std::unique_ptr<DeliveryReport> report,
                  std::unique_ptr<RdKafka::Producer> producer);

  std::unique_ptr<DeliveryReport> report_;  // must outlive producer_
  std::unique_ptr<RdKafka::Producer> producer_;
  // Failed deliveries already reported by a Flush: each batch answers for its own.
  int64_t failures_seen_ = 0;
};

}  // namespace kiq::node
