#pragma once

#include <memory>
#include <string>
#include "absl/strings/string_view.h"

#include <librdkafka/rdkafkacpp.h>

#include "absl/status/statusor.h"
#include "common/kafka/client_config.h"
#include "common/kafka/record.h"
#include "common/log_limiter.h"

namespace kiq {

// Sends bad records to the dead-letter topic `<application_id>-dlq`: the original key and
// value, with headers naming why and where it came from (kiq.reason, kiq.store, kiq.topic,
// kiq.partition, kiq.offset). A record the producer or the broker refuses as too large
// (message.max.bytes) is sent again with its key and value cut to kTruncatedBytes each and the
// headers kiq.truncated=true, kiq.original.size (the value's bytes) and kiq.original.key.size,
// so that every skipped record is in the topic. Delivery is asynchronous and never blocks
// ingestion; a failed delivery is logged (rate-limited), never retried forever. Thread-safe
// (librdkafka producer).
class DeadLetterQueue {
 public:
  // How much of a too-large record's key and value a dead letter keeps: enough to identify and
  // inspect it, far below any broker's message size limit (Kafka's default is 1 MB).
  static constexpr size_t kTruncatedBytes = 64 * 1024;

  static absl::StatusOr<std::unique_ptr<DeadLetterQueue>> Create(const KafkaClientConfig& kafka,
                                                                 const std::string& topic,
                                                                 const std::string& client_id);
  ~DeadLetterQueue();

  void Send(const Record& record, absl::string_view store, absl::string_view reason);
  // Serves delivery reports; call regularly.
  void Poll();
  // Waits up to `timeout_ms` for outstanding deliveries.
  void Flush(int timeout_ms);
  const std::string& topic() const { return topic_; }

 private:
  class DeliveryReport;
  DeadLetterQueue(std::unique_ptr<RdKafka::Producer> producer, std::unique_ptr<DeliveryReport> dr,
                  std::string topic);
  // Sends a copy of a refused dead letter cut to kTruncatedBytes (key and value), with the
  // truncation headers added to `headers`. Called from Send and from the delivery report of a
  // letter the broker refused. Ownership of `headers` passes to librdkafka only on success.
  RdKafka::ErrorCode SendTruncated(const void* key, size_t key_len, const void* value,
                                   size_t value_len, int64_t timestamp_ms,
                                   RdKafka::Headers* headers);

  std::unique_ptr<DeliveryReport> report_;  // must outlive producer_
  std::unique_ptr<RdKafka::Producer> producer_;
  const std::string topic_;
  LogLimiter send_errors_{10};
};

}  // namespace kiq
