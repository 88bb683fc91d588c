#include "common/kafka/dead_letter_queue.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kiq {

namespace {

constexpr char kTruncatedHeader[] = "kiq.truncated";

bool IsTruncated(RdKafka::Message& message) {
  RdKafka::Headers* headers = message.headers();
  return headers != nullptr && !headers->get(kTruncatedHeader).empty();
}

}  // namespace

class DeadLetterQueue::DeliveryReport final : public RdKafka::DeliveryReportCb {
 public:
  // Set once the queue exists (before the first Send) and cleared before it is destroyed.
  void set_queue(DeadLetterQueue* queue) { queue_ = queue; }

  void dr_cb(RdKafka::Message& message) override {
    if (message.err() == RdKafka::ERR_NO_ERROR) return;
    // The broker's limit (message.max.bytes, or the topic's max.message.bytes) is below the
    // producer's: the letter goes again, truncated (once: a truncated one is not cut again).
    if (message.err() == RdKafka::ERR_MSG_SIZE_TOO_LARGE && queue_ != nullptr &&
        !IsTruncated(message)) {
      RdKafka::Headers* original = message.headers();
      RdKafka::Headers* headers = original != nullptr
                                      ? RdKafka::Headers::create(original->get_all())
                                      : RdKafka::Headers::create();
      if (queue_->SendTruncated(message.key_pointer(), message.key_len(), message.payload(),
                                message.len(), message.timestamp().timestamp,
                                headers) == RdKafka::ERR_NO_ERROR) {
        return;
      }
      delete headers;
    }
    int64_t suppressed = 0;
    if (limiter_.Allow(&suppressed)) {
      spdlog::error("dead-letter delivery to {} failed: {} ({} similar messages suppressed)",
                    message.topic_name(), message.errstr(), suppressed);
    }
  }

 private:
  DeadLetterQueue* queue_ = nullptr;
  LogLimiter limiter_{10};
};

absl::StatusOr<std::unique_ptr<DeadLetterQueue>> DeadLetterQueue::Create(
    const KafkaClientConfig& kafka, const std::string& topic, const std::string& client_id) {
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf =
      kafka.Build(client_id + "-dlq", {{"linger.ms", "20"}});
  if (!conf.ok()) return conf.status();
  auto report = std::make_unique<DeliveryReport>();
  std::string err;
  if ((*conf)->set("dr_cb", report.get(), err) != RdKafka::Conf::CONF_OK) {
    return absl::InvalidArgumentError(absl::StrCat("dead-letter producer config: ", err));
  }
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf->get(), err));
  if (!producer) return absl::InternalError(absl::StrCat("create dead-letter producer: ", err));
  return std::unique_ptr<DeadLetterQueue>(
      new DeadLetterQueue(std::move(producer), std::move(report), topic));
}

DeadLetterQueue::DeadLetterQueue(std::unique_ptr<RdKafka::Producer> producer,
                                 std::unique_ptr<DeliveryReport> report, std::string topic)
    : report_(std::move(report)), producer_(std::move(producer)), topic_(std::move(topic)) {
  report_->set_queue(this);
}

DeadLetterQueue::~DeadLetterQueue() {
  Flush(5000);
  // Reports served while the producer is destroyed must not send through it.
  report_->set_queue(nullptr);
}

RdKafka::ErrorCode DeadLetterQueue::SendTruncated(const void* key, size_t key_len,
                                                  const void* value, size_t value_len,
                                                  int64_t timestamp_ms, RdKafka::Headers* headers) {
  headers->add(kTruncatedHeader, "true");
  headers->add("kiq.original.size", absl::StrCat(value_len));
  headers->add("kiq.original.key.size", absl::StrCat(key_len));
  return producer_->produce(topic_, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
                            const_cast<void*>(value), std::min(value_len, kTruncatedBytes), key,
                            std::min(key_len, kTruncatedBytes), timestamp_ms, headers, nullptr);
}

void DeadLetterQueue::Send(const Record& record, absl::string_view store,
                           absl::string_view reason) {
  RdKafka::Headers* headers = RdKafka::Headers::create();
  headers->add("kiq.reason", std::string(reason));
  headers->add("kiq.store", std::string(store));
  headers->add("kiq.topic", std::string(record.topic));
  headers->add("kiq.partition", absl::StrCat(record.partition.value()));
  headers->add("kiq.offset", absl::StrCat(record.offset.value()));
  RdKafka::ErrorCode err = producer_->produce(
      topic_, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
      record.value ? const_cast<char*>(record.value->data()) : nullptr,
      record.value ? record.value->size() : 0, record.key ? record.key->data() : nullptr,
      record.key ? record.key->size() : 0, record.timestamp_ms, headers, nullptr);
  if (err == RdKafka::ERR_MSG_SIZE_TOO_LARGE) {
    // Over the producer's message.max.bytes: the letter goes truncated rather than nowhere.
    err = SendTruncated(record.key ? record.key->data() : nullptr,
                        record.key ? record.key->size() : 0,
                        record.value ? record.value->data() : nullptr,
                        record.value ? record.value->size() : 0, record.timestamp_ms, headers);
  }
  if (err != RdKafka::ERR_NO_ERROR) {
    delete headers;  // ownership passes to librdkafka only on success
    int64_t suppressed = 0;
    if (send_errors_.Allow(&suppressed)) {
      spdlog::error(
          "dead-letter produce to {} failed for topic={} partition={} offset={}: {} "
          "({} similar messages suppressed)",
          topic_, record.topic, record.partition.value(), record.offset.value(),
          RdKafka::err2str(err), suppressed);
    }
  }
}

void DeadLetterQueue::Poll() { producer_->poll(0); }

void DeadLetterQueue::Flush(int timeout_ms) { producer_->flush(timeout_ms); }

}  // namespace kiq
