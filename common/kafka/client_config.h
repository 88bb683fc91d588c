#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafkacpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace kiq {

using KafkaProperties = std::vector<std::pair<std::string, std::string>>;

// The one place that builds librdkafka configurations. Every Kafka client of a kiq process —
// group consumer, restore consumer, changelog/repartition, dead-letter and membership producers,
// members tailer, admin and metadata clients — gets its configuration here, so the user's
// properties (SASL/SSL, timeouts) reach all of them, and librdkafka's own log lines and errors
// go through kiq's logger (leveled, rate-limited) instead of stderr. A value; thread-safe.
class KafkaClientConfig {
 public:
  explicit KafkaClientConfig(std::string bootstrap_servers, KafkaProperties user = {})
      : bootstrap_servers_(std::move(bootstrap_servers)), user_(std::move(user)) {}

  const std::string& bootstrap_servers() const { return bootstrap_servers_; }
  const KafkaProperties& user_properties() const { return user_; }

  // bootstrap.servers, client.id, then `settings` (what kiq needs of this client), then the
  // user's properties, which win. INVALID_ARGUMENT naming the property librdkafka refuses.
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> Build(absl::string_view client_id,
                                                       const KafkaProperties& settings) const;
  // The same for librdkafka's C API (the admin client). The caller owns the result (it passes
  // to rd_kafka_new, or rd_kafka_conf_destroy).
  absl::StatusOr<rd_kafka_conf_t*> BuildC(absl::string_view client_id,
                                          const KafkaProperties& settings) const;

 private:
  KafkaProperties All(absl::string_view client_id, const KafkaProperties& settings) const;

  std::string bootstrap_servers_;
  KafkaProperties user_;
};

// Sets each property on `conf`; INVALID_ARGUMENT naming the first one librdkafka refuses.
absl::Status SetProperties(RdKafka::Conf& conf, const KafkaProperties& properties);

// Routes librdkafka's events (log lines, client errors) to kiq's logger. Process-wide, set by
// KafkaClientConfig on every configuration; a client with an event callback of its own passes
// the events it does not handle here. Thread-safe (librdkafka calls it from its threads).
class KafkaLogEvents final : public RdKafka::EventCb {
 public:
  static KafkaLogEvents& Instance();
  void event_cb(RdKafka::Event& event) override;
};

}  // namespace kiq
