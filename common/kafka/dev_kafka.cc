#include "common/kafka/dev_kafka.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/kafka/kafka_errors.h"

namespace kiq {
namespace {

std::string BrokerName(int32_t broker_id) {
  return broker_id == DevKafka::kAllBrokers ? std::string("all brokers")
                                            : absl::StrCat("broker ", broker_id);
}

}  // namespace

absl::StatusOr<std::unique_ptr<DevKafka>> DevKafka::Start(int num_brokers) {
  if (num_brokers < 1) return absl::InvalidArgumentError("dev kafka needs at least one broker");
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The handle only anchors the mock cluster; it never connects anywhere.
  if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(absl::StrCat("dev kafka config: ", errstr));
  }
  rd_kafka_t* handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (handle == nullptr) {
    return absl::InternalError(absl::StrCat("dev kafka: create client handle: ", errstr));
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(handle, num_brokers);
  if (cluster == nullptr) {
    rd_kafka_destroy(handle);
    return absl::InternalError("dev kafka: could not start the mock cluster");
  }
  return std::unique_ptr<DevKafka>(new DevKafka(handle, cluster, num_brokers));
}

DevKafka::~DevKafka() {
  rd_kafka_mock_cluster_destroy(cluster_);
  rd_kafka_destroy(handle_);
}

std::string DevKafka::bootstrap_servers() const {
  return rd_kafka_mock_cluster_bootstraps(cluster_);
}

absl::Status DevKafka::CreateTopic(const std::string& name, int partitions,
                                   int replication_factor) {
  rd_kafka_resp_err_t err =
      rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions, replication_factor);
  return KafkaToStatus(err, absl::StrCat("create topic ", name, " partitions=", partitions));
}

absl::Status DevKafka::CheckBrokerId(int32_t broker_id) const {
  if (broker_id == kAllBrokers || (broker_id >= 1 && broker_id <= num_brokers_)) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      absl::StrCat("no broker ", broker_id, " (brokers are 1..", num_brokers_, ")"));
}

absl::Status DevKafka::SetBrokerDown(int32_t broker_id) {
  if (absl::Status s = CheckBrokerId(broker_id); !s.ok()) return s;
  return KafkaToStatus(rd_kafka_mock_broker_set_down(cluster_, broker_id),
                       absl::StrCat("set ", BrokerName(broker_id), " down"));
}

absl::Status DevKafka::SetBrokerUp(int32_t broker_id) {
  if (absl::Status s = CheckBrokerId(broker_id); !s.ok()) return s;
  return KafkaToStatus(rd_kafka_mock_broker_set_up(cluster_, broker_id),
                       absl::StrCat("set ", BrokerName(broker_id), " up"));
}

absl::Status DevKafka::SetBrokerRtt(int32_t broker_id, absl::Duration rtt) {
  if (absl::Status s = CheckBrokerId(broker_id); !s.ok()) return s;
  if (rtt < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat("negative rtt ", absl::FormatDuration(rtt)));
  }
  const int64_t ms = absl::ToInt64Milliseconds(rtt);
  if (ms > std::numeric_limits<int>::max()) {
    return absl::InvalidArgumentError(absl::StrCat("rtt too large: ", ms, "ms"));
  }
  return KafkaToStatus(rd_kafka_mock_broker_set_rtt(cluster_, broker_id, static_cast<int>(ms)),
                       absl::StrCat("set rtt of ", BrokerName(broker_id), " to ", ms, "ms"));
}

absl::Status DevKafka::FailNextProduces(int count, int16_t error) {
  if (count < 1) return absl::InvalidArgumentError(absl::StrCat("produce error count ", count));
  constexpr int16_t kProduceApiKey = 0;  // the Kafka protocol's Produce request
  const std::vector<rd_kafka_resp_err_t> errors(static_cast<size_t>(count),
                                                static_cast<rd_kafka_resp_err_t>(error));
  rd_kafka_mock_push_request_errors_array(cluster_, kProduceApiKey, errors.size(), errors.data());
  return absl::OkStatus();
}

}  // namespace kiq
