#include "common/kafka/dev_kafka.h"

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "absl/strings/str_cat.h"
#include "common/kafka/kafka_errors.h"

namespace kiq {

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
  return std::unique_ptr<DevKafka>(new DevKafka(handle, cluster));
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

}  // namespace kiq
