#include "common/kafka/internal_topics.h"

#include <librdkafka/rdkafka.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/kafka/kafka_errors.h"
#include "common/kafka/metadata.h"
#include "common/logging.h"

namespace kiq {
namespace {

// Creates `topics` with the Admin API; OK if each was created or already exists.
absl::Status CreateTopics(const KafkaClientConfig& kafka, const std::vector<InternalTopic>& topics,
                          absl::Duration timeout) {
  char errstr[512];
  absl::StatusOr<rd_kafka_conf_t*> conf = kafka.BuildC("kiq-admin", {});
  if (!conf.ok()) return conf.status();
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, *conf, errstr, sizeof(errstr));
  if (rk == nullptr) return absl::InternalError(absl::StrCat("admin client: ", errstr));
  std::vector<rd_kafka_NewTopic_t*> new_topics;
  for (const auto& topic : topics) {
    rd_kafka_NewTopic_t* t =
        rd_kafka_NewTopic_new(topic.name.c_str(), topic.partitions, -1, errstr, sizeof(errstr));
    if (t == nullptr) continue;
    if (topic.compacted) rd_kafka_NewTopic_set_config(t, "cleanup.policy", "compact");
    new_topics.push_back(t);
  }
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
  rd_kafka_AdminOptions_set_operation_timeout(
      options, static_cast<int>(absl::ToInt64Milliseconds(timeout)), errstr, sizeof(errstr));
  rd_kafka_CreateTopics(rk, new_topics.data(), new_topics.size(), options, queue);
  rd_kafka_event_t* event =
      rd_kafka_queue_poll(queue, static_cast<int>(absl::ToInt64Milliseconds(timeout)) + 1000);
  absl::Status status = absl::OkStatus();
  if (event == nullptr) {
    status = absl::DeadlineExceededError("CreateTopics timed out");
  } else if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    status = KafkaToStatus(rd_kafka_event_error(event), "CreateTopics");
  } else {
    const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(event);
    size_t n = 0;
    const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(result, &n);
    for (size_t i = 0; i < n && status.ok(); ++i) {
      rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        status = KafkaToStatus(
            err, absl::StrCat("create topic ", rd_kafka_topic_result_name(results[i])));
      }
    }
  }
  if (event != nullptr) rd_kafka_event_destroy(event);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_queue_destroy(queue);
  rd_kafka_NewTopic_destroy_array(new_topics.data(), new_topics.size());
  rd_kafka_destroy(rk);
  return status;
}

}  // namespace

absl::Status EnsureInternalTopics(const KafkaClientConfig& kafka,
                                  const std::vector<InternalTopic>& topics,
                                  absl::Duration timeout) {
  if (topics.empty()) return absl::OkStatus();
  std::vector<std::string> names;
  for (const auto& topic : topics) names.push_back(topic.name);
  auto counts = FetchPartitionCounts(kafka, {}, absl::ZeroDuration());
  if (!counts.ok()) return counts.status();
  std::vector<InternalTopic> missing;
  for (const auto& topic : topics) {
    const std::string& name = topic.name;
    const int32_t partitions = topic.partitions;
    auto it = counts->find(name);
    if (it == counts->end()) {
      missing.push_back(topic);
    } else if (it->second != partitions) {
      return absl::FailedPreconditionError(
          absl::StrCat("internal topic ", name, " has ", it->second,
                       " partitions, but the sources have ", partitions,
                       ": its partition p must hold store partition p. Delete it or recreate it "
                       "with ",
                       partitions, " partitions"));
    }
  }
  if (missing.empty()) return absl::OkStatus();
  std::vector<std::string> specs;
  for (const auto& topic : missing)
    specs.push_back(absl::StrCat(topic.name, ":", topic.partitions));
  absl::Status created = CreateTopics(kafka, missing, timeout);
  if (!created.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "internal topics missing and could not be created (", created.message(),
        "); create them with these partition counts (changelogs compacted): ",
        absl::StrJoin(specs, ", "), " (kiq-dev-kafka: --topics=", absl::StrJoin(specs, ","), ")"));
  }
  spdlog::info("created internal topics {}", absl::StrJoin(specs, ", "));
  return absl::OkStatus();
}

}  // namespace kiq
