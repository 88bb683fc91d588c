#include "tests/testing/kafka_admin.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "tests/testing/process.h"

namespace kiq::testing {
namespace {

struct ClientDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using Client = std::unique_ptr<rd_kafka_t, ClientDeleter>;

absl::StatusOr<Client> NewClient(const std::string& bootstrap_servers) {
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap_servers.c_str(), errstr,
                        sizeof(errstr)) != RD_KAFKA_CONF_OK ||
      rd_kafka_conf_set(conf, "client.id", "kiq-test-admin", errstr, sizeof(errstr)) !=
          RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return absl::InvalidArgumentError(absl::StrCat("admin client config: ", errstr));
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) return absl::InternalError(absl::StrCat("admin client: ", errstr));
  return Client(rk);
}

absl::Status FromKafka(rd_kafka_resp_err_t err, const std::string& doing,
                       const char* message = nullptr) {
  if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return absl::OkStatus();
  const std::string text = absl::StrCat(
      doing, ": ", message != nullptr && *message != '\0' ? message : rd_kafka_err2str(err));
  switch (err) {
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
      return absl::AlreadyExistsError(text);
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return absl::DeadlineExceededError(text);
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
      return absl::UnavailableError(text);
    default:
      return absl::UnknownError(text);
  }
}

int Milliseconds(absl::Duration d) { return static_cast<int>(absl::ToInt64Milliseconds(d)); }

// Runs one admin request that `start` issues on `queue`, and waits for its result event.
template <typename Start, typename Check>
absl::Status RunAdmin(const std::string& bootstrap_servers, rd_kafka_admin_op_t op,
                      const std::string& doing, absl::Duration timeout, Start start, Check check) {
  absl::StatusOr<Client> client = NewClient(bootstrap_servers);
  if (!client.ok()) return client.status();
  rd_kafka_t* rk = client->get();
  char errstr[512];
  rd_kafka_AdminOptions_t* options = rd_kafka_AdminOptions_new(rk, op);
  rd_kafka_AdminOptions_set_request_timeout(options, Milliseconds(timeout), errstr, sizeof(errstr));
  if (op != RD_KAFKA_ADMIN_OP_DELETEGROUPS) {
    rd_kafka_AdminOptions_set_operation_timeout(options, Milliseconds(timeout), errstr,
                                                sizeof(errstr));
  }
  rd_kafka_queue_t* queue = rd_kafka_queue_new(rk);
  start(rk, options, queue);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, Milliseconds(timeout) + 2000);
  absl::Status status;
  if (event == nullptr) {
    status = absl::DeadlineExceededError(absl::StrCat(doing, ": no answer"));
  } else if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    status = FromKafka(rd_kafka_event_error(event), doing, rd_kafka_event_error_string(event));
  } else {
    status = check(event);
  }
  if (event != nullptr) rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  rd_kafka_AdminOptions_destroy(options);
  return status;
}

// The first failed topic of a CreateTopics/DeleteTopics result, ignoring `ignored`.
absl::Status TopicResults(const rd_kafka_topic_result_t** results, size_t n,
                          const std::string& doing, rd_kafka_resp_err_t ignored) {
  for (size_t i = 0; i < n; ++i) {
    const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || err == ignored) continue;
    return FromKafka(err, absl::StrCat(doing, " ", rd_kafka_topic_result_name(results[i])),
                     rd_kafka_topic_result_error_string(results[i]));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CreateTopics(const std::string& bootstrap_servers,
                          const std::vector<TopicSpec>& topics, absl::Duration timeout) {
  if (topics.empty()) return absl::OkStatus();
  const absl::Time deadline = absl::Now() + timeout;
  std::vector<std::string> names;
  for (const TopicSpec& t : topics) names.push_back(t.name);
  const std::string doing = "create topic";
  absl::Status created = RunAdmin(
      bootstrap_servers, RD_KAFKA_ADMIN_OP_CREATETOPICS,
      absl::StrCat("create topics ", absl::StrJoin(names, ",")), timeout,
      [&](rd_kafka_t* rk, rd_kafka_AdminOptions_t* options, rd_kafka_queue_t* queue) {
        char errstr[512];
        std::vector<rd_kafka_NewTopic_t*> new_topics;
        for (const TopicSpec& t : topics) {
          rd_kafka_NewTopic_t* topic =
              rd_kafka_NewTopic_new(t.name.c_str(), t.partitions, -1, errstr, sizeof(errstr));
          if (topic == nullptr) continue;  // refused by the broker below with the reason
          if (t.compacted) rd_kafka_NewTopic_set_config(topic, "cleanup.policy", "compact");
          new_topics.push_back(topic);
        }
        rd_kafka_CreateTopics(rk, new_topics.data(), new_topics.size(), options, queue);
        rd_kafka_NewTopic_destroy_array(new_topics.data(), new_topics.size());
      },
      [&](rd_kafka_event_t* event) {
        size_t n = 0;
        const rd_kafka_topic_result_t** results =
            rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &n);
        if (n != topics.size()) {
          return absl::InvalidArgumentError(
              absl::StrCat(doing, ": ", n, " results for ", topics.size(), " topics (bad names?)"));
        }
        return TopicResults(results, n, doing, RD_KAFKA_RESP_ERR_NO_ERROR);
      });
  if (!created.ok()) return created;
  // The controller has created them; wait until the metadata names a leader for every
  // partition, so that producers and consumers started next find them.
  std::string missing;
  const bool ready = WaitFor(
      [&] {
        absl::StatusOr<std::map<std::string, int>> listed =
            ListTopics(bootstrap_servers, absl::Seconds(5));
        if (!listed.ok()) return false;
        missing.clear();
        for (const TopicSpec& t : topics) {
          auto it = listed->find(t.name);
          if (it == listed->end() || it->second != t.partitions)
            absl::StrAppend(&missing, " ", t.name);
        }
        if (!missing.empty()) absl::SleepFor(absl::Milliseconds(100));  // each try is a client
        return missing.empty();
      },
      std::max(deadline - absl::Now(), absl::Seconds(1)));
  if (!ready) {
    return absl::DeadlineExceededError(
        absl::StrCat("created, but without a leader for every partition:", missing));
  }
  return absl::OkStatus();
}

absl::Status DeleteTopics(const std::string& bootstrap_servers,
                          const std::vector<std::string>& topics, absl::Duration timeout) {
  if (topics.empty()) return absl::OkStatus();
  const std::string doing = "delete topic";
  return RunAdmin(
      bootstrap_servers, RD_KAFKA_ADMIN_OP_DELETETOPICS,
      absl::StrCat("delete topics ", absl::StrJoin(topics, ",")), timeout,
      [&](rd_kafka_t* rk, rd_kafka_AdminOptions_t* options, rd_kafka_queue_t* queue) {
        std::vector<rd_kafka_DeleteTopic_t*> deletes;
        for (const std::string& name : topics)
          deletes.push_back(rd_kafka_DeleteTopic_new(name.c_str()));
        rd_kafka_DeleteTopics(rk, deletes.data(), deletes.size(), options, queue);
        rd_kafka_DeleteTopic_destroy_array(deletes.data(), deletes.size());
      },
      [&](rd_kafka_event_t* event) {
        size_t n = 0;
        const rd_kafka_topic_result_t** results =
            rd_kafka_DeleteTopics_result_topics(rd_kafka_event_DeleteTopics_result(event), &n);
        return TopicResults(results, n, doing, RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
      });
}

absl::Status DeleteGroups(const std::string& bootstrap_servers,
                          const std::vector<std::string>& groups, absl::Duration timeout) {
  if (groups.empty()) return absl::OkStatus();
  return RunAdmin(
      bootstrap_servers, RD_KAFKA_ADMIN_OP_DELETEGROUPS,
      absl::StrCat("delete groups ", absl::StrJoin(groups, ",")), timeout,
      [&](rd_kafka_t* rk, rd_kafka_AdminOptions_t* options, rd_kafka_queue_t* queue) {
        std::vector<rd_kafka_DeleteGroup_t*> deletes;
        for (const std::string& name : groups)
          deletes.push_back(rd_kafka_DeleteGroup_new(name.c_str()));
        rd_kafka_DeleteGroups(rk, deletes.data(), deletes.size(), options, queue);
        rd_kafka_DeleteGroup_destroy_array(deletes.data(), deletes.size());
      },
      [&](rd_kafka_event_t* event) {
        size_t n = 0;
        const rd_kafka_group_result_t** results =
            rd_kafka_DeleteGroups_result_groups(rd_kafka_event_DeleteGroups_result(event), &n);
        for (size_t i = 0; i < n; ++i) {
          const rd_kafka_error_t* error = rd_kafka_group_result_error(results[i]);
          if (error == nullptr) continue;
          const rd_kafka_resp_err_t code = rd_kafka_error_code(error);
          if (code == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) continue;
          return FromKafka(code,
                           absl::StrCat("delete group ", rd_kafka_group_result_name(results[i])),
                           rd_kafka_error_string(error));
        }
        return absl::OkStatus();
      });
}

absl::StatusOr<std::map<std::string, int>> ListTopics(const std::string& bootstrap_servers,
                                                      absl::Duration timeout) {
  absl::StatusOr<Client> client = NewClient(bootstrap_servers);
  if (!client.ok()) return client.status();
  const rd_kafka_metadata_t* metadata = nullptr;
  const rd_kafka_resp_err_t err =
      rd_kafka_metadata(client->get(), /*all_topics=*/1, nullptr, &metadata, Milliseconds(timeout));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("metadata request to ", bootstrap_servers, ": ", rd_kafka_err2str(err)));
  }
  std::map<std::string, int> out;
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    const rd_kafka_metadata_topic_t& topic = metadata->topics[i];
    if (topic.err != RD_KAFKA_RESP_ERR_NO_ERROR) continue;
    int led = 0;
    for (int p = 0; p < topic.partition_cnt; ++p) {
      if (topic.partitions[p].err == RD_KAFKA_RESP_ERR_NO_ERROR &&
          topic.partitions[p].leader >= 0) {
        ++led;
      }
    }
    out[topic.topic] = led;
  }
  rd_kafka_metadata_destroy(metadata);
  return out;
}

}  // namespace kiq::testing
