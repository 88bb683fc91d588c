#include "node/ingest/restorer.h"

#include <optional>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kafka/kafka_errors.h"
#include "common/logging.h"
#include "node/ingest/changelog_batches.h"
#include "node/store/staged_batch.h"

namespace kiq::node {
namespace {

constexpr int kKafkaTimeoutMs = 10000;
// A restore that reads nothing for this long (the changelog's leader gone, say) fails the
// partition rather than keeping it RESTORING forever.
constexpr absl::Duration kNoProgressLimit = absl::Seconds(60);

}  // namespace

absl::StatusOr<std::unique_ptr<Restorer>> Restorer::Create(const KafkaClientConfig& kafka,
                                                           const std::string& group_id,
                                                           const std::string& client_id) {
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf =
      kafka.Build(client_id, {{"group.id", group_id},
                              {"enable.auto.commit", "false"},
                              {"auto.offset.reset", "error"},
                              {"queued.min.messages", "1000000"},
                              {"enable.partition.eof", "false"}});
  if (!conf.ok()) return conf.status();
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(
      RdKafka::KafkaConsumer::create(conf->get(), err));
  if (!consumer) return absl::InternalError(absl::StrCat("create restore consumer: ", err));
  return std::unique_ptr<Restorer>(new Restorer(std::move(consumer)));
}

Restorer::~Restorer() = default;

void Restorer::Close() { consumer_->close(); }

absl::StatusOr<std::pair<int64_t, int64_t>> Restorer::Watermarks(const std::string& topic,
                                                                 PartitionId p) {
  int64_t low = 0;
  int64_t high = 0;
  RdKafka::ErrorCode code =
      consumer_->query_watermark_offsets(topic, p.value(), &low, &high, kKafkaTimeoutMs);
  if (code != RdKafka::ERR_NO_ERROR) {
    return KafkaToStatus(static_cast<rd_kafka_resp_err_t>(code),
                         absl::StrCat("watermarks of ", topic, " partition=", p.value()));
  }
  return std::make_pair(low, high);
}

absl::StatusOr<int64_t> Restorer::Restore(const CompiledStore& store,
                                          const std::string& source_topic, PartitionId p,
                                          StoreEngine& engine, SubscriptionHub* hub) {
  const std::string& topic = store.changelog_topic;
  absl::StatusOr<std::optional<Offset>> checkpoint = engine.ReadOffset(store.changelog_stream, p);
  if (!checkpoint.ok()) return checkpoint.status();
  absl::StatusOr<std::pair<int64_t, int64_t>> marks = Watermarks(topic, p);
  if (!marks.ok()) return marks.status();
  const auto [low, high] = *marks;
  const int64_t from = std::max(checkpoint->value_or(Offset(0)).value(), low);
  if (from >= high) return 0;  // nothing newer than our state
  const absl::Time started = absl::Now();
  std::vector<RdKafka::TopicPartition*> tps = {
      RdKafka::TopicPartition::create(topic, p.value(), from)};
  consumer_->assign(tps);
  RdKafka::TopicPartition::destroy(tps);

  StagedBatch restore(engine);
  ChangelogBatches batches(store, p, source_topic);
  // The restored changes go to the partition's replay log when this node keeps one (it held a
  // standby replica) and for the last records in any case (as many as a log holds): batches
  // its owner wrote while someone subscribed hold every write, so a subscription that followed
  // the partition on its owner resumes here even after the owner died.
  const bool continues_log = hub != nullptr && hub->KeepsReplayLog(store.handle, p);
  const int64_t log_tail_from =
      hub == nullptr ? high : high - static_cast<int64_t>(hub->replay_capacity());
  // Where the restored state's source stands before each batch: a batch's changes are those
  // of the records from there on.
  absl::StatusOr<std::optional<Offset>> source = engine.ReadOffset(store.source_stream, p);
  if (!source.ok()) return source.status();
  int64_t source_from = source->value_or(Offset(0)).value();
  batches.set_next_offset(from);
  int64_t applied = 0;
  absl::Status status = absl::OkStatus();
  absl::Time last_progress = absl::Now();
  while (batches.next_offset() < high && status.ok()) {
    std::unique_ptr<RdKafka::Message> m(consumer_->consume(200));
    if (m->err() == RdKafka::ERR__TIMED_OUT) {
      if (absl::Now() - last_progress > kNoProgressLimit) {
        status = absl::DeadlineExceededError(
            absl::StrCat("restore ", topic, " partition=", p.value(), ": no progress for ",
                         absl::FormatDuration(kNoProgressLimit), " at offset ",
                         batches.next_offset(), " of ", high));
      }
      continue;
    }
    if (m->err() != RdKafka::ERR_NO_ERROR) {
      const auto err = static_cast<rd_kafka_resp_err_t>(m->err());
      if (ClassifyKafkaError(err) != KafkaErrorAction::kRetry) {
        status = KafkaToStatus(err, absl::StrCat("restore ", topic, " partition=", p.value()));
      }
      continue;
    }
    last_progress = absl::Now();
    const bool replay = continues_log || m->offset() >= log_tail_from;
    restore.TrackWrites(replay);  // decided before the batch completes (it is staged at once)
    absl::StatusOr<int64_t> staged = batches.Add(*m, restore);
    if (!staged.ok()) {
      status = staged.status();
    } else if (*staged > 0 || !restore.empty()) {
      // Each complete batch is applied atomically with the offsets it reflects.
      applied += *staged;
      std::vector<Change> changes;
      status = restore.Commit(replay ? &changes : nullptr);
      const int64_t next = batches.source_next().value_or(source_from);
      if (status.ok() && replay) {
        hub->ReplicaApplied(
            std::move(changes),
            {{store.handle, p, batches.last_batch_exact() ? source_from : next, next}});
      }
      source_from = next;
    }
  }
  consumer_->unassign();
  if (!status.ok()) return status;
  spdlog::info("restored store={} partition={} from {} offsets [{}, {}): {} entries in {}",
               store.info.name, p.value(), topic, from, high, applied,
               absl::FormatDuration(absl::Now() - started));
  return applied;
}

}  // namespace kiq::node
