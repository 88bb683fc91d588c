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
// kiq.partition, kiq.offset). Delivery is asynchronous and never blocks ingestion; a failed
// delivery is logged (rate-limited), never retried forever. Thread-safe (librdkafka producer).
class DeadLetterQueue {
 public:
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

  std::unique_ptr<DeliveryReport> report_;  // must outlive producer_
  std::unique_ptr<RdKafka::Producer> producer_;
  const std::string topic_;
  LogLimiter send_errors_{10};
};

}  // namespace kiq
