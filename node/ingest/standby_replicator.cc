#include "node/ingest/standby_replicator.h"

#include <algorithm>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "common/kafka/kafka_errors.h"
#include "common/logging.h"
#include "common/thread_name.h"
#include "node/ingest/record_headers.h"

namespace kiq::node {
namespace {

constexpr int kKafkaTimeoutMs = 5000;
constexpr absl::Duration kPlacementInterval = absl::Seconds(1);
constexpr absl::Duration kHandOverLimit = absl::Seconds(30);

}  // namespace

absl::StatusOr<std::unique_ptr<StandbyReplicator>> StandbyReplicator::Create(
    std::unique_ptr<CompiledTopology> topology, StoreEngine& engine, StandbyPartitions& standby,
    StandbyOptions options) {
  std::unique_ptr<StandbyReplicator> replicator(
      new StandbyReplicator(std::move(topology), engine, standby, std::move(options)));
  const StandbyOptions& o = replicator->options_;
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf = o.kafka.Build(
      o.node_id + "-standby",
      {{"group.id", replicator->topology_->application_id() + "-standby"},
       {"enable.auto.commit", "false"},
       {"enable.auto.offset.store", "false"},
       // Explicit start offsets everywhere; a log that moved under a replica is an error
       // event (the replica restarts from what the log has), never a silent skip.
       {"auto.offset.reset", "error"},
       {"enable.partition.eof", "false"},
       // A replica is a background copy: a small fetch queue keeps its memory small.
       {"queued.max.messages.kbytes", "16384"}});
  if (!conf.ok()) return conf.status();
  std::string err;
  replicator->consumer_.reset(RdKafka::KafkaConsumer::create(conf->get(), err));
  if (!replicator->consumer_) {
    return absl::InternalError(absl::StrCat("create standby consumer: ", err));
  }
  return replicator;
}

StandbyReplicator::StandbyReplicator(std::unique_ptr<CompiledTopology> topology,
                                     StoreEngine& engine, StandbyPartitions& standby,
                                     StandbyOptions options)
    : topology_(std::move(topology)),
      engine_(engine),
      standby_(standby),
      options_(std::move(options)),
      batch_(engine) {}

StandbyReplicator::~StandbyReplicator() { Stop(); }

void StandbyReplicator::Start() {
  thread_ = std::thread([this] {
    NameThisThread("kiq-standby");
    Run();
  });
}

void StandbyReplicator::Stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void StandbyReplicator::SetOwned(std::vector<int32_t> owned, bool wait, int lane) {
  absl::MutexLock lock(&mu_);
  lanes_[lane] = absl::btree_set<int32_t>(owned.begin(), owned.end());
  owned_.clear();
  for (const auto& [l, partitions] : lanes_) owned_.insert(partitions.begin(), partitions.end());
  const uint64_t target = ++epoch_;
  if (!wait || !thread_.joinable()) return;
  auto done = [this, target]()
                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return acked_ >= target || stop_.load(); };
  if (!mu_.AwaitWithTimeout(absl::Condition(&done), kHandOverLimit)) {
    spdlog::error("standby replicator did not let go of partitions {} within {}",
                  absl::StrJoin(owned, ","), absl::FormatDuration(kHandOverLimit));
  }
}

void StandbyReplicator::Run() {
  absl::Time next_placement = absl::InfinitePast();
  absl::Time next_lags = absl::InfinitePast();
  uint64_t seen_epoch = 0;
  while (!stop_.load()) {
    uint64_t epoch = 0;
    absl::btree_set<int32_t> owned;
    {
      absl::MutexLock lock(&mu_);
      epoch = epoch_;
      owned = owned_;
    }
    const bool ask = absl::Now() >= next_placement;
    if (ask || epoch != seen_epoch) {
      // A commit first: what is handed over is exactly what was committed.
      if (absl::Status s = Commit(); !s.ok()) {
        spdlog::error("standby replicas stopped: {}", s.ToString());
        break;
      }
      Reconcile(owned, ask);
      if (ask) next_placement = absl::Now() + kPlacementInterval;
      seen_epoch = epoch;
    }
    {
      absl::MutexLock lock(&mu_);
      acked_ = epoch;
    }
    if (replicas_.empty()) {
      absl::SleepFor(absl::Milliseconds(50));
      continue;
    }
    const bool due = !batch_.empty() && absl::Now() - batch_started_ >= options_.max_batch_delay;
    std::unique_ptr<RdKafka::Message> m(consumer_->consume(due ? 0 : 20));
    absl::Status status = absl::OkStatus();
    if (m->err() == RdKafka::ERR_NO_ERROR) {
      status = Apply(*m);
    } else if (m->err() == RdKafka::ERR__AUTO_OFFSET_RESET ||
               m->err() == RdKafka::ERR_OFFSET_OUT_OF_RANGE) {
      // The log moved under the replica (retention, recreated topic): start it again from its
      // checkpoint, as a restore would.
      const int32_t p = m->partition();
      spdlog::warn("standby replica of partition {}: {} ({}); starting it again", p, m->errstr(),
                   m->topic_name());
      StopReplica(p);
      Assign();
    } else if (m->err() != RdKafka::ERR__TIMED_OUT) {
      if (int64_t suppressed = 0; errors_.Allow(&suppressed)) {
        spdlog::warn("standby replicas: {} (will retry; {} similar suppressed)", m->errstr(),
                     suppressed);
      }
    }
    if (status.ok() && !batch_.empty() &&
        (batch_.records() >= options_.max_batch_records ||
         absl::Now() - batch_started_ >= options_.max_batch_delay)) {
      status = Commit();
    }
    if (!status.ok()) {
      spdlog::error("standby replicas stopped: {}", status.ToString());
      break;
    }
    if (absl::Now() >= registry_retry_at_) {
      // Blocked tails read again from the record that waited (what it skipped since, too).
      for (auto& [p, replica] : replicas_) {
        for (Tail& tail : replica.tails) tail.registry_blocked = false;
      }
      registry_retry_at_ = absl::InfiniteFuture();
      Assign();
    }
    if (absl::Now() >= next_lags) {
      UpdateLags();
      next_lags = absl::Now() + absl::Milliseconds(500);
    }
  }
  if (absl::Status s = Commit(); !s.ok()) spdlog::error("standby commit: {}", s.ToString());
  std::vector<int32_t> left;
  for (const auto& [p, replica] : replicas_) left.push_back(p);
  for (int32_t p : left) StopReplica(p);
  {
    absl::MutexLock lock(&mu_);
    acked_ = epoch_;
  }
  consumer_->close();
}

void StandbyReplicator::Reconcile(const absl::btree_set<int32_t>& owned, bool ask_placement) {
  absl::btree_set<int32_t> wanted;
  if (ask_placement) {
    for (int32_t p : options_.placement()) {
      if (!owned.contains(p)) wanted.insert(p);
    }
  } else {
    for (const auto& [p, replica] : replicas_) {
      if (!owned.contains(p)) wanted.insert(p);
    }
  }
  std::vector<int32_t> stop;
  for (const auto& [p, replica] : replicas_) {
    if (!wanted.contains(p)) stop.push_back(p);
  }
  bool changed = !stop.empty();
  for (int32_t p : stop) StopReplica(p);
  for (int32_t p : wanted) {
    if (replicas_.count(p) > 0) continue;
    if (absl::Status s = StartReplica(p); !s.ok()) {
      spdlog::warn("standby replica of partition {} not started: {}", p, s.ToString());
      StopReplica(p);
      continue;
    }
    changed = true;
  }
  if (changed) {
    Assign();
    if (options_.on_change) options_.on_change();
  }
}

absl::Status StandbyReplicator::StartReplica(int32_t p) {
  const PartitionId partition(p);
  Replica replica;
  for (size_t index = 0; index < topology_->stores().size(); ++index) {
    const CompiledStore& store = topology_->stores()[index];
    if (store.internal) continue;  // forwards records; nothing to keep warm
    const bool table = store.changelog_topic.empty();
    Tail tail;
    tail.store_index = static_cast<int>(index);
    tail.topic = table ? topology_->sources()[store.source].spec.topic() : store.changelog_topic;
    absl::StatusOr<std::optional<Offset>> stored =
        engine_.ReadOffset(table ? store.source_stream : store.changelog_stream, partition);
    if (!stored.ok()) return stored.status();
    int64_t low = 0;
    int64_t high = 0;
    if (RdKafka::ErrorCode code =
            consumer_->query_watermark_offsets(tail.topic, p, &low, &high, kKafkaTimeoutMs);
        code != RdKafka::ERR_NO_ERROR) {
      return KafkaToStatus(static_cast<rd_kafka_resp_err_t>(code),
                           absl::StrCat("watermarks of ", tail.topic, " partition=", p));
    }
    tail.next = std::max(stored->value_or(Offset(0)).value(), low);
    tail.caught_up_at = high;
    if (!table) {
      tail.batches.emplace(store, partition, topology_->sources()[store.source].spec.topic());
      tail.batches->set_next_offset(tail.next);
    } else if (topology_->sources()[store.source].repartition) {
      tail.repartition = true;
      for (int32_t up = 0; up < topology_->num_partitions(); ++up) {
        absl::StatusOr<std::optional<Offset>> mark =
            engine_.ReadOffset(store.UpstreamStream(up), partition);
        if (!mark.ok()) return mark.status();
        if (*mark) tail.upstream_next[up] = (*mark)->value();
      }
    }
    replica.tails.push_back(std::move(tail));
  }
  standby_.Add(partition);
  // The replica's position, as committed: what a read of it reflects.
  for (Tail& tail : replica.tails) {
    const CompiledStore& store = topology_->stores()[tail.store_index];
    absl::StatusOr<std::optional<Offset>> source =
        engine_.ReadOffset(store.source_stream, partition);
    if (!source.ok()) return source.status();
    tail.log_from = source->value_or(Offset(0)).value();
    standby_.positions().Advance(store.info.name, topology_->sources()[store.source].spec.topic(),
                                 partition, Offset(tail.log_from));
    standby_.SetLag(partition, store.info.name, tail.caught_up_at - tail.next);
  }
  if (options_.hub != nullptr) {
    // The replica's changes are kept from here on, so that if this node gains the partition,
    // subscriptions that followed it on its owner resume here.
    for (const Tail& tail : replica.tails) {
      options_.hub->ReplicaStarted(topology_->stores()[tail.store_index].handle, partition,
                                   tail.log_from);
    }
  }
  auto [it, inserted] = replicas_.emplace(p, std::move(replica));
  for (Tail& tail : it->second.tails) by_topic_[{tail.topic, p}].push_back(&tail);
  spdlog::info("standby replica of partition {} started ({} stores)", p, it->second.tails.size());
  return absl::OkStatus();
}

void StandbyReplicator::StopReplica(int32_t p) {
  auto it = replicas_.find(p);
  const PartitionId partition(p);
  // Unreadable first, then its positions go.
  standby_.Remove(partition);
  if (it == replicas_.end()) return;
  for (Tail& tail : it->second.tails) {
    by_topic_.erase({tail.topic, p});
    touched_.erase({tail.store_index, p});
    const CompiledStore& store = topology_->stores()[tail.store_index];
    standby_.positions().Forget(store.info.name, topology_->sources()[store.source].spec.topic(),
                                partition);
  }
  replicas_.erase(it);
  spdlog::info("standby replica of partition {} stopped", p);
}

void StandbyReplicator::Assign() {
  std::vector<RdKafka::TopicPartition*> tps;
  for (auto& [p, replica] : replicas_) {
    for (Tail& tail : replica.tails) {
      // Incomplete changelog batches are read again from the checkpoint.
      if (tail.batches) tail.batches->Reset();
      tps.push_back(RdKafka::TopicPartition::create(tail.topic, p, tail.next));
    }
  }
  if (RdKafka::ErrorCode code = consumer_->assign(tps); code != RdKafka::ERR_NO_ERROR) {
    spdlog::error("standby replicas: assign: {}", RdKafka::err2str(code));
  }
  RdKafka::TopicPartition::destroy(tps);
}

absl::Status StandbyReplicator::Apply(const RdKafka::Message& m) {
  auto it = by_topic_.find({m.topic_name(), m.partition()});
  if (it == by_topic_.end()) return absl::OkStatus();  // a replica stopped meanwhile
  if (batch_.empty()) {
    batch_started_ = absl::Now();
    batch_.TrackWrites(options_.hub != nullptr);
  }
  const PartitionId p(m.partition());
  for (Tail* tail : it->second) {
    if (m.offset() < tail->next || tail->registry_blocked) continue;
    const CompiledStore& store = topology_->stores()[tail->store_index];
    if (tail->batches) {
      absl::StatusOr<int64_t> staged = tail->batches->Add(m, batch_);
      if (!staged.ok()) return staged.status();
      // Committed (and resumed from) only at batch ends: `next` is the checkpoint.
      if (*staged > 0) {
        tail->next = tail->batches->next_offset();
        if (!tail->batches->last_batch_exact()) tail->folded_through = tail->batches->source_next();
        touched_[{tail->store_index, p.value()}] = tail;
      }
      continue;
    }
    // A table: the record is applied as the owner applies it; a record the owner rejects
    // (bad, or in the wrong partition) is skipped here too (the owner dead-letters it).
    Record record;
    record.topic = tail->topic;
    record.partition = p;
    record.offset = Offset(m.offset());
    record.timestamp_ms = m.timestamp().timestamp;
    if (m.key_pointer() != nullptr) {
      record.key.emplace(static_cast<const char*>(m.key_pointer()), m.key_len());
    }
    if (m.payload() != nullptr) {
      record.value.emplace(static_cast<const char*>(m.payload()), m.len());
    }
    const CompiledSource& source = topology_->sources()[store.source];
    const bool misplaced =
        record.key && CompiledTopology::ExpectedPartition(source, *record.key) != p;
    int32_t schema_id = -1;
    const absl::Status decoded = misplaced || topology_->schemas() == nullptr
                                     ? absl::OkStatus()
                                     : topology_->DecodeRegistryFormats(record, source, &schema_id);
    if (absl::IsUnavailable(decoded)) {
      // As the owner does: the record waits for the registry, it is never skipped.
      tail->registry_blocked = true;
      registry_retry_at_ = std::min(registry_retry_at_, absl::Now() + absl::Seconds(1));
      if (int64_t suppressed = 0; errors_.Allow(&suppressed)) {
        spdlog::warn("standby replica of partition {}: {} waits: {} ({} similar suppressed)",
                     p.value(), tail->topic, decoded.message(), suppressed);
      }
      continue;
    }
    bool duplicate = false;
    if (tail->repartition) {
      // As the owner does (Ingestor::Process): a record forwarded again is dropped.
      std::optional<std::pair<int32_t, int64_t>> upstream;
      if (RdKafka::Headers* headers = const_cast<RdKafka::Message&>(m).headers();
          headers != nullptr) {
        for (const RdKafka::Headers::Header& h : headers->get(kUpstreamHeader)) {
          UpstreamMarks marks = ParseUpstreamMarks(
              absl::string_view(static_cast<const char*>(h.value()), h.value_size()));
          if (marks.size() == 1) upstream = marks.front();
        }
      }
      if (upstream) {
        int64_t& next = tail->upstream_next[upstream->first];
        duplicate = upstream->second < next;
        if (!duplicate) {
          next = upstream->second + 1;
          batch_.SetOffset(store.UpstreamStream(upstream->first), p, Offset(next));
        }
      }
    }
    if (!duplicate && !misplaced && decoded.ok() && !topology_->DecodeError(record, source)) {
      batch_.SetSource(record.topic, record.offset);
      absl::Status s = topology_->Process(record, tail->store_index, batch_);
      if (!s.ok() && !absl::IsInvalidArgument(s)) return s;
    }
    tail->next = m.offset() + 1;
    batch_.SetOffset(store.source_stream, p, Offset(tail->next));
    batch_.CountRecord();
    touched_[{tail->store_index, p.value()}] = tail;
  }
  return absl::OkStatus();
}

absl::Status StandbyReplicator::Commit() {
  if (batch_.empty()) return absl::OkStatus();
  // Readers of the replicas redo reads that overlap this bracket (see LocalStores::ReadAt).
  standby_.positions().BeginCommit();
  absl::Cleanup end_commit = [this] { standby_.positions().EndCommit(); };
  std::vector<Change> changes;
  if (absl::Status s = batch_.Commit(options_.hub != nullptr ? &changes : nullptr); !s.ok()) {
    return s;
  }
  std::vector<ReplicaProgress> progress;
  for (const auto& [key, tail] : touched_) {
    const CompiledStore& store = topology_->stores()[tail->store_index];
    const PartitionId p(key.second);
    const int64_t next = tail->batches ? tail->batches->source_next().value_or(0) : tail->next;
    progress.push_back(
        ReplicaProgress{store.handle, p, tail->folded_through.value_or(tail->log_from), next});
    tail->log_from = next;
    tail->folded_through.reset();
    standby_.positions().Advance(store.info.name, topology_->sources()[store.source].spec.topic(),
                                 p, Offset(next));
  }
  touched_.clear();
  if (options_.hub != nullptr) options_.hub->ReplicaApplied(std::move(changes), progress);
  batch_started_ = absl::InfiniteFuture();
  return absl::OkStatus();
}

void StandbyReplicator::UpdateLags() {
  for (auto& [p, replica] : replicas_) {
    bool caught_up = true;
    for (const Tail& tail : replica.tails) {
      int64_t low = 0;
      int64_t high = 0;
      if (consumer_->get_watermark_offsets(tail.topic, p, &low, &high) != RdKafka::ERR_NO_ERROR ||
          high < 0) {
        high = tail.caught_up_at;
      }
      const CompiledStore& store = topology_->stores()[tail.store_index];
      // Committed state only: staged records are not yet readable.
      const int64_t lag = std::max<int64_t>(high - tail.next, 0);
      standby_.SetLag(PartitionId(p), store.info.name, lag);
      if (options_.metrics != nullptr) options_.metrics->SetStandbyLag(store.info.name, p, lag);
      if (tail.next < tail.caught_up_at) caught_up = false;
    }
    if (caught_up && !replica.serving && touched_.empty()) {
      replica.serving = true;
      standby_.MarkServing(PartitionId(p));
      spdlog::info("standby replica of partition {} caught up: serving stale reads", p);
      if (options_.on_change) options_.on_change();
    }
  }
}

}  // namespace kiq::node
