#include "common/kafka/internal_topics.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/kafka/kafka_errors.h"
#include "common/kafka/metadata.h"
#include "common/logging.h"

namespace kiq {
namespace {

// What the broker said about one topic of a CreateTopics request.
struct CreateOutcome {
  std::string topic;
  rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
  std::string reason;  // the broker's message, if any
};

// Sends one CreateTopics request for `topics`. The request's own failure (no answer, a broker
// that does not implement the API) is the Status; each topic's outcome is in `outcomes`.
absl::Status CreateTopics(const KafkaClientConfig& kafka, const std::vector<InternalTopic>& topics,
                          absl::Duration timeout, std::vector<CreateOutcome>* outcomes) {
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
    status = KafkaToStatus(rd_kafka_event_error(event),
                           absl::StrCat("CreateTopics: ", rd_kafka_event_error_string(event)));
  } else {
    const rd_kafka_CreateTopics_result_t* result = rd_kafka_event_CreateTopics_result(event);
    size_t n = 0;
    const rd_kafka_topic_result_t** results = rd_kafka_CreateTopics_result_topics(result, &n);
    for (size_t i = 0; i < n; ++i) {
      const char* message = rd_kafka_topic_result_error_string(results[i]);
      outcomes->push_back({rd_kafka_topic_result_name(results[i]),
                           rd_kafka_topic_result_error(results[i]), message ? message : ""});
    }
  }
  if (event != nullptr) rd_kafka_event_destroy(event);
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_queue_destroy(queue);
  rd_kafka_NewTopic_destroy_array(new_topics.data(), new_topics.size());
  rd_kafka_destroy(rk);
  return status;
}

std::string Specs(const std::vector<InternalTopic>& topics) {
  std::vector<std::string> specs;
  for (const auto& topic : topics) {
    specs.push_back(
        absl::StrCat(topic.name, ":", topic.partitions, topic.compacted ? " (compacted)" : ""));
  }
  return absl::StrJoin(specs, ", ");
}

}  // namespace

absl::Status EnsureInternalTopics(const KafkaClientConfig& kafka,
                                  const std::vector<InternalTopic>& topics,
                                  absl::Duration timeout) {
  if (topics.empty()) return absl::OkStatus();
  auto counts = FetchPartitionCounts(kafka, {}, absl::ZeroDuration());
  if (!counts.ok()) return counts.status();
  std::vector<InternalTopic> missing;
  for (const auto& topic : topics) {
    auto it = counts->find(topic.name);
    if (it == counts->end()) {
      missing.push_back(topic);
    } else if (topic.co_partitioned && it->second != topic.partitions) {
      return absl::FailedPreconditionError(
          absl::StrCat("internal topic ", topic.name, " has ", it->second,
                       " partitions, but the sources have ", topic.partitions,
                       ": its partition p must hold store partition p. Delete it or recreate "
                       "it with ",
                       topic.partitions, " partitions"));
    }
  }
  if (missing.empty()) return absl::OkStatus();

  // The topics that need not match the sources (members, dead letters) are first asked for by
  // name: a broker that auto-creates topics (librdkafka's mock cluster, clusters with
  // auto.create.topics.enable) makes them at once, and one without the Admin API has no other way.
  std::vector<std::string> any_count;
  for (const auto& topic : missing) {
    if (!topic.co_partitioned) any_count.push_back(topic.name);
  }
  if (!any_count.empty()) {
    RequestTopicsByName(kafka, any_count);
    absl::StatusOr<absl::flat_hash_map<std::string, int32_t>> now =
        FetchPartitionCounts(kafka, {}, absl::ZeroDuration());
    if (!now.ok()) return now.status();
    std::vector<std::string> auto_created;
    missing.erase(std::remove_if(missing.begin(), missing.end(),
                                 [&](const InternalTopic& topic) {
                                   if (topic.co_partitioned || !now->contains(topic.name)) {
                                     return false;
                                   }
                                   auto_created.push_back(topic.name);
                                   return true;
                                 }),
                  missing.end());
    if (!auto_created.empty()) {
      spdlog::info(
          "internal topics {} created by the broker's auto-creation (with its default "
          "configs: set cleanup.policy=compact on the members topic)",
          absl::StrJoin(auto_created, ", "));
    }
  }

  std::vector<CreateOutcome> outcomes;
  absl::Status request = absl::OkStatus();
  if (!missing.empty()) request = CreateTopics(kafka, missing, timeout, &outcomes);
  std::vector<std::string> created;
  std::vector<std::string> existed;
  for (const CreateOutcome& o : outcomes) {
    if (o.err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      created.push_back(o.topic);
    } else if (o.err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      existed.push_back(o.topic);  // another node of the application created it meanwhile
    } else {
      // ACLs, a creation policy, a replication factor the cluster cannot place, ...: the node
      // cannot run without the topic, so it says which and why.
      return absl::FailedPreconditionError(absl::StrCat(
          "internal topic ", o.topic, " is missing and the broker refused to create it: ",
          rd_kafka_err2name(o.err), ": ", o.reason.empty() ? rd_kafka_err2str(o.err) : o.reason,
          ". Create it (", Specs(missing), ") or grant this client CREATE on the cluster"));
    }
  }
  if (!created.empty()) spdlog::info("created internal topics {}", absl::StrJoin(created, ", "));
  if (!existed.empty()) {
    spdlog::info("internal topics {} exist (created by another node)",
                 absl::StrJoin(existed, ", "));
  }
  if (!request.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("internal topics missing and could not be created (", request.message(),
                     "); create them with these partition counts: ", Specs(missing)));
  }
  // Created topics reach every broker's metadata a moment later: a consumer that subscribed
  // before would leave them out of its assignment until its next metadata refresh.
  std::vector<std::string> names;
  for (const auto& topic : topics) names.push_back(topic.name);
  absl::StatusOr<absl::flat_hash_map<std::string, int32_t>> visible =
      FetchPartitionCounts(kafka, names, timeout, "internal topics");
  return visible.ok() ? absl::OkStatus() : visible.status();
}

}  // namespace kiq
