#include "node/ingest/changelog_writer.h"

#include "absl/strings/str_cat.h"
#include "common/kafka/kafka_errors.h"

namespace kiq::node {

// Counts failed deliveries and records how far each partition got.
class ChangelogWriter::DeliveryReport final : public RdKafka::DeliveryReportCb {
 public:
  void dr_cb(RdKafka::Message& message) override {
    if (message.err() != RdKafka::ERR_NO_ERROR) {
      ++failures;
      last_error = message.errstr();
      return;
    }
    int64_t& next = delivered[{message.topic_name(), message.partition()}];
    next = std::max(next, message.offset() + 1);
  }
  // Ingestion thread only (delivery reports are served by flush/poll).
  int64_t failures = 0;
  std::string last_error;
  absl::flat_hash_map<std::pair<std::string, int32_t>, int64_t> delivered;
};

absl::StatusOr<std::unique_ptr<ChangelogWriter>> ChangelogWriter::Create(
    const KafkaClientConfig& kafka, const std::string& client_id) {
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf =
      kafka.Build(client_id, {{"enable.idempotence", "true"}, {"acks", "all"}, {"linger.ms", "1"}});
  if (!conf.ok()) return conf.status();
  auto report = std::make_unique<DeliveryReport>();
  std::string err;
  if ((*conf)->set("dr_cb", report.get(), err) != RdKafka::Conf::CONF_OK) {
    return absl::InternalError(absl::StrCat("changelog producer dr_cb: ", err));
  }
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf->get(), err));
  if (!producer) return absl::InternalError(absl::StrCat("create changelog producer: ", err));
  return std::unique_ptr<ChangelogWriter>(
      new ChangelogWriter(std::move(report), std::move(producer)));
}

ChangelogWriter::ChangelogWriter(std::unique_ptr<DeliveryReport> report,
                                 std::unique_ptr<RdKafka::Producer> producer)
    : report_(std::move(report)), producer_(std::move(producer)) {}

ChangelogWriter::~ChangelogWriter() = default;

absl::Status ChangelogWriter::Produce(const std::string& topic, int32_t partition,
                                      absl::string_view key, std::optional<absl::string_view> value,
                                      int64_t timestamp_ms, const Headers& headers) {
  RdKafka::Headers* kafka_headers = RdKafka::Headers::create();
  for (const auto& [name, v] : headers) kafka_headers->add(name, v);
  while (true) {
    RdKafka::ErrorCode err = producer_->produce(topic, partition, RdKafka::Producer::RK_MSG_COPY,
                                                value ? const_cast<char*>(value->data()) : nullptr,
                                                value ? value->size() : 0, key.data(), key.size(),
                                                timestamp_ms, kafka_headers, nullptr);
    if (err == RdKafka::ERR_NO_ERROR) return absl::OkStatus();  // headers now librdkafka's
    if (err != RdKafka::ERR__QUEUE_FULL) {
      delete kafka_headers;
      return KafkaToStatus(static_cast<rd_kafka_resp_err_t>(err),
                           absl::StrCat("produce ", topic, " partition=", partition));
    }
    producer_->poll(10);  // room is made as deliveries are reported
  }
}

absl::Status ChangelogWriter::Flush(int timeout_ms) {
  if (producer_->flush(timeout_ms) != RdKafka::ERR_NO_ERROR) {
    return absl::UnavailableError(
        absl::StrCat("changelog flush timed out after ", timeout_ms, " ms; batch not committed"));
  }
  if (report_->failures != failures_seen_) {
    failures_seen_ = report_->failures;
    return absl::UnavailableError(
        absl::StrCat("changelog delivery failed: ", report_->last_error, "; batch not committed"));
  }
  return absl::OkStatus();
}

void ChangelogWriter::Poll() { producer_->poll(0); }

bool ChangelogWriter::AllDelivered() { return producer_->outq_len() == 0; }

absl::flat_hash_map<std::pair<std::string, int32_t>, int64_t> ChangelogWriter::TakeDelivered() {
  return std::exchange(report_->delivered, {});
}

}  // namespace kiq::node
