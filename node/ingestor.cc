#include "node/ingestor.h"

#include "router/logging.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "node/kafka_errors.h"
#include "router/grpc_status.h"

namespace kiq::node {
namespace {

constexpr int kKafkaTimeoutMs = 10000;

absl::Status SetAll(RdKafka::Conf& conf,
                    const std::vector<std::pair<std::string, std::string>>& properties) {
  std::string err;
  for (const auto& [name, value] : properties) {
    if (conf.set(name, value, err) != RdKafka::Conf::CONF_OK) {
      return absl::InvalidArgumentError(absl::StrCat("kafka property ", name, "=", value, ": ", err));
    }
  }
  return absl::OkStatus();
}

absl::Status ToStatus(RdKafka::ErrorCode err, const std::string& doing) {
  return KafkaToStatus(static_cast<rd_kafka_resp_err_t>(err), doing);
}

}  // namespace

absl::StatusOr<absl::flat_hash_map<std::string, int32_t>> FetchPartitionCounts(
    const std::string& bootstrap_servers, const std::vector<std::string>& topics,
    absl::Duration timeout) {
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  if (absl::Status s = SetAll(*conf, {{"bootstrap.servers", bootstrap_servers},
                                       {"client.id", "kiq-metadata"}});
      !s.ok()) {
    return s;
  }
  std::string err;
  std::unique_ptr<RdKafka::Producer> client(RdKafka::Producer::create(conf.get(), err));
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
      last = absl::FailedPreconditionError(
          absl::StrCat("source topics do not exist: ", absl::StrJoin(missing, ", ")));
    } else {
      last = ToStatus(code, absl::StrCat("fetch metadata from ", bootstrap_servers));
    }
    if (absl::Now() >= deadline) return last;
    absl::SleepFor(absl::Milliseconds(500));  // a retry interval, not a wait for a condition
  }
}

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
      ingestor_.OnRevoke();
    }
  }

 private:
  Ingestor& ingestor_;
};

absl::StatusOr<std::unique_ptr<Ingestor>> Ingestor::Create(CompiledTopology& topology,
                                                           StoreEngine& engine,
                                                           PartitionStates& states,
                                                           PositionTracker& positions,
                                                           IngestorOptions options) {
  std::unique_ptr<Ingestor> ingestor(
      new Ingestor(topology, engine, states, positions, std::move(options)));
  const IngestorOptions& o = ingestor->options_;
  std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
  std::vector<std::pair<std::string, std::string>> properties = {
      {"bootstrap.servers", o.bootstrap_servers},
      {"group.id", topology.application_id()},
      {"client.id", o.node_id},
      // Static membership (KIP-345): a node that restarts within the session timeout keeps its
      // partitions, and its old incarnation is replaced at once instead of timing out.
      {"group.instance.id", o.node_id},
      // Offsets live in RocksDB; Kafka commits are made by hand after each local commit.
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      // Every assigned partition gets an explicit start offset; if the log moves under us
      // (retention, recreated topic) we want an error event, never a silent reset.
      {"auto.offset.reset", "error"},
      // With co-partitioned sources, the range assignor gives partition p of every topic to
      // the same member: that is what makes "task = partition number" hold.
      {"partition.assignment.strategy", "range"},
      // The default (100k) starves the consumer at ~270k msgs/s; 1M reads ~2.5M msgs/s.
      {"queued.min.messages", "1000000"},
      {"enable.partition.eof", "false"},
  };
  properties.insert(properties.end(), o.consumer_properties.begin(), o.consumer_properties.end());
  if (absl::Status s = SetAll(*conf, properties); !s.ok()) return s;
  std::string err;
  if (conf->set("rebalance_cb", ingestor->rebalance_.get(), err) != RdKafka::Conf::CONF_OK) {
    return absl::InternalError(absl::StrCat("rebalance_cb: ", err));
  }
  ingestor->consumer_.reset(RdKafka::KafkaConsumer::create(conf.get(), err));
  if (!ingestor->consumer_) return absl::InternalError(absl::StrCat("create consumer: ", err));

  std::vector<std::string> topics;
  for (const CompiledSource& source : topology.sources()) topics.push_back(source.spec.topic());
  if (RdKafka::ErrorCode code = ingestor->consumer_->subscribe(topics); code != RdKafka::ERR_NO_ERROR) {
    return ToStatus(code, absl::StrCat("subscribe to ", absl::StrJoin(topics, ",")));
  }
  absl::StatusOr<std::unique_ptr<DeadLetterQueue>> dlq = DeadLetterQueue::Create(
      o.bootstrap_servers, absl::StrCat(topology.application_id(), "-dlq"), o.node_id);
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
      batch_(engine) {}

Ingestor::~Ingestor() { Stop(); }

void Ingestor::Start() {
  thread_ = std::thread([this] { Run(); });
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
    std::unique_ptr<RdKafka::Message> message(consumer_->consume(
        static_cast<int>(absl::ToInt64Milliseconds(options_.max_batch_delay))));
    if (message->err() == RdKafka::ERR_NO_ERROR) {
      status = HandleMessage(*message);
    } else if (message->err() == RdKafka::ERR__AUTO_OFFSET_RESET ||
               message->err() == RdKafka::ERR_OFFSET_OUT_OF_RANGE) {
      HandleOutOfRange(message->topic_name(), PartitionId(message->partition()),
                       message->errstr());
    } else if (message->err() != RdKafka::ERR__TIMED_OUT) {
      const auto code = static_cast<rd_kafka_resp_err_t>(message->err());
      absl::Status error = KafkaToStatus(code, "consume");
      if (ClassifyKafkaError(code) == KafkaErrorAction::kFatal) {
        status = error;
      } else if (int64_t suppressed = 0; consume_errors.Allow(&suppressed)) {
        spdlog::warn("{} (will retry; {} similar suppressed)", error.message(), suppressed);
      }
    }
    if (status.ok() && !batch_.empty() &&
        (batch_.records() >= options_.max_batch_records ||
         absl::Now() - batch_started_ >= options_.max_batch_delay)) {
      status = Flush();
    }
    dlq_->Poll();
  }
  if (status.ok()) status = Flush();
  if (!status.ok()) spdlog::error("ingestion stopped: {}", status.ToString());
  // close() serves the final revoke and leaves the group.
  consumer_->close();
  dlq_->Flush(5000);
  {
    absl::MutexLock lock(&mu_);
    final_status_ = status;
  }
  done_.Notify();
}

absl::Status Ingestor::HandleMessage(const RdKafka::Message& message) {
  const CompiledSource* source = topology_.FindSource(message.topic_name());
  if (source == nullptr) return absl::OkStatus();  // not subscribed any more
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

  if (record.key) {
    std::optional<PartitionId> expected = topology_.ExpectedPartition(*source, *record.key);
    if (expected && *expected != record.partition) {
      const int64_t n = ++stats_.wrong_partition;
      if (int64_t suppressed = 0; wrong_partition_log_.Allow(&suppressed)) {
        spdlog::warn(
            "topic {}: record at partition {} offset {} has a key that the {} partitioner maps "
            "to partition {} ({} such records so far). Get() will not find it. Fix the "
            "producers (Kafka's Java default; librdkafka/kcat: -X partitioner=murmur2_random) "
            "or set `partitioner: consistent` on this source in the topology.",
            record.topic, record.partition.value(), record.offset.value(),
            source->partitioner == router::PartitionerKind::kMurmur2 ? "murmur2" : "consistent",
            expected->value(), n);
      }
    }
  }

  if (batch_.empty()) batch_started_ = absl::Now();
  bad_.clear();
  if (absl::Status s = topology_.Process(record, *source, batch_, &bad_); !s.ok()) return s;
  for (const BadRecord& bad : bad_) {
    ++stats_.bad_records;
    dlq_->Send(record, bad.store, bad.reason);
    if (int64_t suppressed = 0; bad_record_log_.Allow(&suppressed)) {
      spdlog::warn("bad record skipped: store={} topic={} partition={} offset={} reason=\"{}\" "
                   "(sent to {}; {} similar suppressed)",
                   bad.store, record.topic, record.partition.value(), record.offset.value(),
                   bad.reason, dlq_->topic(), suppressed);
    }
  }
  batch_.SetOffset(record.topic, record.partition, Offset(record.offset.value() + 1));
  batch_.CountRecord();
  ++stats_.records;
  return absl::OkStatus();
}

absl::Status Ingestor::Flush() {
  if (batch_.empty()) return absl::OkStatus();
  // Copy the offsets: Commit clears the batch.
  std::vector<std::pair<std::pair<std::string, int32_t>, Offset>> offsets(
      batch_.offsets().begin(), batch_.offsets().end());
  if (absl::Status s = batch_.Commit(nullptr); !s.ok()) return s;
  ++stats_.batches;
  std::vector<RdKafka::TopicPartition*> commit;
  for (const auto& [tp, next] : offsets) {
    positions_.Advance(tp.first, PartitionId(tp.second), next);
    commit.push_back(RdKafka::TopicPartition::create(tp.first, tp.second, next.value()));
  }
  // Best effort: lag tools read these; a failed async commit is repaired by the next one.
  consumer_->commitAsync(commit);
  RdKafka::TopicPartition::destroy(commit);
  return absl::OkStatus();
}

std::optional<int64_t> Ingestor::StartOffset(const CompiledSource& source, PartitionId p) {
  const std::string& topic = source.spec.topic();
  absl::StatusOr<std::optional<Offset>> stored = engine_.ReadOffset(topic, p);
  if (!stored.ok()) {
    states_.Set(p, PartitionState::kFailed, stored.status().ToString());
    spdlog::error("partition {}: {}", p.value(), stored.status().ToString());
    return std::nullopt;
  }
  if (!stored->has_value()) {
    positions_.Advance(topic, p, Offset(0));
    return RdKafka::Topic::OFFSET_BEGINNING;
  }
  const int64_t next = (*stored)->value();
  int64_t low = 0;
  int64_t high = 0;
  RdKafka::ErrorCode code =
      consumer_->query_watermark_offsets(topic, p.value(), &low, &high, kKafkaTimeoutMs);
  if (code == RdKafka::ERR_NO_ERROR && (next < low || next > high)) {
    HandleOutOfRange(topic, p,
                     absl::StrCat("stored offset ", next, " is outside the log [", low, ", ", high,
                                  "] (topic recreated or retention passed)"));
    if (options_.out_of_range == OutOfRangePolicy::kFail) return std::nullopt;
    return RdKafka::Topic::OFFSET_BEGINNING;
  }
  if (code != RdKafka::ERR_NO_ERROR) {
    spdlog::warn("topic {} partition {}: could not check stored offset {} against the log: {}",
                 topic, p.value(), next, RdKafka::err2str(code));
  }
  positions_.Advance(topic, p, Offset(next));
  return next;
}

void Ingestor::HandleOutOfRange(const std::string& topic, PartitionId p,
                                const std::string& detail) {
  const CompiledSource* source = topology_.FindSource(topic);
  if (source == nullptr) return;
  if (options_.out_of_range == OutOfRangePolicy::kFail) {
    const std::string reason = absl::StrCat(
        "topic ", topic, " partition ", p.value(), ": ", detail,
        "; not consuming it so that two histories are never mixed. Restart with "
        "--offset-out-of-range=reset to rebuild it from the log");
    spdlog::error("{}", reason);
    states_.Set(p, PartitionState::kFailed, reason);
    std::vector<RdKafka::TopicPartition*> tps = {RdKafka::TopicPartition::create(topic, p.value())};
    consumer_->pause(tps);
    RdKafka::TopicPartition::destroy(tps);
    return;
  }
  spdlog::warn("topic {} partition {}: {}; --offset-out-of-range=reset: dropping its state and "
               "rebuilding from the start of the log",
               topic, p.value(), detail);
  // Pending records of this partition must not be committed on top of the dropped state.
  if (absl::Status s = Flush(); !s.ok()) spdlog::error("{}", s.ToString());
  for (int index : source->stores) {
    if (absl::Status s = engine_.DropPartition(topology_.stores()[index].handle, p); !s.ok()) {
      spdlog::error("{}", s.ToString());
    }
  }
  if (absl::Status s = engine_.ClearOffset(topic, p); !s.ok()) spdlog::error("{}", s.ToString());
  positions_.Advance(topic, p, Offset(0));
}

void Ingestor::OnAssign(std::vector<RdKafka::TopicPartition*>& partitions) {
  std::vector<std::string> names;
  absl::flat_hash_map<int32_t, bool> failed;
  std::vector<RdKafka::TopicPartition*> assign;
  for (RdKafka::TopicPartition* tp : partitions) {
    const CompiledSource* source = topology_.FindSource(tp->topic());
    if (source == nullptr) continue;
    const PartitionId p(tp->partition());
    std::optional<int64_t> start = StartOffset(*source, p);
    names.push_back(absl::StrCat(tp->topic(), "/", tp->partition(), "@",
                                 start ? absl::StrCat(*start) : std::string("FAILED")));
    if (!start) {
      failed[p.value()] = true;
      continue;
    }
    failed.try_emplace(p.value(), false);
    tp->set_offset(*start);
    assign.push_back(tp);
  }
  if (RdKafka::ErrorCode code = consumer_->assign(assign); code != RdKafka::ERR_NO_ERROR) {
    spdlog::error("assign partitions: {}", RdKafka::err2str(code));
  }
  for (const auto& [p, is_failed] : failed) {
    if (!is_failed) states_.Set(PartitionId(p), PartitionState::kActive);
  }
  spdlog::info("assigned {} (offsets from RocksDB; BEGINNING = -2)", absl::StrJoin(names, " "));
}

void Ingestor::OnRevoke() {
  // What was processed so far is committed before the partitions can move: the next owner
  // (or this node, later) resumes exactly after it.
  if (absl::Status s = Flush(); !s.ok()) spdlog::error("flush on revoke: {}", s.ToString());
  for (const auto& [p, state] : states_.Snapshot()) {
    for (const CompiledSource& source : topology_.sources()) positions_.Forget(source.spec.topic(), p);
  }
  states_.Clear();
  consumer_->unassign();
  spdlog::info("partitions revoked");
}

}  // namespace kiq::node
