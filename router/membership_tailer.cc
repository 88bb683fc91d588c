#include "router/membership_tailer.h"

#include <limits>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/kafka/kafka_errors.h"
#include "common/logging.h"
#include "common/thread_name.h"
#include "kiq/v1/membership.pb.h"

namespace kiq::router {
namespace {

constexpr int kMetadataTimeoutMs = 500;
constexpr int kWatermarkTimeoutMs = 1000;
constexpr absl::Duration kRetryInterval = absl::Milliseconds(500);
constexpr int kConsumeTimeoutMs = 100;
constexpr absl::Duration kWarningInterval = absl::Seconds(10);

std::string RandomSuffix() {
  std::random_device device;
  std::mt19937_64 gen((static_cast<uint64_t>(device()) << 32) ^ device() ^
                      static_cast<uint64_t>(absl::GetCurrentTimeNanos()));
  return absl::StrFormat("%016x", gen());
}

}  // namespace

absl::StatusOr<std::unique_ptr<MembershipTailer>> MembershipTailer::Start(
    const KafkaClientConfig& kafka, const std::string& topic, RoutingTable& table,
    std::optional<security::ClusterSecret> secret, prometheus::Registry* registry) {
  if (topic.empty()) return absl::InvalidArgumentError("membership tailer: topic is required");
  const KafkaProperties settings = {
      // Required by KafkaConsumer, never joined: partitions are assign()ed, nothing committed.
      {"group.id", absl::StrCat(topic, "-tailer-", RandomSuffix())},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      // Offsets the broker no longer has (retention) resume at the oldest record still there.
      {"auto.offset.reset", "earliest"},
      {"enable.partition.eof", "false"},
      // Membership changes should reach routers quickly; the topic is tiny.
      {"fetch.wait.max.ms", "100"},
  };
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf = kafka.Build("kiq-members-tailer", settings);
  if (!conf.ok()) return conf.status();
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(
      RdKafka::KafkaConsumer::create(conf->get(), err));
  if (!consumer) {
    return absl::InternalError(absl::StrCat("create membership tailer for ", topic, ": ", err));
  }
  std::unique_ptr<MembershipTailer> tailer(new MembershipTailer(std::move(consumer), topic, table));
  tailer->secret_ = std::move(secret);
  if (registry != nullptr) {
    auto& rejected = prometheus::BuildCounter()
                         .Name("kiq_member_records_rejected_total")
                         .Help("Members-topic records ignored because a cluster secret is "
                               "configured and their MAC is missing (unsigned) or wrong (bad_mac)")
                         .Register(*registry);
    tailer->rejected_unsigned_ = &rejected.Add({{"reason", "unsigned"}});
    tailer->rejected_bad_mac_ = &rejected.Add({{"reason", "bad_mac"}});
  }
  tailer->thread_ = std::thread([t = tailer.get()] {
    NameThisThread("kiq-membership");
    t->Run();
  });
  return tailer;
}

MembershipTailer::MembershipTailer(std::unique_ptr<RdKafka::KafkaConsumer> consumer,
                                   std::string topic, RoutingTable& table)
    : topic_(std::move(topic)), table_(table), consumer_(std::move(consumer)) {}

MembershipTailer::~MembershipTailer() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
  consumer_->close();
}

void MembershipTailer::Run() {
  while (!stop_.HasBeenNotified()) {
    if (!assigned_ && !TryAssign()) {
      stop_.WaitForNotificationWithTimeout(kRetryInterval);
      continue;
    }
    if (absl::Now() >= next_feed_check_) CheckFeed();
    std::unique_ptr<RdKafka::Message> message(consumer_->consume(kConsumeTimeoutMs));
    switch (message->err()) {
      case RdKafka::ERR_NO_ERROR:
        Handle(*message);
        break;
      case RdKafka::ERR__TIMED_OUT:
      case RdKafka::ERR__PARTITION_EOF:
        break;
      default: {
        // librdkafka retries fetch errors itself, and a reader of the members topic can only go
        // on; one it cannot get past (authorization, say) is logged as an error.
        const auto err = static_cast<rd_kafka_resp_err_t>(message->err());
        const bool fatal = ClassifyKafkaError(err) == KafkaErrorAction::kFatal;
        if (int64_t suppressed = 0; consume_log_.Allow(&suppressed)) {
          spdlog::log(
              fatal ? spdlog::level::err : spdlog::level::warn,
              "{} (retrying; {} similar suppressed)",
              KafkaToStatus(err, absl::StrCat("membership topic ", topic_, ": consume")).message(),
              suppressed);
        }
        break;
      }
    }
  }
}

bool MembershipTailer::TryAssign() {
  RdKafka::Metadata* raw = nullptr;
  const RdKafka::ErrorCode code = consumer_->metadata(true, nullptr, &raw, kMetadataTimeoutMs);
  std::unique_ptr<RdKafka::Metadata> metadata(raw);
  if (code != RdKafka::ERR_NO_ERROR) {
    spdlog::debug("membership topic {}: metadata: {}", topic_, RdKafka::err2str(code));
    return false;
  }
  const RdKafka::TopicMetadata* found = nullptr;
  for (const RdKafka::TopicMetadata* t : *metadata->topics()) {
    if (t->topic() == topic_) found = t;
  }
  if (found == nullptr || found->err() != RdKafka::ERR_NO_ERROR || found->partitions()->empty()) {
    spdlog::debug("membership topic {} not there yet ({})", topic_,
                  found == nullptr ? "unknown" : RdKafka::err2str(found->err()));
    return false;
  }

  // The watermarks before reading: the high ones tell when the table reflects the topic as it
  // was when we started (CaughtUp); the low ones are where reading starts. Starting at the low
  // watermark is OFFSET_BEGINNING without the offset lookup that librdkafka would otherwise do
  // after assign() (it costs ~500 ms before the first fetch). Should retention move the log
  // start meanwhile, auto.offset.reset=earliest resumes at the new one.
  std::map<int32_t, int64_t> catch_up;
  std::vector<RdKafka::TopicPartition*> assignment;
  for (const RdKafka::PartitionMetadata* p : *found->partitions()) {
    int64_t low = 0;
    int64_t high = 0;
    const RdKafka::ErrorCode wm =
        consumer_->query_watermark_offsets(topic_, p->id(), &low, &high, kWatermarkTimeoutMs);
    if (wm != RdKafka::ERR_NO_ERROR) {
      spdlog::debug("membership topic {} partition {}: watermarks: {}", topic_, p->id(),
                    RdKafka::err2str(wm));
      RdKafka::TopicPartition::destroy(assignment);
      return false;
    }
    if (high > low) catch_up[p->id()] = high;
    assignment.push_back(RdKafka::TopicPartition::create(topic_, p->id(), low));
  }

  const size_t num_partitions = assignment.size();
  const RdKafka::ErrorCode assigned = consumer_->assign(assignment);
  RdKafka::TopicPartition::destroy(assignment);
  if (assigned != RdKafka::ERR_NO_ERROR) {
    spdlog::warn("membership topic {}: assign {} partitions: {}", topic_, num_partitions,
                 RdKafka::err2str(assigned));
    return false;
  }
  assigned_ = true;
  catch_up_ = std::move(catch_up);
  spdlog::info("tailing membership topic {} ({} partitions, {} with records)", topic_,
               num_partitions, catch_up_.size());
  if (catch_up_.empty()) caught_up_.store(true, std::memory_order_release);
  return true;
}

MemberUpdate DecodeMemberRecord(const std::string* key, const void* value, size_t value_len,
                                const MemberAuth* auth) {
  MemberUpdate update;
  auto skip = [&](const char* why) {
    update.kind = MemberUpdate::Kind::kSkip;
    update.why = why;
    return update;
  };
  if (auth != nullptr && auth->secret != nullptr) {
    std::optional<absl::string_view> payload;
    if (value != nullptr) payload = absl::string_view(static_cast<const char*>(value), value_len);
    int64_t written_at_ms = 0;
    switch (auth->secret->CheckMember(key == nullptr ? absl::string_view() : *key, payload,
                                      auth->mac, auth->written_at, &written_at_ms)) {
      case security::ClusterSecret::MemberCheck::kOk:
        if (value == nullptr) update.written_at_ms = written_at_ms;
        break;
      case security::ClusterSecret::MemberCheck::kUnsigned:
        update.rejected = MemberUpdate::Rejected::kUnsigned;
        return skip("unsigned (no kiq-mac header) while a cluster secret is configured");
      case security::ClusterSecret::MemberCheck::kBadMac:
        update.rejected = MemberUpdate::Rejected::kBadMac;
        return skip("kiq-mac does not match (forged, or signed with another cluster secret)");
    }
  }
  if (value == nullptr) {
    if (key == nullptr || key->empty()) return skip("tombstone without a key");
    update.kind = MemberUpdate::Kind::kRemove;
    update.node_id = *key;
    return update;
  }
  if (value_len > static_cast<size_t>(std::numeric_limits<int>::max()) ||
      !update.record.ParseFromArray(value, static_cast<int>(value_len))) {
    return skip("value is not a kiq.v1.MemberRecord");
  }
  if (update.record.node_id().empty()) return skip("record has no node_id");
  // The key is what a tombstone names: a record under another key could never be removed.
  if (key == nullptr || *key != update.record.node_id()) {
    return skip("key is not the record's node_id");
  }
  update.kind = MemberUpdate::Kind::kApply;
  return update;
}

void MembershipTailer::Handle(RdKafka::Message& message) {
  NoteConsumed(message.partition(), message.offset());
  MemberAuth auth;
  if (secret_.has_value()) {
    auth.secret = &*secret_;
    // Owned by the message (null if it has none).
    if (const RdKafka::Headers* headers = message.headers(); headers != nullptr) {
      auto get = [headers](const char* name) -> std::optional<std::string> {
        const RdKafka::Headers::Header h = headers->get_last(name);
        if (h.err() != RdKafka::ERR_NO_ERROR || h.value() == nullptr) return std::nullopt;
        return std::string(static_cast<const char*>(h.value()), h.value_size());
      };
      auth.mac = get(security::kMemberMacHeader);
      auth.written_at = get(security::kMemberWrittenAtHeader);
    }
  }
  MemberUpdate update = DecodeMemberRecord(message.key(), message.payload(), message.len(),
                                           secret_.has_value() ? &auth : nullptr);
  switch (update.kind) {
    case MemberUpdate::Kind::kApply:
      table_.Apply(update.record);
      return;
    case MemberUpdate::Kind::kRemove:
      table_.Remove(update.node_id, update.written_at_ms);
      return;
    case MemberUpdate::Kind::kSkip:
      if (update.rejected != MemberUpdate::Rejected::kNo) {
        Reject(message, update);
      } else {
        Skip(message, update.why);
      }
      return;
  }
}

void MembershipTailer::Reject(const RdKafka::Message& message, const MemberUpdate& update) {
  prometheus::Counter* counter = update.rejected == MemberUpdate::Rejected::kUnsigned
                                     ? rejected_unsigned_
                                     : rejected_bad_mac_;
  if (counter != nullptr) counter->Increment();
  if (int64_t suppressed = 0; rejected_log_.Allow(&suppressed)) {
    spdlog::warn(
        "membership topic {} partition {} offset {}: ignored {}: {} ({} similar suppressed)",
        topic_, message.partition(), message.offset(),
        message.payload() == nullptr ? "tombstone" : "record", update.why, suppressed);
  }
}

void MembershipTailer::Skip(const RdKafka::Message& message, absl::string_view why) {
  ++skipped_since_warning_;
  const absl::Time now = absl::Now();
  if (now - last_warning_ < kWarningInterval) return;
  spdlog::warn(
      "membership topic {} partition {} offset {}: skipped: {} ({} skipped since last "
      "warning)",
      topic_, message.partition(), message.offset(), why, skipped_since_warning_);
  skipped_since_warning_ = 0;
  last_warning_ = now;
}

void MembershipTailer::CheckFeed() {
  next_feed_check_ = absl::Now() + absl::Seconds(1);
  int64_t low = 0;
  int64_t high = 0;
  // With a broker that accepted the connection but does not answer, this blocks until it does
  // (librdkafka 2.0.2 does not enforce the timeout then): the routing table notices the
  // silence itself (RoutingTable::kFeedStale).
  const absl::Time asked = absl::Now();
  const RdKafka::ErrorCode code =
      consumer_->query_watermark_offsets(topic_, 0, &low, &high, kWatermarkTimeoutMs);
  const absl::Duration took = absl::Now() - asked;
  if (code == RdKafka::ERR_NO_ERROR) {
    if (table_.feed_down() || took > RoutingTable::kFeedStale) {
      spdlog::info("membership topic {}: readable again after {}", topic_,
                   absl::FormatDuration(took));
    }
    table_.NoteFeedAlive();
    return;
  }
  if (int64_t suppressed = 0; feed_log_.Allow(&suppressed)) {
    spdlog::warn(
        "membership topic {}: no broker answers ({}); keeping the last known owners until it is "
        "readable again ({} similar suppressed)",
        topic_, RdKafka::err2str(code), suppressed);
  }
}

bool MembershipTailer::connected() const { return !table_.feed_down(); }

void MembershipTailer::NoteConsumed(int32_t partition, int64_t offset) {
  if (catch_up_.empty()) return;
  auto it = catch_up_.find(partition);
  if (it == catch_up_.end() || offset + 1 < it->second) return;
  catch_up_.erase(it);
  if (catch_up_.empty()) {
    spdlog::info("membership topic {}: caught up", topic_);
    caught_up_.store(true, std::memory_order_release);
  }
}

}  // namespace kiq::router
