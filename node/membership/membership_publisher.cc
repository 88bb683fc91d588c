#include "node/membership/membership_publisher.h"

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <optional>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/kafka/kafka_errors.h"
#include "common/logging.h"
#include "common/security/crypto.h"

namespace kiq::node {
namespace {

constexpr int kFlushOnCloseMs = 2000;
constexpr absl::Duration kPollSlice = absl::Milliseconds(100);

}  // namespace

// Logs failed deliveries (rate-limited) and records the outcome of the messages a caller waits
// for (the tombstone), found by the ticket passed as msg_opaque. Called by librdkafka from
// whichever thread serves the producer's events (Poll, PublishTombstone, the destructor).
class MembershipPublisher::DeliveryReport final : public RdKafka::DeliveryReportCb {
 public:
  // A ticket (never 0, which stands for "not tracked") to pass as msg_opaque.
  uint64_t Track() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    const uint64_t ticket = ++last_ticket_;
    outcomes_.emplace(ticket, std::nullopt);
    return ticket;
  }
  // The delivery result, nullopt while outstanding.
  std::optional<RdKafka::ErrorCode> Outcome(uint64_t ticket) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto it = outcomes_.find(ticket);
    return it == outcomes_.end() ? std::nullopt : it->second;
  }
  // The caller stopped waiting; a late report for the ticket is then only logged.
  void Forget(uint64_t ticket) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    outcomes_.erase(ticket);
  }

  void dr_cb(RdKafka::Message& message) override {
    const auto ticket = reinterpret_cast<uintptr_t>(message.msg_opaque());
    if (ticket != 0) {
      absl::MutexLock lock(&mu_);
      auto it = outcomes_.find(ticket);
      if (it != outcomes_.end()) it->second = message.err();
    }
    if (message.err() == RdKafka::ERR_NO_ERROR) return;
    int64_t suppressed = 0;
    if (limiter_.Allow(&suppressed)) {
      spdlog::error("membership {} delivery to {} failed: {} ({} similar messages suppressed)",
                    message.payload() == nullptr ? "tombstone" : "record", message.topic_name(),
                    message.errstr(), suppressed);
    }
  }

 private:
  LogLimiter limiter_{10};
  mutable absl::Mutex mu_;
  uint64_t last_ticket_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::optional<RdKafka::ErrorCode>> outcomes_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<std::unique_ptr<MembershipPublisher>> MembershipPublisher::Create(
    const KafkaClientConfig& kafka, const std::string& topic, const std::string& node_id,
    std::optional<security::ClusterSecret> secret) {
  if (topic.empty()) return absl::InvalidArgumentError("membership publisher: topic is required");
  if (node_id.empty()) {
    return absl::InvalidArgumentError("membership publisher: node id is required");
  }
  auto report = std::make_unique<DeliveryReport>();
  const KafkaProperties settings = {
      // A record that only the leader has could be lost with it, and routers would then keep
      // an older view of this node until the next record.
      {"acks", "all"},
      // One request in flight: a retried record cannot land after a newer one or the tombstone.
      {"max.in.flight.requests.per.connection", "1"},
      {"linger.ms", "5"},
      // Place keys as the Java clients do, so every tool agrees on the partition of a node id.
      {"partitioner", "murmur2_random"},
      // A record older than this is superseded by the next periodic one anyway.
      {"message.timeout.ms", "30000"},
  };
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf =
      kafka.Build(absl::StrCat(node_id, "-members"), settings);
  if (!conf.ok()) return conf.status();
  std::string err;
  if ((*conf)->set("dr_cb", report.get(), err) != RdKafka::Conf::CONF_OK) {
    return absl::InvalidArgumentError(absl::StrCat("membership publisher config dr_cb: ", err));
  }
  std::unique_ptr<RdKafka::Producer> producer(RdKafka::Producer::create(conf->get(), err));
  if (!producer) {
    return absl::InternalError(absl::StrCat("create membership publisher for ", topic, ": ", err));
  }
  return std::unique_ptr<MembershipPublisher>(
      new MembershipPublisher(std::move(report), std::move(producer), topic, node_id,
                              std::move(secret)));
}

MembershipPublisher::MembershipPublisher(std::unique_ptr<DeliveryReport> report,
                                         std::unique_ptr<RdKafka::Producer> producer,
                                         std::string topic, std::string node_id,
                                         std::optional<security::ClusterSecret> secret)
    : report_(std::move(report)),
      producer_(std::move(producer)),
      topic_(std::move(topic)),
      node_id_(std::move(node_id)),
      secret_(std::move(secret)) {}

std::unique_ptr<RdKafka::Headers> MembershipPublisher::SignedHeaders(
    const std::optional<absl::string_view>& value) const {
  if (!secret_.has_value()) return nullptr;
  const int64_t written_at_ms = absl::ToUnixMillis(absl::Now());
  const std::string at = absl::StrCat(written_at_ms);
  const std::string mac = security::ToHex(secret_->MemberMac(node_id_, written_at_ms, value));
  std::unique_ptr<RdKafka::Headers> headers(RdKafka::Headers::create());
  headers->add(security::kMemberWrittenAtHeader, at.data(), at.size());
  headers->add(security::kMemberMacHeader, mac.data(), mac.size());
  return headers;
}

RdKafka::ErrorCode MembershipPublisher::Produce(const void* value, size_t len, void* opaque) {
  std::optional<absl::string_view> signed_value;
  if (value != nullptr) signed_value = absl::string_view(static_cast<const char*>(value), len);
  std::unique_ptr<RdKafka::Headers> headers = SignedHeaders(signed_value);
  void* payload = const_cast<void*>(value);  // RK_MSG_COPY: librdkafka only reads it
  if (headers == nullptr) {
    return producer_->produce(topic_, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY,
                              payload, len, node_id_.data(), node_id_.size(), 0, opaque);
  }
  const RdKafka::ErrorCode err = producer_->produce(
      topic_, RdKafka::Topic::PARTITION_UA, RdKafka::Producer::RK_MSG_COPY, payload, len,
      node_id_.data(), node_id_.size(), 0, headers.get(), opaque);
  // librdkafka owns (and frees) the headers once the record is queued.
  if (err == RdKafka::ERR_NO_ERROR) (void)headers.release();
  return err;
}

MembershipPublisher::~MembershipPublisher() {
  if (producer_->flush(kFlushOnCloseMs) != RdKafka::ERR_NO_ERROR) {
    spdlog::warn("membership publisher: {} records to {} still undelivered at close",
                 producer_->outq_len(), topic_);
  }
}

void MembershipPublisher::Publish(const kiq::v1::MemberRecord& record) {
  std::string value;
  if (record.node_id().empty()) {
    kiq::v1::MemberRecord filled = record;
    filled.set_node_id(node_id_);
    value = filled.SerializeAsString();
  } else if (record.node_id() == node_id_) {
    value = record.SerializeAsString();
  } else {
    // Keyed by one node, naming another: the tombstone of either would not remove it.
    spdlog::critical("membership publisher of node {} asked to publish a record of node {}",
                     node_id_, record.node_id());
    std::abort();
  }
  const RdKafka::ErrorCode err = Produce(value.data(), value.size(), nullptr);
  if (err != RdKafka::ERR_NO_ERROR) {
    int64_t suppressed = 0;
    if (produce_errors_.Allow(&suppressed)) {
      spdlog::error("membership publish to {} failed: {} ({} similar messages suppressed)", topic_,
                    RdKafka::err2str(err), suppressed);
    }
  }
}

absl::Status MembershipPublisher::PublishTombstone(absl::Duration timeout) {
  const std::string doing = absl::StrCat("publish tombstone node=", node_id_, " topic=", topic_);
  const absl::Time deadline = absl::Now() + timeout;
  const uint64_t ticket = report_->Track();
  const RdKafka::ErrorCode err =
      Produce(nullptr, 0, reinterpret_cast<void*>(static_cast<uintptr_t>(ticket)));
  if (err != RdKafka::ERR_NO_ERROR) {
    report_->Forget(ticket);
    return KafkaToStatus(static_cast<rd_kafka_resp_err_t>(err), doing);
  }
  while (true) {
    if (std::optional<RdKafka::ErrorCode> outcome = report_->Outcome(ticket)) {
      report_->Forget(ticket);
      return KafkaToStatus(static_cast<rd_kafka_resp_err_t>(*outcome), doing);
    }
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) break;
    producer_->poll(static_cast<int>(
        std::max<int64_t>(1, absl::ToInt64Milliseconds(std::min(left, kPollSlice)))));
  }
  report_->Forget(ticket);
  return absl::DeadlineExceededError(
      absl::StrCat(doing, ": not acknowledged within ", absl::FormatDuration(timeout)));
}

void MembershipPublisher::Poll() { producer_->poll(0); }

}  // namespace kiq::node
