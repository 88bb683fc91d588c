#include "common/kafka/metadata.h"

#include <spdlog/spdlog.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/kafka/kafka_errors.h"

namespace kiq {

absl::StatusOr<absl::flat_hash_map<std::string, int32_t>> FetchPartitionCounts(
    const KafkaClientConfig& kafka, const std::vector<std::string>& topics, absl::Duration timeout,
    absl::string_view what) {
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf = kafka.Build("kiq-metadata", {});
  if (!conf.ok()) return conf.status();
  std::string err;
  std::unique_ptr<RdKafka::Producer> client(RdKafka::Producer::create(conf->get(), err));
  if (!client) return absl::InternalError(absl::StrCat("create metadata client: ", err));

  const absl::Time deadline = absl::Now() + timeout;
  absl::Status last = absl::OkStatus();
  while (true) {
    RdKafka::Metadata* raw = nullptr;
    RdKafka::ErrorCode code = client->metadata(true, nullptr, &raw, 5000);
    std::unique_ptr<RdKafka::Metadata> metadata(raw);
    absl::flat_hash_map<std::string, int32_t> counts;
    std::vector<std::string> missing;
    if (code == RdKafka::ERR_NO_ERROR) {
      for (const RdKafka::TopicMetadata* t : *metadata->topics()) {
        if (t->err() == RdKafka::ERR_NO_ERROR && !t->partitions()->empty()) {
          counts[t->topic()] = static_cast<int32_t>(t->partitions()->size());
        }
      }
      for (const std::string& topic : topics) {
        if (!counts.contains(topic)) missing.push_back(topic);
      }
      if (missing.empty()) return counts;
      if (last.ok() && absl::Now() < deadline) {
        // Said at once, not only when the wait is over.
        spdlog::warn("waiting up to {} for {} that do not exist yet: {}",
                     absl::FormatDuration(deadline - absl::Now()), std::string(what),
                     absl::StrJoin(missing, ", "));
      }
      last = absl::FailedPreconditionError(
          absl::StrCat(what, " do not exist: ", absl::StrJoin(missing, ", ")));
    } else {
      last = KafkaToStatus(static_cast<rd_kafka_resp_err_t>(code),
                           absl::StrCat("fetch metadata from ", kafka.bootstrap_servers()));
    }
    if (absl::Now() >= deadline) return last;
    absl::SleepFor(absl::Milliseconds(500));  // a retry interval, not a wait for a condition
  }
}

void RequestTopicsByName(const KafkaClientConfig& kafka, const std::vector<std::string>& topics) {
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf = kafka.Build("kiq-metadata", {});
  if (!conf.ok()) return;
  std::string err;
  std::unique_ptr<RdKafka::Producer> client(RdKafka::Producer::create(conf->get(), err));
  if (!client) return;
  for (const std::string& name : topics) {
    std::unique_ptr<RdKafka::Topic> topic(RdKafka::Topic::create(client.get(), name, nullptr, err));
    if (!topic) continue;
    RdKafka::Metadata* raw = nullptr;
    client->metadata(false, topic.get(), &raw, 5000);
    delete raw;
  }
}

}  // namespace kiq
