#include "node/push/subscription_hub.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace kiq::node {
namespace {

// A subscriber whose queue only advanced (no matching change) is woken at most this often:
// it tells the router where the subscription stands, which a resume after a crash needs.
constexpr absl::Duration kProgressNotifyInterval = absl::Milliseconds(200);

// What a logged change costs, roughly: its strings and the event around them.
size_t EventBytes(const router::ChangeEvent& c) {
  return sizeof(router::ChangeEvent) + c.key.size() + c.topic.size() +
         (c.old_value ? c.old_value->size() : 0) + (c.new_value ? c.new_value->size() : 0);
}

}  // namespace

router::ChangeEvent ToEvent(Change change) {
  return router::ChangeEvent{change.partition,
                             std::move(change.key),
                             std::move(change.old_value),
                             std::move(change.new_value),
                             std::move(change.topic),
                             change.offset};
}

SubscriptionHub::Lane& SubscriptionHub::LaneOf(int lane) {
  if (lane < 0 || static_cast<size_t>(lane) >= lanes_.size()) {
    spdlog::critical("subscription hub: lane {} of {}", lane, lanes_.size());
    std::abort();
  }
  return lanes_[static_cast<size_t>(lane)];
}

bool SubscriptionHub::AnyLaneBusy() const {
  return std::any_of(lanes_.begin(), lanes_.end(),
                     [](const Lane& l) { return l.committing || l.untracked; });
}

bool SubscriptionHub::BeginBatch(int lane) {
  // Decided under the lock a registration checks the lanes under: a subscriber either
  // announced itself before this check (the batch logs its changes) or waits for the batch.
  absl::MutexLock lock(&commit_mu_);
  const bool track = active();
  LaneOf(lane).untracked = !track;
  return track;
}

absl::Status SubscriptionHub::CommitAndPublish(
    StagedBatch& batch, const std::vector<CommittedPosition>& positions,
    const std::function<absl::Status(bool exact)>& write_ahead, int lane) {
  if (batch.empty()) {
    absl::MutexLock lock(&commit_mu_);
    EndBatch(lane);
    return absl::OkStatus();
  }
  const bool exact = StartCommit(batch, lane);
  absl::Status status = write_ahead ? write_ahead(exact) : absl::OkStatus();
  return FinishCommit(batch, positions, std::move(status), lane);
}

bool SubscriptionHub::StartCommit(const StagedBatch& batch, int lane) {
  absl::MutexLock lock(&commit_mu_);
  // A registration waits for every lane; it goes first (an untracked batch is what it waits
  // for, so that one goes on).
  if (!LaneOf(lane).untracked) {
    while (waiting_ > 0) boundary_.Wait(&commit_mu_);
  }
  Lane& l = LaneOf(lane);
  l.committing = true;  // registrations wait from here until the changes are published
  // The batch's own "untracked" wait is covered by `committing` from here; a batch begun while
  // this one is in flight sets `untracked` for itself (BeginBatch), and FinishCommit must not
  // clear that.
  l.untracked = false;
  // Every subscriber registered so far gets this batch's changes one by one; the changelog
  // keeps them so, so that a standby replica can replay them exactly if this node dies.
  // Later ones register after the publish.
  return count_.load() > 0 && batch.tracks_writes();
}

absl::Status SubscriptionHub::FinishCommit(StagedBatch& batch,
                                           const std::vector<CommittedPosition>& positions,
                                           absl::Status write_ahead, int lane) {
  absl::Status status = std::move(write_ahead);
  std::vector<Change> changes;
  if (status.ok()) status = batch.Commit(active() ? &changes : nullptr);
  absl::MutexLock lock(&commit_mu_);
  if (status.ok()) PublishAtBoundary(std::move(changes), positions);
  LaneOf(lane).committing = false;
  boundary_.SignalAll();
  return status;
}

void SubscriptionHub::EndBatch(int lane) {
  Lane& l = LaneOf(lane);
  l.committing = false;
  l.untracked = false;
  boundary_.SignalAll();
}

absl::StatusOr<std::shared_ptr<Subscriber>> SubscriptionHub::Subscribe(
    StoreHandle store, absl::string_view store_name, router::KeyMatch match,
    const std::vector<int32_t>& partitions, const router::Progress& resume, size_t capacity,
    bool coalesce, absl::Duration wait, const std::function<absl::Status()>& check,
    const std::function<absl::Status()>& snapshot) {
  // Batches started from now on log every change; one already under way without a log, or
  // being committed, ends before we register.
  ++announced_;
  absl::MutexLock lock(&commit_mu_);
  const absl::Time deadline = absl::Now() + wait;
  ++waiting_;
  while (AnyLaneBusy()) {
    if (boundary_.WaitWithDeadline(&commit_mu_, deadline)) break;
  }
  --waiting_;
  boundary_.SignalAll();  // lanes held at StartCommit for it (they wait for the lock now)
  absl::StatusOr<std::shared_ptr<Subscriber>> subscriber;
  if (AnyLaneBusy()) {
    subscriber = absl::UnavailableError(absl::StrCat("Subscribe to store \"", store_name,
                                                     "\": the ingestion batch under way was not "
                                                     "committed within ",
                                                     absl::FormatDuration(wait), "; try again"));
  } else if (absl::Status s = check(); !s.ok()) {
    subscriber = s;
  } else {
    subscriber = RegisterAtBoundary(store, store_name, std::move(match), partitions, resume,
                                    capacity, coalesce);
  }
  --announced_;  // counted as registered now (or failed)
  if (!subscriber.ok()) return subscriber.status();
  if (absl::Status s = snapshot(); !s.ok()) {
    Unregister(subscriber->get());
    return s;
  }
  return subscriber;
}

absl::StatusOr<std::shared_ptr<Subscriber>> SubscriptionHub::Register(
    StoreHandle store, absl::string_view store_name, router::KeyMatch match,
    const std::vector<int32_t>& partitions, const router::Progress& resume, size_t capacity,
    bool coalesce) {
  const auto ok = [] { return absl::OkStatus(); };
  return Subscribe(store, store_name, std::move(match), partitions, resume, capacity, coalesce,
                   absl::InfiniteDuration(), ok, ok);
}

void SubscriptionHub::Publish(std::vector<Change> changes,
                              const std::vector<CommittedPosition>& positions) {
  absl::MutexLock lock(&commit_mu_);
  PublishAtBoundary(std::move(changes), positions);
}

absl::StatusOr<std::shared_ptr<Subscriber>> SubscriptionHub::RegisterAtBoundary(
    StoreHandle store, absl::string_view store_name, router::KeyMatch match,
    const std::vector<int32_t>& partitions, const router::Progress& resume, size_t capacity,
    bool coalesce) {
  auto subscriber = std::make_shared<Subscriber>();
  subscriber->store = store;
  subscriber->match = std::move(match);
  subscriber->queue = std::make_shared<router::ChangeQueue>(
      capacity == 0 ? kDefaultSubscriberBuffer : capacity, coalesce);
  absl::MutexLock lock(&mu_);
  for (int32_t p : partitions) {
    if (p < 0) continue;
    if (static_cast<size_t>(p) >= subscriber->partitions.size()) {
      subscriber->partitions.resize(p + 1, false);
    }
    subscriber->partitions[p] = true;
    auto at = positions_.find({store.index, p});
    const int64_t here = at == positions_.end() ? 0 : at->second;
    auto from = resume.find(p);
    if (from == resume.end() || from->second == here) {
      subscriber->queue->Advance(p, here);
      continue;
    }
    const int64_t wanted = from->second;
    if (wanted > here) {
      // This node is behind (it restored less than was delivered, or is catching up): it
      // makes those changes again, deterministically; they are dropped.
      subscriber->skip_below[p] = wanted;
      subscriber->queue->Advance(p, wanted);
      continue;
    }
    auto log = replay_.find({store.index, p});
    if (log == replay_.end() || log->second.start > wanted) {
      return absl::AbortedError(absl::StrCat(
          "cannot resume the subscription to store \"", store_name, "\" partition ", p,
          " at offset ", wanted, ": its new owner is already at offset ", here, " and ",
          log == replay_.end()
              ? "no longer keeps its recent changes"
              : absl::StrCat("keeps its changes from offset ", log->second.start, " only"),
          "; the changes in between cannot be replayed. Subscribe again (FROM_SNAPSHOT to "
          "resync)"));
    }
    for (const router::ChangeEvent& c : log->second.changes) {
      if (c.offset >= wanted && subscriber->match.Matches(c.key)) {
        if (!subscriber->queue->Push(c)) break;  // overflowed: ends with RESOURCE_EXHAUSTED
      }
    }
    subscriber->queue->Advance(p, here);
  }
  subscribers_.push_back(subscriber);
  UpdateGauge();
  return subscriber;
}

void SubscriptionHub::Unregister(const Subscriber* subscriber) {
  absl::MutexLock lock(&mu_);
  subscribers_.erase(std::remove_if(subscribers_.begin(), subscribers_.end(),
                                    [&](const auto& s) { return s.get() == subscriber; }),
                     subscribers_.end());
  UpdateGauge();
}

void SubscriptionHub::UpdateGauge() {
  count_.store(static_cast<int64_t>(subscribers_.size()));
  if (options_.subscriptions != nullptr) {
    options_.subscriptions->Set(static_cast<double>(subscribers_.size()));
  }
}

void SubscriptionHub::Record(Change change, absl::Time now) {
  auto it = replay_.find({change.store.index, change.partition.value()});
  if (it == replay_.end() || now > it->second.until) return;
  ReplayLog& log = it->second;
  log.changes.push_back(ToEvent(std::move(change)));
  const size_t added = EventBytes(log.changes.back());
  log.bytes += added;
  replay_bytes_ += added;
  // Trim whole records: the log must hold every change of each offset it covers.
  while (!log.changes.empty() && (log.changes.size() > options_.replay_capacity ||
                                  replay_bytes_ > options_.replay_max_bytes)) {
    const int64_t dropped = log.changes.front().offset;
    while (!log.changes.empty() && log.changes.front().offset <= dropped) {
      const size_t freed = EventBytes(log.changes.front());
      log.bytes -= freed;
      replay_bytes_ -= freed;
      log.changes.pop_front();
    }
    log.start = std::max(log.start, dropped + 1);
  }
}

void SubscriptionHub::ClearLog(ReplayLog& log) {
  replay_bytes_ -= log.bytes;
  log.bytes = 0;
  log.changes.clear();
}

void SubscriptionHub::ExpireReplayLogs(absl::Time now) {
  for (auto it = replay_.begin(); it != replay_.end();) {
    if (now > it->second.until) {
      ClearLog(it->second);
      replay_.erase(it++);
    } else {
      ++it;
    }
  }
  recording_.store(static_cast<int64_t>(replay_.size()));
}

void SubscriptionHub::PublishAtBoundary(std::vector<Change> changes,
                                        const std::vector<CommittedPosition>& positions) {
  const absl::Time now = absl::Now();
  std::vector<std::shared_ptr<Subscriber>> subscribers;
  {
    absl::MutexLock lock(&mu_);
    for (const CommittedPosition& at : positions) {
      positions_[{at.store.index, at.partition.value()}] = at.next;
      auto log = replay_.find({at.store.index, at.partition.value()});
      if (log != replay_.end()) log->second.end = at.next;
    }
    subscribers = subscribers_;
  }
  std::vector<bool> wake(subscribers.size());  // by index into `subscribers`
  for (size_t i = 0; i < subscribers.size(); ++i) {
    const Subscriber* s = subscribers[i].get();
    router::ChangeQueue& queue = *s->queue;
    if (queue.ended()) continue;
    bool queued = false;
    for (const Change& c : changes) {
      if (c.store.index != s->store.index || !s->Follows(c.partition.value()) ||
          !s->match.Matches(c.key)) {
        continue;
      }
      if (!s->skip_below.empty()) {
        auto skip = s->skip_below.find(c.partition.value());
        if (skip != s->skip_below.end() && c.offset < skip->second) continue;
      }
      if (!queue.Push(ToEvent(c))) break;
      queued = true;
    }
    // Overflow ended it (Push returned false) or changes arrived: wake the stream either way.
    wake[i] = queued || queue.ended();
  }
  {
    // The progress moves only once the batch's changes are queued: a stream that takes from
    // the queue in between (woken by an earlier write) would otherwise find it drained and
    // report the batch's end position ahead of its changes, and a router resuming from that
    // position after this node dies would miss them.
    absl::MutexLock lock(&mu_);
    for (size_t i = 0; i < subscribers.size(); ++i) {
      Subscriber* s = subscribers[i].get();
      if (s->queue->ended()) continue;
      bool advanced = false;
      for (const CommittedPosition& at : positions) {
        if (at.store.index == s->store.index && s->Follows(at.partition.value())) {
          advanced |= s->queue->Advance(at.partition.value(), at.next);
        }
      }
      // Progress without a change wakes a subscriber now and then, not at every batch.
      if (advanced && now >= s->next_progress_notify) {
        s->next_progress_notify = now + kProgressNotifyInterval;
        wake[i] = true;
      }
    }
  }
  for (size_t i = 0; i < subscribers.size(); ++i) {
    if (wake[i]) subscribers[i]->queue->Notify();
  }
  // Last, so that the changes can be moved in (commit_mu_ keeps registrations out until then).
  absl::MutexLock lock(&mu_);
  if (!replay_.empty()) {
    for (Change& c : changes) Record(std::move(c), now);
    ExpireReplayLogs(now);
  }
}

void SubscriptionHub::StartReplayLog(StorePartition sp, int64_t next) {
  if (options_.replay_window <= absl::ZeroDuration()) return;
  const absl::Time now = absl::Now();
  ExpireReplayLogs(now);
  ReplayLog& log = replay_[sp];
  if (log.end != next) {
    // Restored from elsewhere (or new): the changes up to `next` were made by another node.
    log.start = next;
    log.end = next;
    ClearLog(log);
  }
  log.until = std::max(log.until, now + options_.replay_window);
  recording_.store(static_cast<int64_t>(replay_.size()));
}

void SubscriptionHub::PartitionAssigned(StoreHandle store, PartitionId p, int64_t next) {
  absl::MutexLock lock(&mu_);
  positions_[{store.index, p.value()}] = next;
  StartReplayLog({store.index, p.value()}, next);
}

void SubscriptionHub::ReplicaStarted(StoreHandle store, PartitionId p, int64_t next) {
  absl::MutexLock lock(&mu_);
  StartReplayLog({store.index, p.value()}, next);
}

void SubscriptionHub::ReplicaApplied(std::vector<Change> changes,
                                     const std::vector<ReplicaProgress>& progress) {
  if (options_.replay_window <= absl::ZeroDuration()) return;
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  absl::flat_hash_map<StorePartition, int64_t> from;
  for (const ReplicaProgress& at : progress) {
    // Expires the logs first: an expired one must not take changes (it lacks those before).
    StartReplayLog({at.store.index, at.partition.value()}, at.from);
    from[{at.store.index, at.partition.value()}] = at.from;
  }
  for (Change& change : changes) {
    auto it = from.find({change.store.index, change.partition.value()});
    if (it != from.end() && change.offset >= it->second) Record(std::move(change), now);
  }
  for (const ReplicaProgress& at : progress) {
    replay_[{at.store.index, at.partition.value()}].end = at.next;
  }
}

bool SubscriptionHub::KeepsReplayLog(StoreHandle store, PartitionId p) {
  absl::MutexLock lock(&mu_);
  auto it = replay_.find({store.index, p.value()});
  return it != replay_.end() && absl::Now() <= it->second.until;
}

void SubscriptionHub::PartitionActive(PartitionId p) {
  absl::MutexLock lock(&mu_);
  const absl::Time until = absl::Now() + options_.replay_window;
  for (auto& [sp, log] : replay_) {
    if (sp.second == p.value()) log.until = std::max(log.until, until);
  }
}

void SubscriptionHub::PartitionsRevoked(const std::vector<int32_t>& partitions) {
  absl::MutexLock lock(&mu_);
  for (auto it = positions_.begin(); it != positions_.end();) {
    if (std::find(partitions.begin(), partitions.end(), it->first.second) != partitions.end()) {
      positions_.erase(it++);
    } else {
      ++it;
    }
  }
}

void SubscriptionHub::EndPartitions(const std::vector<int32_t>& partitions,
                                    const absl::Status& status) {
  std::vector<std::shared_ptr<Subscriber>> subscribers;
  {
    absl::MutexLock lock(&mu_);
    subscribers = subscribers_;
  }
  for (const auto& s : subscribers) {
    if (std::any_of(partitions.begin(), partitions.end(),
                    [&s](int32_t p) { return s->Follows(p); })) {
      s->queue->End(status);
    }
  }
}

void SubscriptionHub::EndAll(const absl::Status& status) {
  std::vector<std::shared_ptr<Subscriber>> subscribers;
  {
    absl::MutexLock lock(&mu_);
    subscribers = subscribers_;
  }
  for (const auto& s : subscribers) s->queue->End(status);
}

}  // namespace kiq::node
