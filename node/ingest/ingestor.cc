#include "node/ingest/ingestor.h"

#include <algorithm>
#include <cstring>

#include "common/logging.h"

#include <rapidjson/document.h>

#include "absl/cleanup/cleanup.h"
#include "absl/container/btree_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/grpc_status.h"
#include "common/kafka/kafka_errors.h"
#include "common/status.h"
#include "common/thread_name.h"
#include "node/ingest/record_headers.h"

#include <librdkafka/rdkafka.h>

namespace kiq::node {
namespace {

// Stops (or starts again) fetching `topics` at partition `p`; the partitions stay assigned.
void SetPaused(RdKafka::KafkaConsumer& consumer, const std::vector<std::string>& topics,
               int32_t p, bool paused) {
  std::vector<RdKafka::TopicPartition*> tps;
  for (const std::string& topic : topics) tps.push_back(RdKafka::TopicPartition::create(topic, p));
  if (paused) {
    consumer.pause(tps);
  } else {
    consumer.resume(tps);
  }
  RdKafka::TopicPartition::destroy(tps);
}

constexpr int kKafkaTimeoutMs = 10000;
// The longest a batch waits for its changelog to be durable before ingestion stops.
constexpr int kChangelogFlushTimeoutMs = 30000;

absl::Status ToStatus(RdKafka::ErrorCode err, const std::string& doing) {
  return KafkaToStatus(static_cast<rd_kafka_resp_err_t>(err), doing);
}

}  // namespace

// Routes librdkafka's rebalance events (served inside consume(), on the ingestion thread)
// to the Ingestor.
class Ingestor::RebalanceHandler final : public RdKafka::RebalanceCb {
 public:
  explicit RebalanceHandler(Ingestor& ingestor) : ingestor_(ingestor) {}
  void rebalance_cb(RdKafka::KafkaConsumer* consumer, RdKafka::ErrorCode err,
                    std::vector<RdKafka::TopicPartition*>& partitions) override {
    if (err == RdKafka::ERR__ASSIGN_PARTITIONS) {
      ingestor_.OnAssign(partitions);
    } else {
      ingestor_.OnRevoke(partitions);
    }
  }

 private:
  Ingestor& ingestor_;
};

// Turns librdkafka's statistics (every 5 s, served inside consume()) into gauges: each
// broker's average RTT and the messages waiting in the local fetch queues.
class Ingestor::StatsHandler final : public RdKafka::EventCb {
 public:
  StatsHandler(IngestMetrics* metrics, int lane) : metrics_(metrics), lane_(lane) {}
  void event_cb(RdKafka::Event& event) override {
    if (event.type() != RdKafka::Event::EVENT_STATS) {
      KafkaLogEvents::Instance().event_cb(event);
      return;
    }
    if (metrics_ == nullptr) return;
    // librdkafka's own JSON, but parsed without recursion all the same.
    rapidjson::Document doc;
    doc.Parse<rapidjson::kParseIterativeFlag>(event.str().c_str());
    if (doc.HasParseError() || !doc.IsObject()) return;
    if (doc.HasMember("brokers") && doc["brokers"].IsObject()) {
      for (const auto& broker : doc["brokers"].GetObject()) {
        const auto& b = broker.value;
        if (!b.IsObject() || !b.HasMember("rtt") || !b.HasMember("nodeid")) continue;
        if (b["nodeid"].GetInt() < 0) continue;  // bootstrap placeholders
        const auto& rtt = b["rtt"];
        if (rtt.IsObject() && rtt.HasMember("avg") && rtt["avg"].IsNumber()) {
          metrics_->SetBrokerRtt(broker.name.GetString(), rtt["avg"].GetDouble() / 1e6);
        }
      }
    }
    int64_t queued = 0;
    if (doc.HasMember("topics") && doc["topics"].IsObject()) {
      for (const auto& topic : doc["topics"].GetObject()) {
        if (!topic.value.IsObject() || !topic.value.HasMember("partitions")) continue;
        for (const auto& partition : topic.value["partitions"].GetObject()) {
          const auto& p = partition.value;
          if (p.IsObject() && p.HasMember("fetchq_cnt") && p["fetchq_cnt"].IsNumber()) {
            queued += p["fetchq_cnt"].GetInt64();
          }
        }
      }
    }
    metrics_->SetQueueMessages(lane_, queued);
  }

 private:
  IngestMetrics* const metrics_;
  const int lane_;
};

absl::StatusOr<std::unique_ptr<Ingestor>> Ingestor::Create(CompiledTopology& topology,
                                                           StoreEngine& engine,
                                                           PartitionStates& states,
                                                           PositionTracker& positions,
                                                           IngestorOptions options) {
  std::unique_ptr<Ingestor> ingestor(
      new Ingestor(topology, engine, states, positions, std::move(options)));
  const IngestorOptions& o = ingestor->options_;
  if (o.changelog_batches_in_flight != 1 && o.changelog_batches_in_flight != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("changelog_batches_in_flight: must be 1 (sequential) or 2 (pipelined), got ",
                     o.changelog_batches_in_flight));
  }
  if (o.lane < 0) return absl::InvalidArgumentError("lane: must be >= 0");
  // Each ingestion thread is a member of the group in its own right.
  const std::string member = o.lane == 0 ? o.node_id : absl::StrCat(o.node_id, "-", o.lane);
  std::string err;
  {
    absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf = o.kafka.Build(
        member,
        {
            {"group.id", topology.application_id()},
            // Static membership (KIP-345): a node that restarts (cleanly or not) within the
            // session timeout keeps its partitions; a rolling restart moves nothing. So close()
            // sends no LeaveGroup: a node that does not come back has its partitions moved once
            // the session times out.
            {"group.instance.id", member},
            // A query service fails over in seconds, not librdkafka's default 45 s: a dead
            // node's partitions move once the coordinator has missed its heartbeats for this
            // long (Kafka Streams 2.4's default too). --kafka-property overrides both.
            {"session.timeout.ms", "10000"},
            {"heartbeat.interval.ms", "1000"},
            // Offsets live in RocksDB; Kafka commits are made by hand after each local commit.
            {"enable.auto.commit", "false"},
            {"enable.auto.offset.store", "false"},
            // Every assigned partition gets an explicit start offset; if the log moves under us
            // (retention, recreated topic) we want an error event, never a silent reset.
            {"auto.offset.reset", "error"},
            // Incremental cooperative rebalancing (KIP-429): a member joining or leaving moves
            // only the partitions that change hands; the others keep being consumed and served
            // throughout. The group assigns the partitions of one topic (the lead source);
            // partition p of every other source follows by number (see OnAssign), which is
            // what makes "task = partition number" hold whatever the assignor does.
            {"partition.assignment.strategy", "cooperative-sticky"},
            // The default (100k) starves the consumer at ~270k msgs/s; 1M reads ~2.5M msgs/s.
            {"queued.min.messages", "1000000"},
            // ...but bounded by bytes, which sets memory and, without FetchWaker, the ingestion
            // rate of a backlog: once the queue is full, librdkafka 2.0 fetches again only at its
            // broker thread's next wake-up (up to a second later), about one queue per second.
            // Before FetchWaker, real broker, 1M 100-byte records: 16 MiB 236k rec/s at 199 MB
            // peak RSS, 32 MiB 396-447k at 273-280 MB, 64 MiB (librdkafka's default) 565k at
            // 383 MB. FetchWaker (fetch_waker.h) restarts fetching after each quarter of it is
            // read (1.15x at 32 MiB, bench/README.md). Per ingestion thread (each has its own
            // consumer).
            {"queued.max.messages.kbytes", std::to_string(kQueuedMaxKbytes)},
            {"enable.partition.eof", "false"},
            {"statistics.interval.ms", o.metrics != nullptr ? "5000" : "0"},
            // A topic created after the subscription (another node's repartition topic) is seen
            // within seconds, not librdkafka's default five minutes.
            {"topic.metadata.refresh.interval.ms", "10000"},
        });
    if (!conf.ok()) return conf.status();
    if ((*conf)->set("rebalance_cb", ingestor->rebalance_.get(), err) != RdKafka::Conf::CONF_OK) {
      return absl::InternalError(absl::StrCat("rebalance_cb: ", err));
    }
    ingestor->stats_handler_ = std::make_unique<StatsHandler>(o.metrics, o.lane);
    if ((*conf)->set("event_cb", ingestor->stats_handler_.get(), err) != RdKafka::Conf::CONF_OK) {
      return absl::InternalError(absl::StrCat("event_cb: ", err));
    }
    ingestor->consumer_.reset(RdKafka::KafkaConsumer::create(conf->get(), err));
    if (!ingestor->consumer_) return absl::InternalError(absl::StrCat("create consumer: ", err));
  }
  {
    absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf = o.kafka.Build(
        member + "-offsets",
        {{"group.id", topology.application_id() + "-offsets"}, {"enable.auto.commit", "false"}});
    if (!conf.ok()) return conf.status();
    ingestor->offsets_.reset(RdKafka::KafkaConsumer::create(conf->get(), err));
    if (!ingestor->offsets_) {
      return absl::InternalError(absl::StrCat("create offsets consumer: ", err));
    }
  }
  absl::StatusOr<std::unique_ptr<Restorer>> restorer =
      Restorer::Create(o.kafka, topology.application_id() + "-restore", member + "-restore");
  if (!restorer.ok()) return restorer.status();
  ingestor->restorer_ = *std::move(restorer);
  {
    std::vector<std::pair<std::string, PartitionId>> changelogs;
    for (const CompiledStore& store : topology.stores()) {
      if (store.changelog_topic.empty()) continue;
      for (int32_t p = 0; p < topology.num_partitions(); ++p) {
        changelogs.emplace_back(store.changelog_topic, PartitionId(p));
      }
    }
    ingestor->restorer_->Warm(std::move(changelogs));
  }
  absl::StatusOr<std::unique_ptr<ChangelogWriter>> changelog =
      ChangelogWriter::Create(o.kafka, member + "-changelog");
  if (!changelog.ok()) return changelog.status();
  ingestor->changelog_ = *std::move(changelog);

  const std::vector<std::string> lead = {topology.sources().front().spec.topic()};
  if (RdKafka::ErrorCode code = ingestor->consumer_->subscribe(lead);
      code != RdKafka::ERR_NO_ERROR) {
    return ToStatus(code, absl::StrCat("subscribe to ", lead.front()));
  }
  absl::StatusOr<std::unique_ptr<DeadLetterQueue>> dlq =
      DeadLetterQueue::Create(o.kafka, topology.plan().dlq_topic(), o.node_id);
  if (!dlq.ok()) return dlq.status();
  ingestor->dlq_ = std::move(*dlq);
  return ingestor;
}

Ingestor::Ingestor(CompiledTopology& topology, StoreEngine& engine, PartitionStates& states,
                   PositionTracker& positions, IngestorOptions options)
    : topology_(topology),
      engine_(engine),
      states_(states),
      positions_(positions),
      options_(std::move(options)),
      rebalance_(std::make_unique<RebalanceHandler>(*this)),
      cache_(options_.ingest_cache_bytes > 0
                 ? std::make_unique<CommittedCache>(options_.ingest_cache_bytes)
                 : nullptr),
      batch_(engine, cache_.get()),
      inflight_(engine, cache_.get()) {}

Ingestor::~Ingestor() { Stop(); }

void Ingestor::Start() {
  thread_ = std::thread([this] {
    NameThisThread(absl::StrCat("kiq-ingest-", options_.lane));
    Run();
  });
}

void Ingestor::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

absl::Status Ingestor::Wait() {
  done_.WaitForNotification();
  absl::MutexLock lock(&mu_);
  return final_status_;
}

void Ingestor::Run() {
  absl::Status status = absl::OkStatus();
  LogLimiter consume_errors(20);
  while (!stop_.load() && status.ok()) {
    // With a batch open, wait for the next record no longer than until the batch may be
    // committed as idle; once it is due, only look at what is already queued: a record there
    // means we are behind, and the batch may grow; none means the batch is committed now.
    int timeout_ms = static_cast<int>(absl::ToInt64Milliseconds(options_.max_batch_delay));
    bool due = false;
    if (!batch_.empty()) {
      const absl::Duration age = absl::Now() - batch_started_;
      due = age >= options_.max_batch_delay;
      // Rounded up: a 0 ms wait before the idle delay has passed would spin.
      const absl::Duration left = std::max(options_.idle_batch_delay - age, absl::ZeroDuration());
      timeout_ms =
          static_cast<int>(absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))));
    }
    // A batch in flight is committed once its delivery reports are served: look again soon.
    if (inflight_.active) timeout_ms = std::min(timeout_ms, 1);
    std::unique_ptr<RdKafka::Message> message(consumer_->consume(timeout_ms));
    if (!rebalance_failure_.ok()) {
      status = rebalance_failure_;
      break;
    }
    bool backlog = false;
    bool idle = false;
    if (message->err() == RdKafka::ERR_NO_ERROR) {
      backlog = due;
      if (fetch_waker_.Consumed(static_cast<int64_t>(message->len()))) {
        FetchWaker::Wake(*consumer_, message->topic_name(), message->partition());
      }
      status = HandleMessage(*message);
    } else if (message->err() == RdKafka::ERR__AUTO_OFFSET_RESET ||
               message->err() == RdKafka::ERR_OFFSET_OUT_OF_RANGE) {
      HandleOutOfRange(message->topic_name(), PartitionId(message->partition()), message->errstr());
    } else if (message->err() == RdKafka::ERR__TIMED_OUT) {
      idle = true;
    } else {
      const auto code = static_cast<rd_kafka_resp_err_t>(message->err());
      absl::Status error = KafkaToStatus(code, "consume");
      if (ClassifyKafkaError(code) == KafkaErrorAction::kFatal) {
        status = error;
      } else if (int64_t suppressed = 0; consume_errors.Allow(&suppressed)) {
        spdlog::warn("{} (will retry; {} similar suppressed)", error.message(), suppressed);
      }
    }
    if (status.ok() && !batch_.empty()) {
      const absl::Duration age = absl::Now() - batch_started_;
      if (batch_.records() >= options_.max_batch_records ||
          (idle && age >= options_.idle_batch_delay) ||
          (age >= options_.max_batch_delay && !backlog) ||
          age >= options_.max_backlog_batch_delay) {
        status = options_.changelog_batches_in_flight > 1 ? Dispatch() : Flush();
      }
    }
    // Pipelined: the batch in flight commits as soon as its changelog is durable (the next
    // one keeps being staged meanwhile).
    if (status.ok() && inflight_.active) {
      changelog_->Poll();
      if (changelog_->AllDelivered()) {
        status = FinishInFlight();
        // Committed positions moved (the staged batch is not part of them).
        if (status.ok() && !catching_up_.empty()) CheckCaughtUp();
      }
    }
    // A partition may turn ACTIVE only between batches: queries read the committed state
    // (CheckCaughtUp compares committed positions), which a pending batch has not reached.
    if (status.ok() && !catching_up_.empty() && batch_.empty()) CheckCaughtUp();
    if (status.ok() && !registry_waits_.empty()) RetryRegistry();
    dlq_->Poll();
    changelog_->Poll();
    // Serves the offset commits' results (else they queue up in librdkafka).
    std::unique_ptr<RdKafka::Message>(offsets_->consume(0));
  }
  if (status.ok()) status = Flush();
  if (!status.ok()) spdlog::error("ingestion stopped: {}", status.ToString());
  if (options_.hub != nullptr) {
    options_.hub->EndAll(absl::UnavailableError(
        status.ok() ? std::string("node shutting down")
                    : absl::StrCat("ingestion stopped: ", status.ToString())));
  }
  // close() serves the final revoke; with static membership it sends no LeaveGroup (KIP-345).
  failed_ = !status.ok();
  consumer_->close();
  joined_.store(false);
  offsets_->close();
  restorer_->Close();
  dlq_->Flush(5000);
  {
    absl::MutexLock lock(&mu_);
    final_status_ = status;
  }
  if (options_.on_end) options_.on_end(status);
  done_.Notify();
}

absl::Status Ingestor::HandleMessage(const RdKafka::Message& message) {
  const CompiledSource* source = topology_.FindSource(message.topic_name());
  if (source == nullptr) return absl::OkStatus();  // not subscribed any more
  if (!registry_waits_.empty() &&
      registry_waits_.count({source->spec.topic(), message.partition()}) > 0) {
    return absl::OkStatus();  // fetched before the pause; read again after it
  }
  Record record;
  record.topic = source->spec.topic();
  record.partition = PartitionId(message.partition());
  record.offset = Offset(message.offset());
  record.timestamp_ms = message.timestamp().timestamp;
  if (message.key_pointer() != nullptr) {
    record.key.emplace(static_cast<const char*>(message.key_pointer()), message.key_len());
  }
  if (message.payload() != nullptr) {
    record.value.emplace(static_cast<const char*>(message.payload()), message.len());
  }

  // A record whose key maps to another partition is not applied: Get() routes the key to the
  // other partition and could never find it, while scans would show it. It is bad for every
  // store of its source, like a value that does not decode.
  std::optional<std::string> misplaced;
  if (record.key) {
    const PartitionId expected = CompiledTopology::ExpectedPartition(*source, *record.key);
    if (expected != record.partition) {
      const char* partitioner =
          source->partitioner == PartitionerKind::kMurmur2 ? "murmur2" : "consistent";
      misplaced = absl::StrCat("wrong partition: the ", partitioner,
                               " partitioner maps the key to ", "partition ", expected.value());
      const int64_t n = ++stats_.wrong_partition;
      if (options_.metrics != nullptr) options_.metrics->WrongPartition(record.topic);
      if (int64_t suppressed = 0; wrong_partition_log_.Allow(&suppressed)) {
        spdlog::warn(
            "topic {}: record at partition {} offset {} has a key that the {} partitioner maps "
            "to partition {} ({} such records so far); skipped and sent to {}. Fix the "
            "producers (Kafka's Java default; librdkafka/kcat: -X partitioner=murmur2_random) "
            "or set `partitioner: consistent` on this source in the topology.",
            record.topic, record.partition.value(), record.offset.value(), partitioner,
            expected.value(), n, dlq_->topic());
      }
    }
  }

  // Avro, Protobuf and JSON Schema values become JSON here; dead letters keep the bytes as
  // they were produced.
  const Record produced = record;
  std::optional<std::string> decode_error = misplaced;
  // Only records some store still needs may wait for the registry (not a stray one after a
  // revoke, nor one already applied).
  const auto needed = [&] {
    for (int index : source->stores) {
      auto next = next_.find({index, record.partition.value()});
      if (next != next_.end() && record.offset.value() >= next->second) return true;
    }
    return false;
  };
  if (!decode_error && topology_.schemas() != nullptr && needed()) {
    int32_t schema_id = -1;
    absl::Status s = topology_.DecodeRegistryFormats(record, *source, &schema_id);
    if (absl::IsUnavailable(s)) {
      // Never skipped and never dead-lettered: the data is fine, the registry is not.
      WaitForRegistry(source->spec.topic(), record.partition, record.offset.value(), schema_id, s);
      return absl::OkStatus();
    }
    if (!s.ok()) decode_error = std::string(s.message());
  }
  if (!decode_error) decode_error = topology_.DecodeError(record, *source);

  if (options_.metrics != nullptr) {
    prometheus::Counter*& consumed = consumed_[{source, record.partition.value()}];
    if (consumed == nullptr) {
      consumed = &options_.metrics->Consumed(record.topic, record.partition.value());
    }
    consumed->Increment();
  }
  // A repartition record names the upstream record it was forwarded for.
  std::optional<std::pair<int32_t, int64_t>> upstream;
  if (source->repartition) {
    // headers() is not const in librdkafka's C++ API; it only parses them on first use.
    if (RdKafka::Headers* headers = const_cast<RdKafka::Message&>(message).headers();
        headers != nullptr) {
      for (const RdKafka::Headers::Header& h : headers->get(kUpstreamHeader)) {
        UpstreamMarks marks = ParseUpstreamMarks(
            absl::string_view(static_cast<const char*>(h.value()), h.value_size()));
        if (marks.size() == 1) upstream = marks.front();
      }
    }
  }
  if (batch_.empty()) {
    batch_started_ = absl::Now();
    // Log every write only while someone listens (costs a copy of each change).
    if (options_.hub != nullptr) batch_.TrackWrites(options_.hub->BeginBatch(options_.lane));
  }
  batch_.SetSource(source->spec.topic(), record.offset);
  bool counted = false;
  for (int index : source->stores) {
    auto next = next_.find({index, record.partition.value()});
    // Not owned (a stray message after a revoke), or already applied to this store (after a
    // restore, stores of one topic may stand at different offsets).
    if (next == next_.end() || record.offset.value() < next->second) continue;
    const CompiledStore& store = topology_.stores()[index];
    bool duplicate = false;
    if (upstream) {
      auto [it, inserted] =
          upstream_next_.try_emplace({index, record.partition.value(), upstream->first}, 0);
      duplicate = upstream->second < it->second;
      if (duplicate && options_.metrics != nullptr) {
        options_.metrics->RepartitionDuplicate(store.info.name);
      }
      if (!duplicate) {
        it->second = upstream->second + 1;
        batch_.SetOffset(store.UpstreamStream(upstream->first), record.partition,
                         Offset(it->second));
      }
    }
    absl::Status s = duplicate      ? absl::OkStatus()
                     : decode_error ? absl::InvalidArgumentError(*decode_error)
                                    : topology_.Process(record, index, batch_);
    // The first stage of a group_by store reports as the store.
    const std::string& name =
        store.internal ? topology_.stores()[store.grouped].info.name : store.info.name;
    if (absl::IsInvalidArgument(s)) {
      ++stats_.bad_records;
      if (options_.metrics != nullptr) options_.metrics->BadRecord(name, s.message());
      dlq_->Send(produced, name, s.message());
      if (int64_t suppressed = 0; bad_record_log_.Allow(&suppressed)) {
        spdlog::warn(
            "bad record skipped: store={} topic={} partition={} offset={} reason=\"{}\" "
            "(sent to {}; {} similar suppressed)",
            name, record.topic, record.partition.value(), record.offset.value(), s.message(),
            dlq_->topic(), suppressed);
      }
    } else if (!s.ok()) {
      return s;
    } else if (store.internal) {
      NoteDrops(index, topology_.stores()[store.grouped]);
    } else if (!duplicate) {
      NoteDrops(index, store);
      // Counted once committed: the metric must not run ahead of what a Get sees.
      if (options_.metrics != nullptr) ++materialized_[{index, record.partition.value()}].staged;
    }
    next->second = record.offset.value() + 1;
    batch_.SetOffset(store.source_stream, record.partition, Offset(next->second));
    touched_.insert({index, record.partition.value()});
    counted = true;
  }
  if (counted) {
    batch_.CountRecord();
    ++stats_.records;
    if (inflight_.active) ++stats_.staged_in_flight;
  }
  return absl::OkStatus();
}

void Ingestor::NoteDrops(int index, const CompiledStore& store) {
  // Whether a summary is due (at most once a minute), with "since when" for its text.
  auto due = [](DropSummary& summary, int64_t n) -> std::optional<std::string> {
    summary.pending += n;
    const absl::Time now = absl::Now();
    if (now - summary.logged_at < absl::Minutes(1)) return std::nullopt;
    std::string since = summary.logged_at == absl::InfinitePast()
                            ? std::string("the start")
                            : absl::FormatDuration(now - summary.logged_at) + " ago";
    summary.logged_at = now;
    return since;
  };
  if (const int64_t late = topology_.TakeLateRecords(index); late > 0) {
    if (options_.metrics != nullptr) options_.metrics->LateRecords(store.info.name, late);
    DropSummary& summary = late_[store.handle.index];
    if (std::optional<std::string> since = due(summary, late)) {
      spdlog::warn(
          "store {}: {} record-window pairs dropped as late since {} (they came after their "
          "window's end + grace, in stream time; kiq_late_records_total counts them): if "
          "records arrive this much out of order, raise the store's window.grace",
          store.info.name, summary.pending, *since);
      summary.pending = 0;
    }
  }
  if (const int64_t null_keys = topology_.TakeNullKeyRecords(index); null_keys > 0) {
    if (options_.metrics != nullptr) options_.metrics->NullKeyRecords(store.info.name, null_keys);
    DropSummary& summary = null_keys_[store.handle.index];
    if (std::optional<std::string> since = due(summary, null_keys)) {
      spdlog::info(
          "store {}: {} records dropped since {} because their group_by key was null or missing "
          "(kiq_null_key_records_total counts them)",
          store.info.name, summary.pending, *since);
      summary.pending = 0;
    }
  }
}

void Ingestor::WaitForRegistry(const std::string& topic, PartitionId p, int64_t offset,
                               int32_t schema_id, const absl::Status& why) {
  SetPaused(*consumer_, {topic}, p.value(), /*paused=*/true);
  const absl::Time now = absl::Now();
  registry_waits_[{topic, p.value()}] = {schema_id, offset, now, now + absl::Milliseconds(100),
                                         absl::Milliseconds(100)};
  if (options_.metrics != nullptr) {
    options_.metrics->RegistryWaits(options_.lane, registry_waits_.size());
  }
  // Info: a first sight of an id pauses too, for the few milliseconds of its fetch; a registry
  // that does not answer is warned about by RetryRegistry.
  spdlog::info(
      "topic {} partition {}: paused at offset {}: {}; the records wait (none is skipped) and "
      "the partition resumes once the registry answers",
      topic, p.value(), offset, why.message());
}

void Ingestor::RetryRegistry() {
  const absl::Time now = absl::Now();
  for (auto it = registry_waits_.begin(); it != registry_waits_.end();) {
    RegistryWait& wait = it->second;
    // Only the decoder's cache is consulted here: the fetch runs on its own thread, so a
    // registry that is slow or down never stalls the other partitions.
    using FetchState = schema::SchemaDecoder::FetchState;
    absl::Status error;
    const FetchState state = topology_.schemas()->Poll(wait.schema_id, &error);
    if (state == FetchState::kInFlight) {
      ++it;
      continue;
    }
    if (state == FetchState::kFailed) {
      if (now >= wait.next_try) {
        if (!wait.warned) {
          wait.warned = true;
          spdlog::warn(
              "topic {} partition {}: the schema registry did not answer for schema id "
              "{}: {}; asking again with backoff (the records wait)",
              it->first.first, it->first.second, wait.schema_id, error.message());
        }
        topology_.schemas()->Fetch(wait.schema_id);
        wait.next_try = now + wait.backoff;
        wait.backoff = std::min(wait.backoff * 2, absl::Seconds(5));
      }
      ++it;
      continue;
    }
    const auto& [topic, p] = it->first;
    // Resume, then go back to the record that waited: the fetched records after it were
    // dropped while paused.
    SetPaused(*consumer_, {topic}, p, /*paused=*/false);
    std::unique_ptr<RdKafka::TopicPartition> at(
        RdKafka::TopicPartition::create(topic, p, wait.offset));
    if (RdKafka::ErrorCode code = consumer_->seek(*at, 5000); code != RdKafka::ERR_NO_ERROR) {
      spdlog::warn("topic {} partition {}: seek to {} after the registry wait: {}", topic, p,
                   wait.offset, RdKafka::err2str(code));
    }
    spdlog::info("topic {} partition {}: the schema registry answered for schema id {}; resumed "
                 "at offset {} after {}",
                 topic, p, wait.schema_id, wait.offset, absl::FormatDuration(now - wait.since));
    it = registry_waits_.erase(it);
    if (options_.metrics != nullptr) {
      options_.metrics->RegistryWaits(options_.lane, registry_waits_.size());
    }
  }
}

absl::Status Ingestor::ProduceChangelog(bool exact) {
  // Exact: every write in order, each naming its source record (someone subscribes, and a
  // standby replica must be able to replay what was pushed); else one folded write per key.
  const std::vector<Change> folded = exact ? std::vector<Change>() : batch_.Changes();
  const std::vector<Change>& changes = exact ? batch_.writes() : folded;
  // The last change of each (store, partition) carries the batch-end marker.
  absl::flat_hash_map<std::pair<int, int32_t>, size_t> last;
  for (size_t i = 0; i < changes.size(); ++i) {
    if (topology_.stores()[changes[i].store.index].changelog_topic.empty()) continue;
    last[{changes[i].store.index, changes[i].partition.value()}] = i;
  }
  if (last.empty() && batch_.forwards().empty()) return absl::OkStatus();
  for (size_t i = 0; i < changes.size(); ++i) {
    const Change& c = changes[i];
    const CompiledStore& store = topology_.stores()[c.store.index];
    if (store.changelog_topic.empty()) continue;
    const int64_t source_next = next_[{c.store.index, c.partition.value()}];
    ChangelogWriter::Headers headers = {{kSourceOffsetHeader, absl::StrCat(source_next)}};
    if (exact) headers.emplace_back(kRecordOffsetHeader, absl::StrCat(c.offset));
    if (last[{c.store.index, c.partition.value()}] == i) {
      headers.emplace_back(kBatchEndHeader, "1");
      if (topology_.sources()[store.source].repartition) {
        // The dedup watermarks travel with the state they guard, so a new owner restores both.
        UpstreamMarks marks;
        for (int32_t up = 0; up < topology_.num_partitions(); ++up) {
          auto it = upstream_next_.find({c.store.index, c.partition.value(), up});
          if (it != upstream_next_.end()) marks.emplace_back(up, it->second);
        }
        headers.emplace_back(kUpstreamHeader, FormatUpstreamMarks(marks));
      }
    }
    std::optional<absl::string_view> value;
    if (c.new_value) value = *c.new_value;
    if (absl::Status s = changelog_->Produce(store.changelog_topic, c.partition.value(), c.key,
                                             value, 0, headers);
        !s.ok()) {
      return s;
    }
  }
  // Records for repartition topics: like the changelog, durable before the batch commits (so
  // the upstream offsets are never committed ahead of them); a re-processed batch forwards
  // them again and the grouped store drops the duplicates by their upstream offset.
  for (const ForwardedRecord& f : batch_.forwards()) {
    if (absl::Status s = changelog_->Produce(
            f.topic, f.partition.value(), f.key, absl::string_view(f.value), f.timestamp_ms,
            {{kUpstreamHeader,
              FormatUpstreamMarks({{f.upstream_partition.value(), f.upstream_offset.value()}})}});
        !s.ok()) {
      return s;
    }
  }
  // Write-ahead: the batch is committed locally only once its changelog is durable (see
  // FinishInFlight).
  return absl::OkStatus();
}

absl::Status Ingestor::StartInFlight() {
  if (inflight_.active) {
    spdlog::critical("a batch was put in flight while another one was: commit order would break");
    std::abort();
  }
  const bool exact = options_.hub != nullptr && options_.hub->StartCommit(batch_, options_.lane);
  if (absl::Status s = ProduceChangelog(exact); !s.ok()) {
    // Nothing commits; the hub lets registrations in again.
    if (options_.hub != nullptr) s = options_.hub->FinishCommit(batch_, {}, s, options_.lane);
    DiscardPending();
    return s;
  }
  // From here the batch waits for its changelog while the next one is staged on top of it.
  // What its commit needs is taken now: next_ and the staged counts move on with the next batch.
  inflight_.batch.Swap(batch_);
  inflight_.active = true;
  inflight_.touched.swap(touched_);
  touched_.clear();
  for (const auto& sp : inflight_.touched) inflight_.next[sp] = next_[sp];
  for (auto& [sp, m] : materialized_) {
    if (m.staged != 0) inflight_.materialized[sp] = std::exchange(m.staged, 0);
  }
  batch_.ReadThrough(&inflight_.batch);
  return absl::OkStatus();
}

absl::Status Ingestor::FinishInFlight() {
  if (!inflight_.active) return absl::OkStatus();
  // Write-ahead: only its own records are queued (the next batch is produced after this
  // commit), so an empty queue means all of them are durable.
  absl::Status status = changelog_->Flush(kChangelogFlushTimeoutMs);
  bool bracketed = false;
  absl::Cleanup end_commit = [&] {
    if (bracketed) positions_.EndCommit();
  };
  if (status.ok()) {
    // The changelog position this state reflects, committed with it: a restart restores only
    // what other owners wrote after it, not the whole changelog again.
    const auto delivered = changelog_->TakeDelivered();
    for (const CompiledStore& store : topology_.stores()) {
      if (store.changelog_topic.empty()) continue;
      for (int32_t p = 0; p < topology_.num_partitions(); ++p) {
        auto it = delivered.find({store.changelog_topic, p});
        if (it != delivered.end()) {
          inflight_.batch.SetOffset(store.changelog_stream, PartitionId(p), Offset(it->second));
        }
      }
    }
    // Readers asking for an exact position redo reads that overlap this bracket.
    positions_.BeginCommit();
    bracketed = true;
  }
  if (options_.hub != nullptr) {
    std::vector<CommittedPosition> positions;
    positions.reserve(inflight_.touched.size());
    for (const auto& [index, p] : inflight_.touched) {
      positions.push_back(CommittedPosition{topology_.stores()[index].handle, PartitionId(p),
                                            inflight_.next[{index, p}]});
    }
    status =
        options_.hub->FinishCommit(inflight_.batch, positions, std::move(status), options_.lane);
  } else if (status.ok()) {
    status = inflight_.batch.Commit(nullptr);
  }
  if (!status.ok()) {
    // Neither this batch nor the staged one built on it commits (see Run: ingestion stops,
    // and resumes from the offsets committed in RocksDB).
    DiscardPending();
    return status;
  }
  batch_.ReadThrough(nullptr);  // RocksDB now holds what the batch in flight staged
  ++stats_.batches;
  PublishCacheMetrics();
  for (const auto& [sp, staged] : inflight_.materialized) {
    Materialized& m = materialized_[sp];
    if (m.counter == nullptr) {
      m.counter =
          &options_.metrics->Materialized(topology_.stores()[sp.first].info.name, sp.second);
    }
    m.counter->Increment(static_cast<double>(staged));
  }
  // Kafka's committed offset of (topic, p) is the smallest next offset of its stores, so lag
  // tools never count a record as done before every store applied it.
  absl::flat_hash_map<std::pair<int, int32_t>, int64_t> commit_at;  // (source, p) → offset
  for (const auto& [index, p] : inflight_.touched) {
    const CompiledStore& store = topology_.stores()[index];
    const int64_t next = inflight_.next[{index, p}];
    positions_.Advance(store.info.name, topology_.sources()[store.source].spec.topic(),
                       PartitionId(p), Offset(next));
    auto [it, inserted] = commit_at.try_emplace({store.source, p}, next);
    if (!inserted) it->second = std::min(it->second, next);
  }
  std::move(end_commit).Invoke();
  inflight_.active = false;
  inflight_.touched.clear();
  inflight_.next.clear();
  inflight_.materialized.clear();
  std::vector<RdKafka::TopicPartition*> commit;
  for (const auto& [sp, next] : commit_at) {
    commit.push_back(RdKafka::TopicPartition::create(topology_.sources()[sp.first].spec.topic(),
                                                     sp.second, next));
  }
  // Best effort: lag tools read these; a failed async commit is repaired by the next one. They
  // go to a group of their own, `<app>-offsets`, with no members: a commit through the member
  // consumer can land in a rebalance, and librdkafka takes the ILLEGAL_GENERATION that
  // answers it for a lost assignment (every partition revoked, the sticky assignment lost).
  offsets_->commitAsync(commit);
  RdKafka::TopicPartition::destroy(commit);
  return absl::OkStatus();
}

void Ingestor::DiscardPending() {
  batch_.ReadThrough(nullptr);
  batch_.Clear();
  touched_.clear();
  inflight_.batch.Clear();
  inflight_.active = false;
  inflight_.touched.clear();
  inflight_.next.clear();
  inflight_.materialized.clear();
  for (auto& [sp, m] : materialized_) m.staged = 0;
  // The discarded batch may have been begun untracked: registrations must not wait for it.
  if (options_.hub != nullptr) {
    options_.hub->CommitAndPublish(batch_, {}, {}, options_.lane).IgnoreError();
  }
}

absl::Status Ingestor::Dispatch() {
  if (absl::Status s = FinishInFlight(); !s.ok()) return s;
  if (batch_.empty()) return absl::OkStatus();
  return StartInFlight();
}

absl::Status Ingestor::Flush() {
  if (absl::Status s = FinishInFlight(); !s.ok()) return s;
  if (batch_.empty()) {
    // A batch that staged nothing (stray records) leaves no change to wait for.
    if (options_.hub != nullptr) {
      return options_.hub->CommitAndPublish(batch_, {}, {}, options_.lane);
    }
    return absl::OkStatus();
  }
  if (absl::Status s = StartInFlight(); !s.ok()) return s;
  return FinishInFlight();
}

absl::flat_hash_set<std::pair<int, int32_t>> Ingestor::RestorePartitions(
    const std::vector<int32_t>& partitions) {
  std::vector<RestoreTask> tasks;
  std::vector<int> task_store;
  for (int32_t p : partitions) {
    for (size_t index = 0; index < topology_.stores().size(); ++index) {
      const CompiledStore& store = topology_.stores()[index];
      if (store.changelog_topic.empty()) continue;
      tasks.push_back({&store, topology_.sources()[store.source].spec.topic(), PartitionId(p)});
      task_store.push_back(static_cast<int>(index));
    }
  }
  absl::flat_hash_set<std::pair<int, int32_t>> failed;
  if (tasks.empty()) return failed;
  const std::vector<RestoreOutcome> outcomes = restorer_->RestoreAll(tasks, engine_, options_.hub);
  // Per store: the entries restored and how long until its last partition was done (they are
  // restored together, so per-partition durations would add up the same wall time).
  absl::flat_hash_map<int, std::pair<int64_t, absl::Duration>> per_store;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const RestoreTask& task = tasks[i];
    const RestoreOutcome& outcome = outcomes[i];
    if (!outcome.applied.ok()) {
      const std::string reason = absl::StrCat("restore of store ", task.store->info.name,
                                              " failed: ", outcome.applied.status().ToString());
      spdlog::error("partition {}: {}", task.partition.value(), reason);
      states_.Set(task.partition, PartitionState::kFailed, reason);
      failed.insert({task_store[i], task.partition.value()});
      continue;
    }
    stats_.restored_records += *outcome.applied;
    if (*outcome.applied == 0) continue;
    auto& [records, took] = per_store[task_store[i]];
    records += *outcome.applied;
    took = std::max(took, outcome.took);
  }
  if (options_.metrics != nullptr) {
    for (const auto& [index, restored] : per_store) {
      options_.metrics->Restored(topology_.stores()[index].info.name, restored.first,
                                 restored.second);
    }
  }
  return failed;
}

bool Ingestor::PreparePartition(int store_index, PartitionId p) {
  const CompiledStore& store = topology_.stores()[store_index];
  absl::StatusOr<std::optional<Offset>> stored = engine_.ReadOffset(store.source_stream, p);
  if (!stored.ok()) {
    states_.Set(p, PartitionState::kFailed, stored.status().ToString());
    spdlog::error("partition {}: {}", p.value(), stored.status().ToString());
    return false;
  }
  next_[{store_index, p.value()}] = stored->value_or(Offset(0)).value();
  if (topology_.sources()[store.source].repartition) {
    for (int32_t up = 0; up < topology_.num_partitions(); ++up) {
      absl::StatusOr<std::optional<Offset>> mark = engine_.ReadOffset(store.UpstreamStream(up), p);
      if (!mark.ok()) {
        states_.Set(p, PartitionState::kFailed, mark.status().ToString());
        return false;
      }
      if (*mark) upstream_next_[{store_index, p.value(), up}] = (*mark)->value();
    }
  }
  return true;
}

std::optional<int64_t> Ingestor::StartOffset(const CompiledSource& source, PartitionId p) {
  const std::string& topic = source.spec.topic();
  int64_t low = 0;
  int64_t high = 0;
  RdKafka::ErrorCode code =
      consumer_->query_watermark_offsets(topic, p.value(), &low, &high, kKafkaTimeoutMs);
  if (code != RdKafka::ERR_NO_ERROR) {
    spdlog::warn("topic {} partition {}: could not check stored offsets against the log: {}", topic,
                 p.value(), RdKafka::err2str(code));
  }
  std::optional<int64_t> start;
  std::vector<std::pair<int, int64_t>> behind;
  for (int index : source.stores) {
    int64_t next = next_[{index, p.value()}];
    // A store that never processed anything starts at the beginning of the log.
    const bool fresh = next == 0;
    if (code == RdKafka::ERR_NO_ERROR && !fresh && (next < low || next > high)) {
      HandleOutOfRange(topic, p,
                       absl::StrCat("stored offset ", next, " of store ",
                                    topology_.stores()[index].info.name, " is outside the log [",
                                    low, ", ", high, "] (topic recreated or retention passed)"));
      if (options_.out_of_range == OutOfRangePolicy::kFail) return std::nullopt;
      next = next_[{index, p.value()}];
    }
    if (fresh && code == RdKafka::ERR_NO_ERROR) next = std::max(next, low);
    start = start ? std::min(*start, next) : next;
    const CompiledStore& store = topology_.stores()[index];
    positions_.Advance(store.info.name, topic, p, Offset(next_[{index, p.value()}]));
    if (options_.hub != nullptr) {
      options_.hub->PartitionAssigned(store.handle, p, next_[{index, p.value()}]);
    }
    if (code == RdKafka::ERR_NO_ERROR && next_[{index, p.value()}] < high) {
      behind.emplace_back(index, high);
    }
  }
  auto& waiting = catching_up_[p.value()];
  waiting.insert(waiting.end(), behind.begin(), behind.end());
  return start.value_or(RdKafka::Topic::OFFSET_BEGINNING);
}

void Ingestor::HandleOutOfRange(const std::string& topic, PartitionId p,
                                const std::string& detail) {
  const CompiledSource* source = topology_.FindSource(topic);
  if (source == nullptr) return;
  if (options_.out_of_range == OutOfRangePolicy::kFail) {
    const std::string reason =
        absl::StrCat("topic ", topic, " partition ", p.value(), ": ", detail,
                     "; not consuming it so that two histories are never mixed. Restart with "
                     "--offset-out-of-range=reset to rebuild it from the log");
    spdlog::error("{}", reason);
    states_.Set(p, PartitionState::kFailed, reason);
    // Its changes stop here: a subscription must end rather than silently miss them.
    if (options_.hub != nullptr) options_.hub->EndAll(absl::UnavailableError(reason));
    catching_up_.erase(p.value());
    SetPaused(*consumer_, {topic}, p.value(), /*paused=*/true);
    NotifyOwnershipChange();
    return;
  }
  spdlog::warn(
      "topic {} partition {}: {}; --offset-out-of-range=reset: dropping its state and "
      "rebuilding from the start of the log",
      topic, p.value(), detail);
  // Pending records of this partition must not be committed on top of the dropped state.
  if (absl::Status s = Flush(); !s.ok()) spdlog::error("{}", s.ToString());
  if (options_.hub != nullptr) {
    options_.hub->EndAll(absl::AbortedError(
        absl::StrCat("topic ", topic, " partition ", p.value(),
                     ": state dropped and rebuilt from the log (", detail, "); subscribe again")));
  }
  for (int index : source->stores) {
    const CompiledStore& store = topology_.stores()[index];
    if (absl::Status s = engine_.DropPartition(store.handle, p); !s.ok()) {
      spdlog::error("{}", s.ToString());
    }
    if (absl::Status s = engine_.ClearOffset(store.source_stream, p); !s.ok()) {
      spdlog::error("{}", s.ToString());
    }
    // The changelog holds the old history too: never restore from what it has now.
    if (!store.changelog_topic.empty()) {
      if (absl::StatusOr<std::pair<int64_t, int64_t>> marks =
              restorer_->Watermarks(store.changelog_topic, p);
          marks.ok()) {
        StoreEngine::Batch batch = engine_.NewBatch();
        batch.SetOffset(store.changelog_stream, p, Offset(marks->second));
        if (absl::Status s = engine_.Apply(batch); !s.ok()) spdlog::error("{}", s.ToString());
      }
    }
    for (int32_t up = 0; source->repartition && up < topology_.num_partitions(); ++up) {
      upstream_next_.erase({index, p.value(), up});
      if (absl::Status s = engine_.ClearOffset(store.UpstreamStream(up), p); !s.ok()) {
        spdlog::error("{}", s.ToString());
      }
    }
    next_[{index, p.value()}] = 0;
    positions_.Advance(store.info.name, topic, p, Offset(0));
    if (options_.hub != nullptr) options_.hub->PartitionAssigned(store.handle, p, 0);
  }
  // Dropped behind the cache's back.
  InvalidateCache([p](int32_t q) { return q == p.value(); });
}

int32_t Ingestor::ReadGeneration() {
  // librdkafka 2.0 has no getter for the group generation; its serialized group metadata
  // (meant for client bindings) starts with the magic "CGMDv2:" and the int32 generation id.
  rd_kafka_consumer_group_metadata_t* cgmd = rd_kafka_consumer_group_metadata(consumer_->c_ptr());
  if (cgmd == nullptr) return generation_.load();
  void* buffer = nullptr;
  size_t size = 0;
  int32_t generation = generation_.load() + 1;
  if (rd_kafka_error_t* error = rd_kafka_consumer_group_metadata_write(cgmd, &buffer, &size)) {
    rd_kafka_error_destroy(error);
  } else {
    constexpr char kMagic[] = "CGMDv2:";
    constexpr size_t kMagicLen = sizeof(kMagic) - 1;
    if (size >= kMagicLen + 4 && std::memcmp(buffer, kMagic, kMagicLen) == 0) {
      std::memcpy(&generation, static_cast<const char*>(buffer) + kMagicLen, 4);
    }
    rd_kafka_mem_free(nullptr, buffer);
  }
  rd_kafka_consumer_group_metadata_destroy(cgmd);
  return generation;
}

void Ingestor::OnAssign(std::vector<RdKafka::TopicPartition*>& partitions) {
  if (absl::Status s = Flush(); !s.ok()) {
    // As on revoke: the discarded records are behind the consumer; Run stops on it.
    spdlog::error("flush on assign: {}", s.ToString());
    if (rebalance_failure_.ok()) rebalance_failure_ = WithContext(s, "flush on assign");
  }
  generation_.store(ReadGeneration());
  // Cooperative: `partitions` are the lead topic's partitions added to this member. Task =
  // partition number: each brings partition p of every source topic.
  absl::btree_set<int32_t> gained;
  for (RdKafka::TopicPartition* tp : partitions) gained.insert(tp->partition());
  // Partitions kept readable through a lost assignment and given back: their state here is
  // committed and current, so they go on from where they are (readable throughout); those that
  // went elsewhere meanwhile are forgotten.
  absl::btree_set<int32_t> resumed;
  if (assignment_lost_.load()) {
    absl::flat_hash_set<int32_t> gone;
    for (const auto& [p, state] : states_.Snapshot()) {
      if (!gained.contains(p.value())) {
        gone.insert(p.value());
      } else if (state == PartitionState::kActive) {
        resumed.insert(p.value());
      }
    }
    DropPartitions(gone);
    // Not resumed (restoring or failed when lost): prepared again like any gained partition.
    absl::flat_hash_set<int32_t> again;
    for (const auto& [p, state] : states_.Snapshot()) {
      if (!resumed.contains(p.value())) again.insert(p.value());
    }
    DropPartitions(again);
    assignment_lost_.store(false);
  }
  absl::btree_set<int32_t> owned = gained;
  for (const auto& [p, state] : states_.Snapshot()) owned.insert(p.value());
  // Warm: its state here is current up to a batch (a standby replica, or owned until a
  // revoke), so only the tail is restored.
  absl::flat_hash_set<int32_t> warm(revoked_.begin(), revoked_.end());
  if (options_.standby != nullptr) {
    for (const StandbyPartitions::Replica& r : options_.standby->partitions().Snapshot()) {
      warm.insert(r.partition.value());
    }
  }
  const absl::Time assigned_at = absl::Now();
  for (int32_t p : gained) {
    if (!resumed.contains(p)) handover_[p] = {assigned_at, warm.contains(p)};
  }
  // A standby replica of a gained partition stops first (its state stays, committed up to a
  // batch, and is restored from there): a partition is never both a replica and owned.
  if (options_.standby != nullptr) {
    options_.standby->SetOwned(std::vector<int32_t>(owned.begin(), owned.end()), /*wait=*/true,
                               options_.lane);
  }
  // Advertise the gained partitions as RESTORING before rebuilding them.
  for (int32_t p : gained) {
    if (!resumed.contains(p)) states_.Set(PartitionId(p), PartitionState::kRestoring);
  }
  NotifyOwnershipChange();

  // next_ and upstream_next_ of the resumed ones are current; the others are restored
  // together (one assignment of all their changelog partitions), then loaded.
  std::vector<int32_t> prepare;
  for (int32_t p : gained) {
    if (!resumed.contains(p)) prepare.push_back(p);
  }
  const absl::flat_hash_set<std::pair<int, int32_t>> not_restored = RestorePartitions(prepare);
  // Restored, or written by a standby replica or another owner since this node last had them.
  // Resumed ones too: nothing of them may outlive a lost assignment.
  InvalidateCache([&gained](int32_t p) { return gained.contains(p); });
  absl::btree_set<int32_t> failed;
  for (int32_t p : prepare) {
    for (size_t index = 0; index < topology_.stores().size(); ++index) {
      if (not_restored.contains({static_cast<int>(index), p}) ||
          !PreparePartition(static_cast<int>(index), PartitionId(p))) {
        failed.insert(p);
      }
    }
  }
  std::vector<std::string> names;
  std::vector<RdKafka::TopicPartition*> assign;
  for (int32_t p : gained) {
    if (failed.contains(p)) continue;
    for (const CompiledSource& source : topology_.sources()) {
      std::optional<int64_t> start = StartOffset(source, PartitionId(p));
      names.push_back(absl::StrCat(source.spec.topic(), "/", p, "@",
                                   start ? absl::StrCat(*start) : std::string("FAILED")));
      if (!start) {
        failed.insert(p);
        continue;
      }
      assign.push_back(RdKafka::TopicPartition::create(source.spec.topic(), p, *start));
    }
  }
  // Called even with nothing to add: librdkafka waits for the call before it goes on (the
  // rejoin that hands over what another member revoked comes after it).
  if (RdKafka::Error* error = consumer_->incremental_assign(assign); error != nullptr) {
    spdlog::error("assign partitions: {}", error->str());
    delete error;
  }
  RdKafka::TopicPartition::destroy(assign);
  for (int32_t p : failed) catching_up_.erase(p);
  PauseJoinsBehindTables();
  spdlog::info("generation {}: assigned {}", generation_.load(),
               names.empty() ? std::string("nothing new") : absl::StrJoin(names, " "));
  CheckCaughtUp();
  if (options_.metrics != nullptr) options_.metrics->Rebalance("assign");
  joined_.store(true);
  NotifyOwnershipChange();
}

std::optional<int64_t> Ingestor::CachedHighWatermark(const std::string& topic,
                                                     PartitionId p) const {
  int64_t low = 0;
  int64_t high = 0;
  if (consumer_->get_watermark_offsets(topic, p.value(), &low, &high) != RdKafka::ERR_NO_ERROR ||
      high < 0) {
    return std::nullopt;
  }
  return high;
}

int64_t Ingestor::CommittedNext(int store_index, int32_t p) const {
  const CompiledStore& store = topology_.stores()[store_index];
  std::optional<Offset> committed = positions_.Get(
      store.info.name, topology_.sources()[store.source].spec.topic(), PartitionId(p));
  return committed ? committed->value() : 0;
}

void Ingestor::CheckCaughtUp() {
  bool changed = false;
  if (absl::Now() >= next_progress_log_) {
    next_progress_log_ = absl::Now() + absl::Seconds(5);
    for (const auto& [p, waiting] : catching_up_) {
      for (const auto& [index, high] : waiting) {
        spdlog::info("partition {} RESTORING: store {} at offset {} of {}", p,
                     topology_.stores()[index].info.name, CommittedNext(index, p), high);
      }
    }
  }
  // ACTIVE means committed: a partition is caught up when the state committed in RocksDB (the
  // positions, advanced after each commit) has reached the high watermark seen at assignment,
  // not when the records are merely staged — answers and positions always reflect RocksDB.
  for (auto it = catching_up_.begin(); it != catching_up_.end();) {
    const int32_t p = it->first;
    auto& waiting = it->second;
    waiting.erase(std::remove_if(waiting.begin(), waiting.end(),
                                 [&](const std::pair<int, int64_t>& w) {
                                   return CommittedNext(w.first, p) >= w.second;
                                 }),
                  waiting.end());
    if (waiting.empty()) {
      if (states_.StateOf(PartitionId(p)) == PartitionState::kRestoring) {
        states_.Set(PartitionId(p), PartitionState::kActive);
        if (options_.hub != nullptr) options_.hub->PartitionActive(PartitionId(p));
        spdlog::info("partition {} caught up: ACTIVE", p);
        NoteHandover(p);
        changed = true;
      }
      catching_up_.erase(it++);
    } else {
      ++it;
    }
  }
  ResumeJoins(/*all=*/false);
  // Partitions that were never behind become ACTIVE at assignment.
  for (const auto& [p, state] : states_.Snapshot()) {
    if (state == PartitionState::kRestoring && !catching_up_.contains(p.value())) {
      states_.Set(p, PartitionState::kActive);
      if (options_.hub != nullptr) options_.hub->PartitionActive(p);
      NoteHandover(p.value());
      changed = true;
    }
  }
  if (changed) NotifyOwnershipChange();
}

void Ingestor::PauseJoinsBehindTables() {
  for (const auto& [p, waiting] : catching_up_) {
    absl::flat_hash_set<int> tables_behind;
    for (const auto& [index, high] : waiting) tables_behind.insert(index);
    std::vector<std::string> topics;
    for (const CompiledStore& store : topology_.stores()) {
      if (store.join_table < 0 || !tables_behind.contains(store.join_table)) continue;
      const std::string& topic = topology_.sources()[store.source].spec.topic();
      const std::string& table_topic =
          topology_.sources()[topology_.stores()[store.join_table].source].spec.topic();
      if (topic == table_topic || std::find(topics.begin(), topics.end(), topic) != topics.end()) {
        continue;
      }
      topics.push_back(topic);
    }
    if (topics.empty()) continue;
    SetPaused(*consumer_, topics, p, /*paused=*/true);
    spdlog::info("partition {}: {} paused until the tables it joins have caught up", p,
                 absl::StrJoin(topics, ", "));
    paused_for_join_[p] = std::move(topics);
  }
}

void Ingestor::ResumeJoins(bool all) {
  for (auto it = paused_for_join_.begin(); it != paused_for_join_.end();) {
    bool tables_done = true;
    if (auto waiting = catching_up_.find(it->first); !all && waiting != catching_up_.end()) {
      for (const auto& [index, high] : waiting->second) {
        for (const CompiledStore& store : topology_.stores()) {
          if (store.join_table == index) tables_done = false;
        }
      }
    }
    if (!tables_done) {
      ++it;
      continue;
    }
    SetPaused(*consumer_, it->second, it->first, /*paused=*/false);
    if (!all) spdlog::info("partition {}: tables caught up; joins resumed", it->first);
    paused_for_join_.erase(it++);
  }
}

void Ingestor::OnRevoke(const std::vector<RdKafka::TopicPartition*>& partitions) {
  // Cooperative: only `partitions` (of the lead topic) leave; the others keep being consumed
  // and served. What was processed so far is committed before they can move: the next owner
  // (or this node, later) resumes exactly after it.
  std::vector<int32_t> revoked;
  for (RdKafka::TopicPartition* tp : partitions) revoked.push_back(tp->partition());
  std::sort(revoked.begin(), revoked.end());
  revoked.erase(std::unique(revoked.begin(), revoked.end()), revoked.end());
  // Partition p of every source topic goes with the lead topic's.
  std::vector<RdKafka::TopicPartition*> unassign;
  for (int32_t p : revoked) {
    for (const CompiledSource& source : topology_.sources()) {
      unassign.push_back(RdKafka::TopicPartition::create(source.spec.topic(), p));
    }
  }
  absl::Cleanup destroy = [&unassign] { RdKafka::TopicPartition::destroy(unassign); };
  auto incremental_unassign = [&] {
    if (RdKafka::Error* error = consumer_->incremental_unassign(unassign); error != nullptr) {
      spdlog::error("unassign partitions: {}", error->str());
      delete error;
    }
  };
  if (failed_) {
    // Ingestion failed (a disk error, a fatal Kafka error): nothing more can be committed, and
    // the partitions stay readable at their committed positions until the process exits (the
    // group moves them after the session timeout).
    joined_.store(false);
    incremental_unassign();
    return;
  }
  // Lost, not revoked: the group session ended without this node taking part in a rebalance
  // (typically: no broker reachable for session.timeout.ms). The partitions stay readable here
  // at their committed positions until the group is joined again — as Kafka Streams keeps
  // serving its local stores — rather than go dark while every node still holds its data.
  const bool lost = consumer_->assignment_lost();
  if (options_.metrics != nullptr) options_.metrics->Rebalance(lost ? "lost" : "revoke");
  if (absl::Status s = Flush(); !s.ok()) {
    // Not committed, and the consumer is past those records: ingestion stops (Run), and a
    // restart consumes them again from the committed offsets. Going on would leave them out
    // of the partitions this node keeps.
    spdlog::error("flush on revoke: {}", s.ToString());
    DiscardPending();
    if (rebalance_failure_.ok()) rebalance_failure_ = WithContext(s, "flush on revoke");
  }
  if (options_.hub != nullptr) {
    // These partitions may move. Every change up to the flush above is queued, with the
    // position it reached: a subscription resumes from there at the next owner (UNAVAILABLE
    // is what the router re-routes on).
    const absl::Status moving = absl::UnavailableError(
        "partitions revoked from this node by a consumer group rebalance; resume at their "
        "next owner");
    // Lost too: `partitions` is then all of this thread's (other ingestion threads keep theirs).
    options_.hub->EndPartitions(revoked, moving);
    options_.hub->PartitionsRevoked(revoked);
  }
  if (lost) {
    joined_.store(false);
    std::vector<std::string> kept;
    for (const auto& [p, state] : states_.Snapshot()) {
      if (state == PartitionState::kActive) kept.push_back(absl::StrCat(p.value()));
    }
    spdlog::warn(
        "consumer group assignment lost (no broker answered within the session timeout?); "
        "partitions {} stay readable at their committed positions until the group is joined "
        "again",
        absl::StrJoin(kept, ","));
    assignment_lost_.store(true);
  } else {
    revoked_ = revoked;
    DropPartitions(absl::flat_hash_set<int32_t>(revoked.begin(), revoked.end()));
    // Revoked partitions may be kept warm here as standby replicas (their state is on disk).
    if (options_.standby != nullptr) {
      std::vector<int32_t> still;
      for (const auto& [p, state] : states_.Snapshot()) still.push_back(p.value());
      options_.standby->SetOwned(std::move(still), /*wait=*/false, options_.lane);
    }
  }
  incremental_unassign();
  spdlog::info("partitions {} revoked{}", absl::StrJoin(revoked, ","), lost ? " (lost)" : "");
  NotifyOwnershipChange();
}

void Ingestor::DropPartitions(const absl::flat_hash_set<int32_t>& gone) {
  if (gone.empty()) return;
  ForgetPartitions([&gone](PartitionId p) { return gone.contains(p.value()); });
  absl::erase_if(next_, [&gone](const auto& e) { return gone.contains(e.first.second); });
  absl::erase_if(upstream_next_,
                 [&gone](const auto& e) { return gone.contains(std::get<1>(e.first)); });
  for (int32_t p : gone) {
    catching_up_.erase(p);
    handover_.erase(p);
    paused_for_join_.erase(p);
    for (auto it = registry_waits_.begin(); it != registry_waits_.end();) {
      it = it->first.second == p ? registry_waits_.erase(it) : std::next(it);
    }
  }
}

void Ingestor::ForgetPartitions(const std::function<bool(PartitionId)>& which) {
  // A revoked partition may be written by its next owner's standby here, or restored later.
  InvalidateCache([&which](int32_t p) { return which(PartitionId(p)); });
  for (const auto& [p, state] : states_.Snapshot()) {
    if (!which(p)) continue;
    // Unreadable first: a reader never sees it readable without a position.
    states_.Remove(p);
    for (const CompiledStore& store : topology_.stores()) {
      positions_.Forget(store.info.name, topology_.sources()[store.source].spec.topic(), p);
    }
  }
}

void Ingestor::InvalidateCache(const std::function<bool(int32_t)>& which) {
  if (cache_ == nullptr) return;
  cache_->Invalidate(which);
  PublishCacheMetrics();
}

void Ingestor::PublishCacheMetrics() {
  if (cache_ == nullptr || options_.metrics == nullptr) return;
  options_.metrics->IngestCache(options_.lane, cache_->hits() - cache_hits_published_,
                                cache_->misses() - cache_misses_published_, cache_->bytes());
  cache_hits_published_ = cache_->hits();
  cache_misses_published_ = cache_->misses();
}

void Ingestor::NoteHandover(int32_t p) {
  auto it = handover_.find(p);
  if (it == handover_.end()) return;
  const absl::Duration took = absl::Now() - it->second.first;
  spdlog::info("partition {}: handover done in {} ({})", p, absl::FormatDuration(took),
               it->second.second ? "warm: a standby replica was here" : "cold");
  if (options_.metrics != nullptr) options_.metrics->Handover(it->second.second, took);
  handover_.erase(it);
}

void Ingestor::NotifyOwnershipChange() {
  if (options_.metrics != nullptr) {
    options_.metrics->SetThreadPartitions(options_.lane,
                                          static_cast<int64_t>(states_.Snapshot().size()));
  }
  if (options_.on_ownership_change) options_.on_ownership_change();
}

}  // namespace kiq::node
