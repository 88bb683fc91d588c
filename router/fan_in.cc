#include "router/fan_in.h"

#include "common/backoff.h"
#include "common/status.h"

#include <algorithm>
#include <map>

#include <grpcpp/grpcpp.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/grpc_status.h"
#include "common/logging.h"
#include "common/thread_name.h"
#include "router/peer_service.h"

namespace kiq::router {
namespace {

// Remote snapshot entries buffered per source before it stops reading (back-pressure to the
// owner, whose own snapshot read is paced by our reads).
constexpr size_t kSnapshotBuffer = 512;
constexpr size_t kDefaultBuffer = 10000;

// Placing a source again after it failed: soon, but not in a tight loop.
constexpr ExponentialBackoff kPlacementBackoff{absl::Milliseconds(50), absl::Milliseconds(500)};

}  // namespace

struct FanIn::Source {
  std::vector<int32_t> partitions;
  std::string node_id;                  // empty: this process
  std::shared_ptr<Subscription> local;  // this process's partitions
  RemoteStream* remote = nullptr;       // another node's; valid until hold_released
  bool started = false;                 // remote: Start has returned (Stop only after it)
  bool hold_released = false;           // remote: we are done with the stream
  bool snapshot = false;                // asked for a snapshot
  bool snapshot_received = false;       // every snapshot entry is here (or was handed out)
  bool handed_out = false;              // some snapshot entry reached the subscriber
  bool changed = false;                 // some change was queued from it
  std::deque<KeyValue> buffer;          // remote snapshot entries not handed out yet
  bool paused = false;                  // remote: holding its reads until `buffer` drains
  bool ended = false;

  std::string Name() const {
    return node_id.empty() ? std::string("this node") : absl::StrCat("node ", node_id);
  }
};

// A SubscribePartitions stream from another node. A hold keeps gRPC from finishing it (and
// deleting it) until the fan-in lets go (Stop) or it has nothing left to read (Finished);
// pausing adds a second hold. The fan-in stays alive while gRPC has the stream.
class FanIn::RemoteStream final : public grpc::ClientReadReactor<kiq::v1::PeerChange> {
 public:
  RemoteStream(std::shared_ptr<FanIn> owner, Source* source,
               kiq::v1::SubscribePartitionsRequest request)
      : owner_(std::move(owner)), source_(source), request_(std::move(request)) {}

  void Start(PeerPool::Peer& peer) {
    peer.peer->async()->SubscribePartitions(&context_, &request_, this);
    AddHold();
    StartRead(&message_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      owner_->OnStreamFinished(source_);  // OnDone follows with the status
      return;
    }
    // False: paused (OnPeerMessage added the pause hold) or no longer wanted.
    if (owner_->OnPeerMessage(source_, std::move(message_))) StartRead(&message_);
  }

  void PauseHold() { AddHold(); }
  void Resume() {
    StartRead(&message_);
    RemoveHold();
  }
  void Stop(bool paused) {
    context_.TryCancel();
    if (paused) RemoveHold();
    RemoveHold();
  }
  void Finished() { RemoveHold(); }

  void OnDone(const grpc::Status& status) override {
    owner_->OnSourceEnd(
        source_, FromGrpcStatus(status, absl::StrCat("subscription stream from ", source_->Name())),
        /*remote_done=*/true);
    delete this;
  }

 private:
  const std::shared_ptr<FanIn> owner_;
  Source* const source_;
  grpc::ClientContext context_;
  const kiq::v1::SubscribePartitionsRequest request_;
  kiq::v1::PeerChange message_;
};

FanIn::FanIn(const LocalStores& local, FanInCluster cluster, StoreInfo info, SubscribeSpec spec,
             absl::Duration give_up)
    : local_(local),
      cluster_(std::move(cluster)),
      info_(std::move(info)),
      spec_(std::move(spec)),
      give_up_(give_up),
      queue_(spec_.buffer_size == 0 ? kDefaultBuffer : spec_.buffer_size, spec_.coalesce) {
  const absl::Time now = absl::Now();
  partitions_.resize(static_cast<size_t>(info_.num_partitions));
  for (PartitionState& p : partitions_) {
    p.snapshot_needed = spec_.snapshot;
    p.pending_since = now;
  }
}

FanIn::~FanIn() = default;

FanInSubscription::~FanInSubscription() {
  fan_in_->SetNotify(nullptr);
  fan_in_->Close(absl::CancelledError("the subscriber went away"));
}

bool FanIn::ended() {
  absl::MutexLock lock(&mu_);
  return ended_;
}

void FanIn::Retry(int32_t p, absl::Time now) {
  PartitionState& state = partitions_[p];
  state.next_attempt = now + kPlacementBackoff.Delay(state.attempts);
  ++state.attempts;
}

bool FanIn::PlacePending() {
  absl::MutexLock place(&place_mu_);
  std::vector<int32_t> here;
  std::map<std::string, std::pair<kiq::v1::NodeInfo, std::vector<int32_t>>> elsewhere;
  SubscribeSpec local_spec = spec_;
  {
    absl::MutexLock lock(&mu_);
    // Ended sources that nothing refers to any more.
    for (auto it = ended_sources_.begin(); it != ended_sources_.end();) {
      const Source& s = **it;
      const bool in_snapshot = std::find(snapshot_order_.begin(), snapshot_order_.end(),
                                         it->get()) != snapshot_order_.end();
      // A remote stream calls back until its OnDone; a received snapshot is still handed out.
      if (s.remote == nullptr && s.local == nullptr && !in_snapshot) {
        it = ended_sources_.erase(it);
      } else {
        ++it;
      }
    }
    const absl::Time now = absl::Now();
    for (int32_t p = 0; p < info_.num_partitions && !ended_; ++p) {
      PartitionState& state = partitions_[p];
      if (state.source != nullptr || now < state.next_attempt) continue;
      absl::Status readable = local_.CheckReadable(info_.name, PartitionId(p));
      if (readable.ok()) {
        here.push_back(p);
        continue;
      }
      if (cluster_.table != nullptr) {
        absl::StatusOr<PartitionOwner> owner =
            cluster_.table->ActiveOwner(p, cluster_.self_node_id);
        if (owner.ok()) {
          auto& group = elsewhere[owner->node.node_id()];
          group.first = owner->node;
          group.second.push_back(p);
          continue;
        }
        readable = owner.status();
      }
      if (cluster_.table == nullptr || now - state.pending_since > give_up_) {
        EndLocked(absl::UnavailableError(absl::StrCat(
            "Subscribe to store \"", info_.name, "\": partition ", p, " has no ACTIVE owner",
            cluster_.table == nullptr ? "" : absl::StrCat(" for ", absl::FormatDuration(give_up_)),
            " (", readable.message(), ")")));
        break;
      }
      Retry(p, now);
    }
    if (ended_) {
      here.clear();
      elsewhere.clear();
    }
    local_spec.partitions = here;
    local_spec.snapshot = ResumeOf(here, &local_spec.resume);
  }
  // Outside mu_: a local subscribe takes the ingestion's commit lock, under which the
  // ingestion thread notifies us.
  Source* installed_local = nullptr;
  if (!here.empty()) {
    absl::StatusOr<std::unique_ptr<Subscription>> local = local_.Subscribe(local_spec);
    // Its notify is set outside mu_: the notify runs under the subscription's notify lock and
    // takes mu_ (OnLocalNotify), so setting it under mu_ would take the two the other way round.
    std::shared_ptr<Subscription> notify_from;
    {
      absl::MutexLock lock(&mu_);
      if (!local.ok()) {
        // Partitions moving away as we asked: try again (elsewhere) shortly.
        if (IsRetriableRouting(local.status())) {
          for (int32_t p : here) Retry(p, absl::Now());
        } else {
          EndLocked(local.status());
        }
      } else if (!ended_) {
        auto source = std::make_shared<Source>();
        source->partitions = here;
        source->snapshot = local_spec.snapshot;
        source->local = std::move(*local);
        installed_local = source.get();
        notify_from = installed_local->local;
        Install(std::move(source));
      } else {
        released_.locals.push_back(std::move(*local));
      }
    }
    if (notify_from != nullptr) {
      std::weak_ptr<FanIn> self = weak_from_this();
      notify_from->SetNotify([self, raw = installed_local] {
        if (std::shared_ptr<FanIn> fan_in = self.lock()) fan_in->OnLocalNotify(raw);
      });
    }
  }
  // Changes (or the progress) it queued before the notify was set.
  if (installed_local != nullptr) OnLocalNotify(installed_local);
  for (auto& [node_id, group] : elsewhere) {
    kiq::v1::SubscribePartitionsRequest request;
    request.set_store(info_.name);
    switch (spec_.match.kind) {
      case KeyMatch::Kind::kKey:
        request.set_key(spec_.match.text);
        break;
      case KeyMatch::Kind::kPrefix:
        request.set_key_prefix(spec_.match.text);
        break;
      case KeyMatch::Kind::kAll:
        break;
    }
    request.set_coalesce(spec_.coalesce);
    request.set_buffer_size(static_cast<int32_t>(spec_.buffer_size));
    RemoteStream* stream = nullptr;
    std::shared_ptr<Source> placed;
    {
      absl::MutexLock lock(&mu_);
      if (ended_) break;
      request.mutable_partitions()->Assign(group.second.begin(), group.second.end());
      Progress resume;
      request.set_snapshot(ResumeOf(group.second, &resume));
      for (const auto& [p, at] : resume) {
        kiq::v1::PartitionOffset* po = request.add_resume();
        po->set_partition(p);
        po->set_offset(at);
      }
      auto source = std::make_shared<Source>();
      source->partitions = group.second;
      source->node_id = node_id;
      source->snapshot = request.snapshot();
      stream = new RemoteStream(shared_from_this(), source.get(), std::move(request));
      source->remote = stream;
      placed = source;
      Install(std::move(source));
    }
    stream->Start(cluster_.peers->Get(Endpoint(group.first)));
    absl::MutexLock lock(&mu_);
    placed->started = true;
    // Let go of while it was starting (the subscription ended): stop it now.
    if (placed->ended && !placed->hold_released) {
      placed->hold_released = true;
      released_.stops.emplace_back(placed->remote, placed->paused);
      placed->paused = false;
    }
  }
  Release(/*destroy_locals=*/true);
  // A snapshot source placed while the stream waits for one: wake it (a local one has no
  // other notify until its first change).
  if (!here.empty() || !elsewhere.empty()) queue_.Notify();
  absl::MutexLock lock(&mu_);
  return !ended_ && std::any_of(partitions_.begin(), partitions_.end(),
                                [](const PartitionState& s) { return s.source == nullptr; });
}

std::shared_ptr<FanIn::Source> FanIn::Find(const Source* source) const {
  for (const auto& s : sources_) {
    if (s.get() == source) return s;
  }
  for (const auto& s : ended_sources_) {
    if (s.get() == source) return s;
  }
  return nullptr;
}

bool FanIn::ResumeOf(const std::vector<int32_t>& partitions, Progress* resume) const {
  bool snapshot = false;
  for (int32_t p : partitions) {
    if (partitions_[p].at) (*resume)[p] = *partitions_[p].at;
    snapshot |= partitions_[p].snapshot_needed;
  }
  return snapshot;
}

void FanIn::Install(std::shared_ptr<Source> source) {
  Source* raw = source.get();
  raw->snapshot_received = !raw->snapshot;
  // Attempts are reset once the source reports progress: a source refused at once (the
  // routing table lagging behind a move) backs off like any failed attempt.
  for (int32_t p : raw->partitions) {
    partitions_[p].source = raw;
    // It starts from the last PROGRESS: what it sends of the last record queued, and before
    // it, is what the previous source had sent beyond that PROGRESS.
    partitions_[p].resent = 0;
    partitions_[p].logged_redelivery = false;
  }
  if (raw->snapshot) {
    // This process's snapshot is handed out first: read on the subscriber's thread, it must
    // not be left for a notify from the ingestion thread.
    if (raw->local != nullptr) {
      snapshot_order_.push_front(raw);
    } else {
      snapshot_order_.push_back(raw);
    }
  }
  sources_.push_back(std::move(source));
}

void FanIn::OnLocalNotify(Source* source) {
  std::vector<ChangeEvent> changes;
  Progress progress;
  absl::Status end;
  bool notify = false;
  {
    absl::MutexLock lock(&mu_);
    if (ended_ || source->ended || source->local == nullptr) return;
    end = source->local->Take(SIZE_MAX, &changes, &progress);
    for (ChangeEvent& c : changes) {
      if (Redelivered(c)) continue;
      source->changed = true;
      notify = true;
      if (!queue_.Push(std::move(c))) {
        EndLocked(absl::OkStatus());  // the queue ended itself: RESOURCE_EXHAUSTED
        break;
      }
    }
    notify |= ended_;
    for (const auto& [p, next] : progress) {
      if (p >= 0 && p < info_.num_partitions && partitions_[p].source == source) {
        partitions_[p].at = next;
        partitions_[p].attempts = 0;
      }
    }
  }
  if (!end.ok()) OnSourceEnd(source, end, /*remote_done=*/false);
  if (notify) queue_.Notify();
  Release(/*destroy_locals=*/false);
}

bool FanIn::Redelivered(const ChangeEvent& change) {
  const int32_t p = change.partition.value();
  if (spec_.coalesce || change.offset < 0 || p < 0 || p >= info_.num_partitions) return false;
  PartitionState& state = partitions_[p];
  bool again = false;
  if (change.offset < state.last_offset) {
    again = true;
  } else if (change.offset > state.last_offset) {
    state.last_offset = change.offset;
    state.last_count = 0;
    state.resent = 0;
  } else if (state.resent < state.last_count) {
    ++state.resent;
    again = true;
  }
  if (again) {
    if (!state.logged_redelivery) {
      state.logged_redelivery = true;
      spdlog::info(
          "subscription to store {}: partition {} resumed below changes already sent (its "
          "previous owner ended between sending them and reporting their position); the "
          "repeated ones are dropped",
          info_.name, p);
    }
    return true;
  }
  ++state.last_count;
  ++state.resent;
  return false;
}

bool FanIn::OnPeerMessage(Source* source, kiq::v1::PeerChange message) {
  bool notify = false;
  bool read_on = true;
  {
    absl::MutexLock lock(&mu_);
    if (ended_ || source->ended) return false;
    switch (message.type()) {
      case kiq::v1::PeerChange::SNAPSHOT:
        source->buffer.push_back(KeyValue{std::move(*message.mutable_key()),
                                          std::move(*message.mutable_value()),
                                          PartitionId(message.partition())});
        notify = source->buffer.size() == 1;
        if (source->buffer.size() >= kSnapshotBuffer) {
          source->paused = true;
          source->remote->PauseHold();  // in a reaction: the stream cannot be done
          read_on = false;
        }
        break;
      case kiq::v1::PeerChange::SNAPSHOT_END:
        source->snapshot_received = true;
        for (int32_t p : source->partitions) partitions_[p].snapshot_needed = false;
        notify = true;
        break;
      case kiq::v1::PeerChange::CHANGE: {
        ChangeEvent change = FromPeerChange(std::move(message));
        if (Redelivered(change)) break;
        source->changed = true;
        if (!queue_.Push(std::move(change))) {
          EndLocked(absl::OkStatus());  // the queue ended itself: RESOURCE_EXHAUSTED
        }
        notify = true;
        break;
      }
      case kiq::v1::PeerChange::PROGRESS:
        for (const kiq::v1::PartitionOffset& po : message.progress()) {
          if (po.partition() >= 0 && po.partition() < info_.num_partitions &&
              partitions_[po.partition()].source == source) {
            partitions_[po.partition()].at = po.offset();
            partitions_[po.partition()].attempts = 0;
          }
        }
        break;
      default:
        break;
    }
    if (ended_) read_on = false;
  }
  if (notify) queue_.Notify();
  Release(/*destroy_locals=*/true);
  return read_on;
}

void FanIn::OnStreamFinished(Source* source) {
  bool release = false;
  {
    absl::MutexLock lock(&mu_);
    if (!source->hold_released) {
      source->hold_released = true;
      release = true;
    }
  }
  if (release) source->remote->Finished();
}

void FanIn::OnSourceEnd(Source* source, absl::Status status, bool remote_done) {
  bool wake = false;
  {
    absl::MutexLock lock(&mu_);
    if (remote_done) source->remote = nullptr;
    if (source->ended || ended_) {
      if (remote_done) source->hold_released = true;
    } else if (!IsRetriableRouting(status)) {
      EndLocked(status);
    } else {
      // A source that had been serving (not one refused at once, retried with a backoff).
      bool served = false;
      for (int32_t p : source->partitions) served |= partitions_[p].attempts == 0;
      if (served) {
        spdlog::info("subscription to store {}: {} ended ({}); placing partitions {} again",
                     info_.name, source->Name(), status.message(),
                     absl::StrJoin(source->partitions, ","));
      }
      for (int32_t p : source->partitions) {
        const PartitionState& state = partitions_[p];
        if (state.snapshot_needed && source->handed_out) {
          EndLocked(absl::AbortedError(
              absl::StrCat("Subscribe to store \"", info_.name, "\": partition ", p,
                           " moved while its snapshot was being sent; subscribe again")));
          break;
        }
        // Without a position, only a source that sent no change can be replaced afresh.
        if (!state.snapshot_needed && !state.at && source->changed) {
          EndLocked(absl::AbortedError(absl::StrCat(
              "Subscribe to store \"", info_.name, "\": partition ", p, " was lost by ",
              source->Name(), " before it reported a position; subscribe again")));
          break;
        }
      }
      if (!ended_) {
        const absl::Time now = absl::Now();
        for (int32_t p : source->partitions) {
          if (partitions_[p].attempts == 0) partitions_[p].pending_since = now;
          Retry(p, now);
        }
        Unplace(source);
        wake = true;
        if (served && cluster_.metrics != nullptr) {
          cluster_.metrics->RecordSubscriptionMove(info_.name);
        }
      }
    }
    if (remote_done) source->hold_released = true;
  }
  if (wake && placer_ != nullptr) placer_->Wake(weak_from_this());
  if (!wake) queue_.Notify();  // the subscriber learns the end
  Release(/*destroy_locals=*/remote_done);
}

void FanIn::Unplace(Source* source) {
  if (source->ended) return;
  source->ended = true;
  for (int32_t p : source->partitions) {
    if (partitions_[p].source == source) partitions_[p].source = nullptr;
  }
  // A snapshot not received in full is not handed out at all (the partitions snapshot again
  // at their next owner, or the subscription ends ABORTED if some of it went out already).
  if (!source->snapshot_received) {
    snapshot_order_.erase(std::remove(snapshot_order_.begin(), snapshot_order_.end(), source),
                          snapshot_order_.end());
    source->buffer.clear();
  }
  if (source->remote != nullptr && source->started && !source->hold_released) {
    source->hold_released = true;
    released_.stops.emplace_back(source->remote, source->paused);
    source->paused = false;
  }
  if (source->local != nullptr) released_.locals.push_back(std::move(source->local));
  for (auto it = sources_.begin(); it != sources_.end(); ++it) {
    if (it->get() == source) {
      ended_sources_.push_back(std::move(*it));
      sources_.erase(it);
      break;
    }
  }
}

void FanIn::EndLocked(absl::Status status) {
  if (ended_) return;
  ended_ = true;
  if (!status.ok()) queue_.End(status);
  std::vector<Source*> all;
  for (const auto& s : sources_) all.push_back(s.get());
  for (Source* s : all) Unplace(s);
  snapshot_order_.clear();
}

void FanIn::Release(bool destroy_locals) {
  Released released;
  {
    absl::MutexLock lock(&mu_);
    released.stops.swap(released_.stops);
    if (destroy_locals) released.locals.swap(released_.locals);
  }
  for (auto& [stream, paused] : released.stops) stream->Stop(paused);
  // released.locals are destroyed here, outside mu_ and outside their notify.
}

void FanIn::Close(absl::Status status) {
  {
    absl::MutexLock lock(&mu_);
    EndLocked(std::move(status));
  }
  Release(/*destroy_locals=*/true);
}

absl::StatusOr<SnapshotPage> FanIn::NextSnapshotPage(size_t limit) {
  SnapshotPage out;
  while (out.entries.size() < limit) {
    std::shared_ptr<Subscription> local;
    std::shared_ptr<Source> source;
    RemoteStream* resume = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (ended_) break;  // the end status comes with Take, after SNAPSHOT_END
      if (snapshot_order_.empty()) {
        out.done = std::none_of(partitions_.begin(), partitions_.end(),
                                [](const PartitionState& s) { return s.snapshot_needed; });
        break;
      }
      source = Find(snapshot_order_.front());
      if (source->local != nullptr && !source->snapshot_received) {
        local = source->local;
      } else {
        while (!source->buffer.empty() && out.entries.size() < limit) {
          out.entries.push_back(std::move(source->buffer.front()));
          source->buffer.pop_front();
          source->handed_out = true;
        }
        const bool drained = source->buffer.empty();
        if (drained && source->snapshot_received) {
          snapshot_order_.pop_front();
        } else if (source->paused && source->buffer.size() < kSnapshotBuffer / 2 &&
                   !source->hold_released) {
          source->paused = false;
          resume = source->remote;
        }
        if (resume == nullptr && drained && !source->snapshot_received) {
          break;  // waiting for the owner; it notifies
        }
      }
    }
    if (resume != nullptr) {
      resume->Resume();
      continue;
    }
    if (local == nullptr) continue;
    absl::StatusOr<SnapshotPage> page = local->NextSnapshotPage(limit - out.entries.size());
    if (!page.ok()) return page.status();
    absl::MutexLock lock(&mu_);
    // Moved while we read: its partitions snapshot again elsewhere; drop the page.
    if (source->ended && !source->snapshot_received) continue;
    if (!page->entries.empty()) source->handed_out = true;
    for (KeyValue& kv : page->entries) out.entries.push_back(std::move(kv));
    if (page->done && !source->snapshot_received) {
      source->snapshot_received = true;
      for (int32_t p : source->partitions) {
        if (partitions_[p].source == source.get()) partitions_[p].snapshot_needed = false;
      }
      snapshot_order_.erase(
          std::remove(snapshot_order_.begin(), snapshot_order_.end(), source.get()),
          snapshot_order_.end());
    }
  }
  // Ended: report done so that the stream moves on and meets the end status in Take.
  if (ended()) out.done = true;
  return out;
}

SubscriptionPlacer::~SubscriptionPlacer() {
  std::unique_ptr<std::thread> thread;
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
    thread = std::move(thread_);
  }
  if (thread != nullptr) thread->join();
}

void SubscriptionPlacer::Wake(std::weak_ptr<FanIn> fan_in) {
  absl::MutexLock lock(&mu_);
  if (stop_) return;
  pending_.push_back(std::move(fan_in));
  woken_ = true;
  if (thread_ == nullptr) {
    thread_ = std::make_unique<std::thread>([this] {
      NameThisThread("kiq-sub-placer");
      Run();
    });
  }
}

void SubscriptionPlacer::Run() {
  for (;;) {
    std::vector<std::weak_ptr<FanIn>> work;
    {
      absl::MutexLock lock(&mu_);
      auto woken_or_stopped = [this]()
                                  ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return woken_ || stop_; };
      mu_.AwaitWithTimeout(absl::Condition(&woken_or_stopped), absl::Milliseconds(100));
      if (stop_) return;
      woken_ = false;
      work.swap(pending_);
    }
    std::vector<std::weak_ptr<FanIn>> still;
    for (std::weak_ptr<FanIn>& weak : work) {
      std::shared_ptr<FanIn> fan_in = weak.lock();
      if (fan_in == nullptr) continue;
      bool duplicate = false;
      for (const auto& s : still) duplicate |= s.lock() == fan_in;
      if (duplicate) continue;
      if (fan_in->PlacePending()) still.push_back(fan_in);
    }
    absl::MutexLock lock(&mu_);
    for (auto& s : still) pending_.push_back(std::move(s));
  }
}

}  // namespace kiq::router
