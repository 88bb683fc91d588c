#include "node/local_stores_impl.h"

#include <algorithm>

#include <functional>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "common/topology/value_codec.h"
#include "common/topology/window_key.h"

namespace kiq::node {
namespace {

// A subscriber of this node's hub, with the snapshot taken when it registered.
class LocalSubscription final : public router::Subscription {
 public:
  // `keep` filters snapshot entries (windowed stores: expired windows); may be empty.
  LocalSubscription(SubscriptionHub& hub, std::shared_ptr<Subscriber> subscriber,
                    const StoreEngine& engine, std::vector<int32_t> snapshot_partitions,
                    std::shared_ptr<const rocksdb::Snapshot> snapshot,
                    std::function<bool(PartitionId, const router::KeyValue&)> keep)
      : hub_(hub),
        subscriber_(std::move(subscriber)),
        engine_(engine),
        snapshot_partitions_(std::move(snapshot_partitions)),
        snapshot_(std::move(snapshot)),
        keep_(std::move(keep)) {}

  ~LocalSubscription() override {
    subscriber_->queue->SetNotify(nullptr);
    hub_.Unregister(subscriber_.get());
  }

  absl::StatusOr<router::SnapshotPage> NextSnapshotPage(size_t limit) override {
    router::SnapshotPage out;
    const router::KeyMatch& match = subscriber_->match;
    router::KeyRange range;
    if (match.kind == router::KeyMatch::Kind::kKey) {
      range.from = match.text;
      // A windowed key's windows follow it: the key and its 8-byte window start.
      range.to = match.windowed ? match.text + std::string(kWindowSuffixSize, '\xff') : match.text;
    } else if (match.kind == router::KeyMatch::Kind::kPrefix) {
      range.from = match.text;
    }
    while (snapshot_ != nullptr && next_ < snapshot_partitions_.size() &&
           out.entries.size() < limit) {
      const PartitionId p(snapshot_partitions_[next_]);
      const size_t want = limit - out.entries.size();
      absl::StatusOr<std::vector<router::KeyValue>> page =
          engine_.Scan(subscriber_->store, p, range, after_, want, snapshot_.get());
      if (!page.ok()) return page.status();
      bool partition_done = page->size() < want;
      for (router::KeyValue& kv : *page) {
        // Keys are in byte order: the first one without the prefix ends the partition's run.
        if (match.kind == router::KeyMatch::Kind::kPrefix &&
            !absl::StartsWith(kv.key, match.text)) {
          partition_done = true;
          break;
        }
        after_ = kv.key;
        if (!match.Matches(kv.key) || (keep_ && !keep_(p, kv))) continue;
        out.entries.push_back(std::move(kv));
      }
      if (partition_done) {
        ++next_;
        after_.reset();
      }
    }
    if (snapshot_ == nullptr || next_ >= snapshot_partitions_.size()) {
      snapshot_.reset();  // release RocksDB's view early
      out.done = true;
    }
    return out;
  }

  absl::Status Take(size_t max, std::vector<router::ChangeEvent>* out,
                    router::Progress* progress) override {
    return subscriber_->queue->Take(max, out, progress);
  }
  void SetNotify(std::function<void()> notify) override {
    subscriber_->queue->SetNotify(std::move(notify));
  }

 private:
  SubscriptionHub& hub_;
  const std::shared_ptr<Subscriber> subscriber_;
  const StoreEngine& engine_;
  const std::vector<int32_t> snapshot_partitions_;
  std::shared_ptr<const rocksdb::Snapshot> snapshot_;
  const std::function<bool(PartitionId, const router::KeyValue&)> keep_;
  size_t next_ = 0;  // index into snapshot_partitions_
  std::optional<std::string> after_;
};

}  // namespace

absl::StatusOr<const CompiledStore*> LocalStoresImpl::Find(absl::string_view store) const {
  const CompiledStore* found = topology_.FindStore(store);
  if (found == nullptr) return absl::NotFoundError(absl::StrCat("unknown store ", ClipKey(store)));
  return found;
}

absl::StatusOr<StoreInfo> LocalStoresImpl::Describe(absl::string_view store) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  return (*found)->info;
}

std::vector<StoreInfo> LocalStoresImpl::ListStores() const {
  std::vector<StoreInfo> out;
  for (const CompiledStore& store : topology_.stores()) {
    if (!store.internal) out.push_back(store.info);
  }
  return out;
}

absl::Status LocalStoresImpl::CheckReadable(absl::string_view store, PartitionId p) const {
  if (absl::StatusOr<const CompiledStore*> found = Find(store); !found.ok()) return found.status();
  return states_.CheckReadable(p);
}

absl::StatusOr<std::optional<std::string>> LocalStoresImpl::Get(absl::string_view store,
                                                                PartitionId p,
                                                                absl::string_view key) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  if ((*found)->window) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store \"", store, "\" is windowed: use WindowFetch to read the windows of a key"));
  }
  return engine_.Get((*found)->handle, p, key);
}

absl::StatusOr<std::optional<int64_t>> LocalStoresImpl::StreamTime(const CompiledStore& store,
                                                                   PartitionId p) const {
  absl::StatusOr<std::optional<std::string>> stored = engine_.Get(store.handle, p, kStreamTimeKey);
  if (!stored.ok()) return stored.status();
  if (!*stored) return std::optional<int64_t>();
  std::optional<int64_t> t = DecodeInt64(**stored);
  if (!t) {
    return absl::DataLossError(absl::StrCat("store \"", store.info.name, "\" partition ", p.value(),
                                            ": stream time entry is not 8 bytes"));
  }
  return t;
}

absl::StatusOr<std::vector<router::KeyValue>> LocalStoresImpl::ScanWindows(
    const CompiledStore& store, PartitionId p, const router::KeyRange& range,
    const std::optional<std::string>& after, size_t limit) const {
  // Read the stream time first: windows it expires are not answered even if the sweep has
  // not deleted them yet.
  absl::StatusOr<std::optional<int64_t>> stream_time = StreamTime(store, p);
  if (!stream_time.ok()) return stream_time.status();
  // Stored keys of user keys in [from, to] lie in [from, to + 0xff * 8] but so may keys of
  // other user keys (longer ones sharing a prefix): every entry's user key is checked.
  router::KeyRange stored_range;
  stored_range.from = range.from;
  if (range.to) stored_range.to = *range.to + std::string(kWindowSuffixSize, '\xff');
  std::vector<router::KeyValue> out;
  std::optional<std::string> cursor = after;
  const size_t step = std::clamp<size_t>(limit, 64, 4096);
  while (out.size() < limit) {
    absl::StatusOr<std::vector<router::KeyValue>> run =
        engine_.Scan(store.handle, p, stored_range, cursor, step);
    if (!run.ok()) return run.status();
    for (router::KeyValue& kv : *run) {
      std::optional<DecodedWindowKey> w = DecodeWindowKey(kv.key);
      if (!w) continue;  // the stream time
      if ((range.from && w->user_key < *range.from) || (range.to && w->user_key > *range.to)) {
        continue;
      }
      if (*stream_time && WindowExpired(*store.window, w->start_ms, **stream_time)) continue;
      out.push_back(std::move(kv));
      if (out.size() == limit) break;
    }
    if (run->size() < step) break;
    cursor = run->back().key;
  }
  return out;
}

absl::StatusOr<std::vector<router::KeyValue>> LocalStoresImpl::Scan(
    absl::string_view store, PartitionId p, const router::KeyRange& range,
    const std::optional<std::string>& after, size_t limit) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  if ((*found)->window) return ScanWindows(**found, p, range, after, limit);
  return engine_.Scan((*found)->handle, p, range, after, limit);
}

absl::StatusOr<int64_t> LocalStoresImpl::EntryCount(absl::string_view store,
                                                          PartitionId p) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  if ((*found)->window) {
    // Exact for windowed stores: live windows only (no stream time, no expired window).
    constexpr size_t kPage = 4096;
    int64_t n = 0;
    std::optional<std::string> after;
    for (;;) {
      absl::StatusOr<std::vector<router::KeyValue>> live =
          ScanWindows(**found, p, router::KeyRange{}, after, kPage);
      if (!live.ok()) return live.status();
      n += static_cast<int64_t>(live->size());
      if (live->size() < kPage) return n;
      after = live->back().key;
    }
  }
  return engine_.EntryCount((*found)->handle, p);
}

void LocalStoresImpl::AppendPosition(absl::string_view store, PartitionId p,
                                     kiq::v1::Position* out) const {
  AppendPositionFrom(positions_, store, p, out);
}

void LocalStoresImpl::AppendPositionFrom(const PositionTracker& positions,
                                         absl::string_view store, PartitionId p,
                                         kiq::v1::Position* out) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return;
  const CompiledSource& source = topology_.sources()[(*found)->source];
  std::optional<Offset> next = positions.Get(store, source.spec.topic(), p);
  kiq::v1::PartitionOffset* po = out->add_offsets();
  po->set_topic(source.spec.topic());
  po->set_partition(p.value());
  po->set_offset(next ? next->value() : 0);
}

absl::Status LocalStoresImpl::ReadAt(absl::string_view store, PartitionId p, kiq::v1::Position* out,
                                     absl::FunctionRef<absl::Status()> read) const {
  return ReadExactly(positions_, store, p, out, read, [&] { return CheckReadable(store, p); });
}

absl::Status LocalStoresImpl::CheckStandby(absl::string_view store, PartitionId p,
                                           int64_t max_lag_records) const {
  if (absl::StatusOr<const CompiledStore*> found = Find(store); !found.ok()) return found.status();
  if (standby_ == nullptr) return router::LocalStores::CheckStandby(store, p, max_lag_records);
  return standby_->CheckReadable(store, p, max_lag_records).status();
}

absl::Status LocalStoresImpl::ReadStandbyAt(absl::string_view store, PartitionId p,
                                            int64_t max_lag_records, kiq::v1::Position* out,
                                            int64_t* lag,
                                            absl::FunctionRef<absl::Status()> read) const {
  if (absl::StatusOr<const CompiledStore*> found = Find(store); !found.ok()) return found.status();
  if (standby_ == nullptr) {
    return router::LocalStores::ReadStandbyAt(store, p, max_lag_records, out, lag, read);
  }
  absl::StatusOr<int64_t> behind = standby_->CheckReadable(store, p, max_lag_records);
  if (!behind.ok()) return behind.status();
  *lag = *behind;
  return ReadExactly(standby_->positions(), store, p, out, read, [&] {
    return standby_->CheckReadable(store, p, /*max_lag_records=*/0).status();
  });
}

absl::Status LocalStoresImpl::ReadExactly(const PositionTracker& positions,
                                          absl::string_view store, PartitionId p,
                                          kiq::v1::Position* out,
                                          absl::FunctionRef<absl::Status()> read,
                                          absl::FunctionRef<absl::Status()> check) const {
  // A seqlock's reader: a read takes microseconds and batches commit every few milliseconds
  // at most, so a retry is rare; a reader that keeps losing the race (or waits too long for a
  // slow commit) settles for a lower bound.
  constexpr int kExactAttempts = 8;
  constexpr absl::Duration kCommitWait = absl::Milliseconds(200);
  for (int attempt = 0; attempt < kExactAttempts; ++attempt) {
    const uint64_t before = positions.AwaitNoCommit(kCommitWait);
    if (PositionTracker::Committing(before)) break;  // one that does not end (a stalled disk)
    kiq::v1::Position position;
    AppendPositionFrom(positions, store, p, &position);
    if (absl::Status s = read(); !s.ok()) return s;
    if (positions.CommitSequence() == before) {
      // While readable every write is a bracketed commit; a partition revoked (or restoring)
      // meanwhile is answered elsewhere.
      if (absl::Status s = check(); !s.ok()) return s;
      out->MergeFrom(position);
      return absl::OkStatus();
    }
  }
  AppendPositionFrom(positions, store, p, out);
  if (absl::Status s = read(); !s.ok()) return s;
  return check();
}

absl::Status LocalStoresImpl::WaitForPosition(absl::string_view store, const kiq::v1::Position& min,
                                              absl::Time deadline) const {
  return positions_.WaitFor(store, min, deadline);
}

absl::StatusOr<std::unique_ptr<router::Subscription>> LocalStoresImpl::Subscribe(
    const router::SubscribeSpec& spec) const {
  absl::StatusOr<const CompiledStore*> found = Find(spec.store);
  if (!found.ok()) return found.status();
  if (hub_ == nullptr) return router::LocalStores::Subscribe(spec);
  const CompiledStore& store = **found;
  std::vector<int32_t> partitions = spec.partitions;
  if (partitions.empty()) {
    for (int32_t p = 0; p < store.info.num_partitions; ++p) partitions.push_back(p);
  }
  for (int32_t p : partitions) {
    if (p < 0 || p >= store.info.num_partitions) {
      return absl::InvalidArgumentError(absl::StrCat("store \"", spec.store, "\" has ",
                                                     store.info.num_partitions,
                                                     " partitions; no partition ", p));
    }
  }
  router::KeyMatch match = spec.match;
  match.windowed = store.window.has_value();
  // Resumed partitions continue where they were: no snapshot of them.
  std::vector<int32_t> snapshot_partitions;
  for (int32_t p : partitions) {
    if (spec.resume.count(p) == 0) snapshot_partitions.push_back(p);
  }
  std::shared_ptr<const rocksdb::Snapshot> snapshot;
  std::function<bool(PartitionId, const router::KeyValue&)> keep;
  // At a batch boundary: no batch commits between the ownership check, the registration and
  // the snapshot, so the snapshot is exactly the state before the first queued change.
  absl::StatusOr<std::shared_ptr<Subscriber>> subscriber = hub_->Subscribe(
      store.handle, store.info.name, match, partitions, spec.resume, spec.buffer_size,
      spec.coalesce, absl::Seconds(10),
      [&]() -> absl::Status {
        std::vector<std::string> unavailable;
        for (int32_t p : partitions) {
          if (absl::Status s = states_.CheckReadable(PartitionId(p)); !s.ok()) {
            unavailable.push_back(absl::StrCat(p, " (", s.message(), ")"));
          }
        }
        if (unavailable.empty()) return absl::OkStatus();
        return absl::UnavailableError(absl::StrCat(
            "Subscribe to store \"", spec.store,
            "\": partitions not readable on this node: ", absl::StrJoin(unavailable, ", ")));
      },
      [&]() -> absl::Status {
        if (!spec.snapshot || snapshot_partitions.empty()) return absl::OkStatus();
        snapshot = engine_.NewSnapshot();
        if (!store.window) return absl::OkStatus();
        // Stream times as of the snapshot (no commit in between): expired windows are left
        // out, as every read of a windowed store does.
        absl::flat_hash_map<int32_t, int64_t> stream_times;
        for (int32_t p : snapshot_partitions) {
          absl::StatusOr<std::optional<int64_t>> t = StreamTime(store, PartitionId(p));
          if (!t.ok()) return t.status();
          if (*t) stream_times[p] = **t;
        }
        keep = [window = *store.window, stream_times](PartitionId p, const router::KeyValue& kv) {
          auto t = stream_times.find(p.value());
          std::optional<DecodedWindowKey> w = DecodeWindowKey(kv.key);
          return w && (t == stream_times.end() || !WindowExpired(window, w->start_ms, t->second));
        };
        return absl::OkStatus();
      });
  if (!subscriber.ok()) return subscriber.status();
  return std::unique_ptr<router::Subscription>(
      new LocalSubscription(*hub_, std::move(*subscriber), engine_, std::move(snapshot_partitions),
                            std::move(snapshot), std::move(keep)));
}

}  // namespace kiq::node
