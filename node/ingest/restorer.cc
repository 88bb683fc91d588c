#include "node/ingest/restorer.h"

#include <time.h>

#include <algorithm>
#include <optional>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/kafka/kafka_errors.h"
#include "common/logging.h"
#include "common/thread_name.h"
#include "node/ingest/changelog_batches.h"
#include "node/store/staged_batch.h"

namespace kiq::node {
namespace {

constexpr int kKafkaTimeoutMs = 10000;
constexpr int kConsumeTimeoutMs = 200;
// A partition whose restore reads nothing for this long (the changelog's leader gone, say)
// fails rather than staying RESTORING forever; the others go on.
constexpr absl::Duration kNoProgressLimit = absl::Seconds(60);
// Complete batches of one partition are committed together, in one WriteBatch (each batch is
// still applied whole, with the offsets of the last one), up to this many entries: a commit
// per original ingestion batch would cost a RocksDB write per few records.
constexpr int64_t kMaxStagedEntries = 20000;
// Messages read between two reads of the clock (see RestoreAll's loop).
constexpr int kClockEvery = 256;

// CPU time of the calling thread: with the wall time in the restore's log line, it tells the
// restore's own work from waiting (for the broker, or for a core on a loaded machine).
absl::Duration ThreadCpuTime() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return absl::DurationFromTimespec(ts);
}

}  // namespace

// The restore of one task in progress.
struct Restorer::Pending {
  Pending(const RestoreTask& t, size_t i, StoreEngine& engine)
      : task(t), index(i), staged(engine), batches(*t.store, t.partition, t.source_topic) {}

  const RestoreTask& task;
  const size_t index;  // in the tasks of the call
  int64_t from = 0;
  int64_t high = 0;  // the high watermark at the start: restored when reached
  StagedBatch staged;
  ChangelogBatches batches;
  // The restored changes go to the partition's replay log when this node keeps one (it held
  // a standby replica) and for the last records in any case (as many as a log holds): batches
  // its owner wrote while someone subscribed hold every write, so a subscription that followed
  // the partition on its owner resumes here even after the owner died.
  bool continues_log = false;
  int64_t log_tail_from = 0;
  // Where the restored state's source stands before the next batch committed: a tracked
  // batch's changes are those of the records from there on.
  int64_t source_from = 0;
  // Whether the (untracked) batches staged since the last commit include an inexact one in
  // the replay log's range: the log then restarts where they end.
  bool restarts_log = false;
  int64_t applied = 0;         // entries committed
  int64_t staged_entries = 0;  // entries of the complete batches staged, not yet committed
  int commits = 0;             // RocksDB writes, for the log
  absl::Time last_progress;
  bool done = false;
  absl::Status status;
};

absl::StatusOr<std::unique_ptr<Restorer>> Restorer::Create(const KafkaClientConfig& kafka,
                                                           const std::string& group_id,
                                                           const std::string& client_id) {
  absl::StatusOr<std::unique_ptr<RdKafka::Conf>> conf =
      kafka.Build(client_id, {{"group.id", group_id},
                              {"enable.auto.commit", "false"},
                              {"auto.offset.reset", "error"},
                              {"queued.min.messages", "1000000"},
                              // A restore knows its end offsets and stops there, so it should
                              // never wait on an empty fetch; kept short so that one (a
                              // partition's last fetch racing its pause) costs at most 10 ms,
                              // not the default 500 ms the dev Kafka holds an empty fetch for.
                              {"fetch.wait.max.ms", "10"},
                              {"enable.partition.eof", "false"}});
  if (!conf.ok()) return conf.status();
  std::string err;
  std::unique_ptr<RdKafka::KafkaConsumer> consumer(
      RdKafka::KafkaConsumer::create(conf->get(), err));
  if (!consumer) return absl::InternalError(absl::StrCat("create restore consumer: ", err));
  return std::unique_ptr<Restorer>(new Restorer(std::move(consumer)));
}

Restorer::~Restorer() {
  if (warmer_.joinable()) warmer_.join();
}

void Restorer::Warm(std::vector<std::pair<std::string, PartitionId>> partitions) {
  if (partitions.empty() || warmer_.joinable()) return;
  warmer_ = std::thread([this, partitions = std::move(partitions)] {
    NameThisThread("kiq-restore-pre");
    const absl::Time started = absl::Now();
    std::vector<RdKafka::TopicPartition*> tps;
    for (const auto& [topic, p] : partitions) {
      tps.push_back(RdKafka::TopicPartition::create(topic, p.value(), RdKafka::Topic::OFFSET_END));
    }
    // librdkafka's calls are thread-safe: a restore started meanwhile goes on in parallel.
    const RdKafka::ErrorCode code = consumer_->offsetsForTimes(tps, kKafkaTimeoutMs);
    RdKafka::TopicPartition::destroy(tps);
    spdlog::debug("restore consumer warmed up for {} changelog partitions in {}: {}",
                  partitions.size(), absl::FormatDuration(absl::Now() - started),
                  RdKafka::err2str(code));
  });
}

void Restorer::Close() {
  if (warmer_.joinable()) warmer_.join();
  consumer_->close();
}

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

std::vector<absl::StatusOr<std::pair<int64_t, int64_t>>> Restorer::WatermarksOf(
    const std::vector<std::pair<std::string, PartitionId>>& partitions) {
  std::vector<absl::StatusOr<std::pair<int64_t, int64_t>>> out;
  if (partitions.empty()) return out;
  // ListOffsets with the timestamps EARLIEST (-2) and LATEST (-1) answers the low and high
  // watermarks, as query_watermark_offsets asks them, but for every partition at once.
  auto ask = [&](int64_t timestamp, std::vector<RdKafka::TopicPartition*>& tps) {
    for (const auto& [topic, p] : partitions) {
      tps.push_back(RdKafka::TopicPartition::create(topic, p.value(), timestamp));
    }
    return consumer_->offsetsForTimes(tps, kKafkaTimeoutMs);
  };
  std::vector<RdKafka::TopicPartition*> lows;
  std::vector<RdKafka::TopicPartition*> highs;
  // Both at once (librdkafka's calls are thread-safe, each waits on its own reply queue): one
  // round trip, as query_watermark_offsets takes for a single partition.
  RdKafka::ErrorCode low_code = RdKafka::ERR_NO_ERROR;
  std::thread low_asker([&] { low_code = ask(RdKafka::Topic::OFFSET_BEGINNING, lows); });
  const RdKafka::ErrorCode high_code = ask(RdKafka::Topic::OFFSET_END, highs);
  low_asker.join();
  for (size_t i = 0; i < partitions.size(); ++i) {
    const auto& [topic, p] = partitions[i];
    const RdKafka::ErrorCode err =
        lows[i]->err() != RdKafka::ERR_NO_ERROR ? lows[i]->err() : highs[i]->err();
    if (low_code == RdKafka::ERR_NO_ERROR && high_code == RdKafka::ERR_NO_ERROR &&
        err == RdKafka::ERR_NO_ERROR && lows[i]->offset() >= 0 &&
        highs[i]->offset() >= lows[i]->offset()) {
      out.emplace_back(std::make_pair(lows[i]->offset(), highs[i]->offset()));
    } else if (err != RdKafka::ERR_NO_ERROR && ClassifyKafkaError(static_cast<rd_kafka_resp_err_t>(
                                                   err)) != KafkaErrorAction::kRetry) {
      out.emplace_back(
          KafkaToStatus(static_cast<rd_kafka_resp_err_t>(err),
                        absl::StrCat("watermarks of ", topic, " partition=", p.value())));
    } else {
      // The request as a whole timed out, or this partition's answer is unusable: asked alone,
      // so that one slow leader costs this partition its own wait only.
      out.push_back(Watermarks(topic, p));
    }
  }
  RdKafka::TopicPartition::destroy(lows);
  RdKafka::TopicPartition::destroy(highs);
  return out;
}

absl::Status Restorer::CommitStaged(Pending& r, SubscriptionHub* hub) {
  if (r.staged.empty()) return absl::OkStatus();
  const bool tracked = r.staged.tracks_writes();
  std::vector<Change> changes;
  r.staged.AssumeStoredAbsent(false);  // from now on the partition may hold what is committed
  if (absl::Status s = r.staged.Commit(tracked ? &changes : nullptr); !s.ok()) {
    r.staged.Clear();
    return s;
  }
  ++r.commits;
  r.applied += r.staged_entries;
  r.staged_entries = 0;
  const int64_t next = r.batches.source_next().value_or(r.source_from);
  if (hub != nullptr && tracked) {
    // The exact batches committed together hold every write from `source_from` on.
    hub->ReplicaApplied(std::move(changes),
                        {{r.task.store->handle, r.task.partition, r.source_from, next}});
  } else if (hub != nullptr && r.restarts_log) {
    // Inexact batches in the log's range: the log restarts at `next` (with no change of
    // theirs: they have no record offsets), as it would have had each been reported alone.
    hub->ReplicaApplied({}, {{r.task.store->handle, r.task.partition, next, next}});
  }
  r.source_from = next;
  r.restarts_log = false;
  return absl::OkStatus();
}

void Restorer::Finish(Pending& r) {
  r.done = true;
  std::vector<RdKafka::TopicPartition*> tps = {
      RdKafka::TopicPartition::create(r.task.store->changelog_topic, r.task.partition.value())};
  consumer_->pause(tps);
  RdKafka::TopicPartition::destroy(tps);
}

absl::StatusOr<int64_t> Restorer::Restore(const CompiledStore& store,
                                          const std::string& source_topic, PartitionId p,
                                          StoreEngine& engine, SubscriptionHub* hub) {
  std::vector<RestoreOutcome> outcome =
      RestoreAll({RestoreTask{&store, source_topic, p}}, engine, hub);
  return std::move(outcome.front().applied);
}

std::vector<RestoreOutcome> Restorer::RestoreAll(const std::vector<RestoreTask>& tasks,
                                                 StoreEngine& engine, SubscriptionHub* hub) {
  const absl::Time started = absl::Now();
  const absl::Duration cpu_started = ThreadCpuTime();
  std::vector<RestoreOutcome> out(tasks.size());
  std::vector<std::pair<std::string, PartitionId>> wanted;
  wanted.reserve(tasks.size());
  for (const RestoreTask& t : tasks) wanted.emplace_back(t.store->changelog_topic, t.partition);
  std::vector<absl::StatusOr<std::pair<int64_t, int64_t>>> marks = WatermarksOf(wanted);
  const absl::Duration watermarks_took = absl::Now() - started;
  std::optional<absl::Duration> first_record;  // after the start, for the log

  std::vector<std::unique_ptr<Pending>> pending;
  absl::flat_hash_map<std::pair<std::string, int32_t>, Pending*> by_partition;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const RestoreTask& t = tasks[i];
    const CompiledStore& store = *t.store;
    out[i].took = absl::Now() - started;
    absl::StatusOr<std::optional<Offset>> checkpoint =
        engine.ReadOffset(store.changelog_stream, t.partition);
    if (!checkpoint.ok()) {
      out[i].applied = checkpoint.status();
      continue;
    }
    if (!marks[i].ok()) {
      out[i].applied = marks[i].status();
      continue;
    }
    const auto [low, high] = *marks[i];
    const int64_t from = std::max(checkpoint->value_or(Offset(0)).value(), low);
    if (from >= high) continue;  // nothing newer than our state: 0 applied
    absl::StatusOr<std::optional<Offset>> source =
        engine.ReadOffset(store.source_stream, t.partition);
    if (!source.ok()) {
      out[i].applied = source.status();
      continue;
    }
    auto r = std::make_unique<Pending>(t, i, engine);
    if (!by_partition.try_emplace({store.changelog_topic, t.partition.value()}, r.get()).second) {
      out[i].applied = absl::InvalidArgumentError(absl::StrCat("restore ", store.changelog_topic,
                                                               " partition=", t.partition.value(),
                                                               ": asked twice in one restore"));
      continue;
    }
    r->from = from;
    r->high = high;
    r->continues_log = hub != nullptr && hub->KeepsReplayLog(store.handle, t.partition);
    r->log_tail_from = hub == nullptr ? high : high - static_cast<int64_t>(hub->replay_capacity());
    r->source_from = source->value_or(Offset(0)).value();
    // Restored from scratch (no checkpoint, no source offset, no entry): until its first
    // commit the partition holds nothing, so the old values are not read (each distinct key
    // would cost a RocksDB read finding nothing).
    if (!checkpoint->has_value() && !source->has_value()) {
      absl::StatusOr<int64_t> entries = engine.EntryCount(store.handle, t.partition);
      r->staged.AssumeStoredAbsent(entries.ok() && *entries == 0);
    }
    r->batches.set_next_offset(from);
    pending.push_back(std::move(r));
  }

  if (!pending.empty()) {
    std::vector<RdKafka::TopicPartition*> tps;
    for (const auto& r : pending) {
      tps.push_back(RdKafka::TopicPartition::create(r->task.store->changelog_topic,
                                                    r->task.partition.value(), r->from));
    }
    // A pause outlives an unassign in librdkafka (it is kept on the partition's handle): the
    // partitions an earlier call paused when they were done are resumed before fetching.
    consumer_->resume(tps);
    consumer_->assign(tps);
    RdKafka::TopicPartition::destroy(tps);
  }
  size_t active = pending.size();
  const absl::Time assigned = absl::Now();
  for (const auto& r : pending) r->last_progress = assigned;
  // Ends the restore of `r`: `status` OK when it reached its high watermark.
  auto finish = [&](Pending& r, absl::Status status) {
    if (r.done) return;
    if (status.ok()) {
      status = CommitStaged(r, hub);
    } else if (!r.staged.empty()) {
      // The complete batches staged are good state: kept, so that a retry starts after them.
      if (absl::Status s = CommitStaged(r, hub); !s.ok()) {
        spdlog::warn("restore {} partition={}: {}", r.task.store->changelog_topic,
                     r.task.partition.value(), s.ToString());
      }
    }
    r.status = std::move(status);
    out[r.index].took = absl::Now() - started;
    Finish(r);
    --active;
  };
  auto find = [&](const RdKafka::Message& m) -> Pending* {
    auto it = by_partition.find(std::make_pair(m.topic_name(), m.partition()));
    return it == by_partition.end() || it->second->done ? nullptr : it->second;
  };
  absl::Time next_check = assigned + absl::Seconds(1);
  absl::Time now = assigned;
  int unclocked = 0;  // messages read since `now` was last taken
  while (active > 0) {
    std::unique_ptr<RdKafka::Message> m(consumer_->consume(kConsumeTimeoutMs));
    // The clock is read every kClockEvery messages (and after a wait): progress is checked at
    // a granularity of seconds, and a clock read per record costs as much as its headers.
    if (m->err() != RdKafka::ERR_NO_ERROR || ++unclocked >= kClockEvery || !first_record) {
      now = absl::Now();
      unclocked = 0;
    }
    if (m->err() == RdKafka::ERR__TIMED_OUT) {
      // Nothing to read right now: what is staged is committed rather than held.
      for (const auto& r : pending) {
        if (r->done) continue;
        if (absl::Status s = CommitStaged(*r, hub); !s.ok()) finish(*r, s);
      }
    } else if (m->err() != RdKafka::ERR_NO_ERROR) {
      const auto err = static_cast<rd_kafka_resp_err_t>(m->err());
      if (ClassifyKafkaError(err) != KafkaErrorAction::kRetry) {
        if (Pending* r = find(*m); r != nullptr) {
          finish(*r, KafkaToStatus(err, absl::StrCat("restore ", r->task.store->changelog_topic,
                                                     " partition=", r->task.partition.value())));
        } else if (m->partition() < 0) {
          // Not about one partition (the consumer's own error): every restore in progress.
          for (const auto& p : pending) {
            finish(*p, KafkaToStatus(err, absl::StrCat("restore ", p->task.store->changelog_topic,
                                                       " partition=", p->task.partition.value())));
          }
        }
      }
    } else if (Pending* r = find(*m); r != nullptr) {
      // (A message of a partition done already was fetched before its pause: dropped.)
      if (!first_record) first_record = now - started;
      r->last_progress = now;
      if (r->batches.Take(*m)) {
        // A complete batch. Only an exact batch's writes (each naming its source record) can
        // feed the replay log; an inexact one in the log's range restarts the log after
        // itself (its folded changes carry no offsets, the hub would drop every one), so it
        // is staged untracked, as every batch before the log's range is: no change is
        // built for a restored record that nothing reads.
        const bool replay = r->continues_log || m->offset() >= r->log_tail_from;
        const bool track = replay && r->batches.complete_exact();
        absl::Status status;
        // Tracked and untracked batches are never committed together.
        if (!r->staged.empty() && r->staged.tracks_writes() != track) {
          status = CommitStaged(*r, hub);
        }
        r->staged.TrackWrites(track);
        absl::StatusOr<int64_t> staged =
            status.ok() ? r->batches.Stage(r->staged) : absl::StatusOr<int64_t>(status);
        if (!staged.ok()) {
          r->staged.Clear();  // a batch half staged must not be committed
          finish(*r, staged.status());
        } else {
          // Tracked or not, consecutive batches go into one WriteBatch (and one report to the
          // hub): a commit per original ingestion batch would cost a RocksDB write and a hub
          // call per few records.
          r->staged_entries += *staged;
          // The replay log restarts after the last inexact batch of the group (committed
          // before any tracked batch after it).
          if (replay && !track) r->restarts_log = true;
          if (r->staged_entries >= kMaxStagedEntries) {
            if (absl::Status s = CommitStaged(*r, hub); !s.ok()) finish(*r, s);
          }
        }
      }
      if (!r->done && r->batches.next_offset() >= r->high) finish(*r, absl::OkStatus());
    }
    if (now >= next_check) {
      next_check = now + absl::Seconds(1);
      for (const auto& r : pending) {
        if (r->done || now - r->last_progress <= kNoProgressLimit) continue;
        finish(*r, absl::DeadlineExceededError(
                       absl::StrCat("restore ", r->task.store->changelog_topic,
                                    " partition=", r->task.partition.value(), ": no progress for ",
                                    absl::FormatDuration(kNoProgressLimit), " at offset ",
                                    r->batches.next_offset(), " of ", r->high)));
      }
    }
  }
  if (!pending.empty()) consumer_->unassign();

  for (const auto& r : pending) {
    const CompiledStore& store = *r->task.store;
    if (!r->status.ok()) {
      out[r->index].applied = r->status;
      continue;
    }
    out[r->index].applied = r->applied;
    spdlog::info("restored store={} partition={} from {} offsets [{}, {}): {} entries in {}",
                 store.info.name, r->task.partition.value(), store.changelog_topic, r->from,
                 r->high, r->applied, absl::FormatDuration(out[r->index].took));
  }
  if (!pending.empty()) {
    int commits = 0;
    for (const auto& r : pending) commits += r->commits;
    // Where the time of the whole restore went (the fixed costs, once per call).
    spdlog::info(
        "restore of {} partitions in {} (this thread's CPU {}): watermarks {}, first record "
        "after {}, {} commits",
        pending.size(), absl::FormatDuration(absl::Now() - started),
        absl::FormatDuration(ThreadCpuTime() - cpu_started), absl::FormatDuration(watermarks_took),
        first_record ? absl::FormatDuration(*first_record) : std::string("-"), commits);
  }
  return out;
}

}  // namespace kiq::node
