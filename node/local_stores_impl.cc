#include "node/local_stores_impl.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kiq::node {
namespace {

// A subscriber of this node's hub, with the snapshot taken when it registered.
class LocalSubscription final : public router::Subscription {
 public:
  LocalSubscription(SubscriptionHub& hub, std::shared_ptr<SubscriberQueue> queue,
                    const StoreEngine& engine, StoreHandle store, int32_t num_partitions,
                    router::KeyMatch match, std::shared_ptr<const rocksdb::Snapshot> snapshot)
      : hub_(hub),
        queue_(std::move(queue)),
        engine_(engine),
        store_(store),
        num_partitions_(num_partitions),
        match_(std::move(match)),
        snapshot_(std::move(snapshot)) {}

  ~LocalSubscription() override {
    queue_->SetNotify(nullptr);
    hub_.Unregister(queue_.get());
  }

  absl::StatusOr<std::vector<router::KeyValue>> NextSnapshotPage(size_t limit) override {
    std::vector<router::KeyValue> out;
    if (snapshot_ == nullptr) return out;
    router::KeyRange range;
    if (match_.kind == router::KeyMatch::Kind::kKey) {
      range.from = match_.text;
      range.to = match_.text;
    } else if (match_.kind == router::KeyMatch::Kind::kPrefix) {
      range.from = match_.text;
    }
    while (partition_ < num_partitions_ && out.size() < limit) {
      absl::StatusOr<std::vector<router::KeyValue>> page = engine_.Scan(
          store_, PartitionId(partition_), range, after_, limit - out.size(), snapshot_.get());
      if (!page.ok()) return page.status();
      bool partition_done = page->size() < limit - out.size();
      for (router::KeyValue& kv : *page) {
        // Keys are in byte order: the first one without the prefix ends the partition's run.
        if (!match_.Matches(kv.key)) {
          partition_done = true;
          break;
        }
        after_ = kv.key;
        out.push_back(std::move(kv));
      }
      if (partition_done) {
        ++partition_;
        after_.reset();
      }
    }
    if (partition_ >= num_partitions_) snapshot_.reset();  // release RocksDB's view early
    return out;
  }

  absl::Status Take(size_t max, std::vector<router::ChangeEvent>* out) override {
    return queue_->Take(max, out);
  }
  void SetNotify(std::function<void()> notify) override { queue_->SetNotify(std::move(notify)); }

 private:
  SubscriptionHub& hub_;
  const std::shared_ptr<SubscriberQueue> queue_;
  const StoreEngine& engine_;
  const StoreHandle store_;
  const int32_t num_partitions_;
  const router::KeyMatch match_;
  std::shared_ptr<const rocksdb::Snapshot> snapshot_;
  int32_t partition_ = 0;
  std::optional<std::string> after_;
};

}  // namespace

absl::StatusOr<const CompiledStore*> LocalStoresImpl::Find(absl::string_view store) const {
  const CompiledStore* found = topology_.FindStore(store);
  if (found == nullptr) return absl::NotFoundError(absl::StrCat("unknown store \"", store, "\""));
  return found;
}

absl::StatusOr<router::StoreInfo> LocalStoresImpl::Describe(absl::string_view store) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  return (*found)->info;
}

std::vector<router::StoreInfo> LocalStoresImpl::ListStores() const {
  std::vector<router::StoreInfo> out;
  for (const CompiledStore& store : topology_.stores()) out.push_back(store.info);
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
  return engine_.Get((*found)->handle, p, key);
}

absl::StatusOr<std::vector<router::KeyValue>> LocalStoresImpl::Scan(
    absl::string_view store, PartitionId p, const router::KeyRange& range,
    const std::optional<std::string>& after, size_t limit) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  return engine_.Scan((*found)->handle, p, range, after, limit);
}

absl::StatusOr<int64_t> LocalStoresImpl::ApproximateCount(absl::string_view store,
                                                          PartitionId p) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return found.status();
  return engine_.EntryCount((*found)->handle, p);
}

void LocalStoresImpl::AppendPosition(absl::string_view store, PartitionId p,
                                     kiq::v1::Position* out) const {
  absl::StatusOr<const CompiledStore*> found = Find(store);
  if (!found.ok()) return;
  const CompiledSource& source = topology_.sources()[(*found)->source];
  std::optional<Offset> next = positions_.Get(store, source.spec.topic(), p);
  kiq::v1::PartitionOffset* po = out->add_offsets();
  po->set_topic(source.spec.topic());
  po->set_partition(p.value());
  po->set_offset(next ? next->value() : 0);
}

absl::Status LocalStoresImpl::WaitForPosition(absl::string_view store,
                                              const kiq::v1::Position& min,
                                              absl::Time deadline) const {
  return positions_.WaitFor(store, min, deadline);
}

absl::StatusOr<std::unique_ptr<router::Subscription>> LocalStoresImpl::Subscribe(
    const router::SubscribeSpec& spec) const {
  absl::StatusOr<const CompiledStore*> found = Find(spec.store);
  if (!found.ok()) return found.status();
  if (hub_ == nullptr) return router::LocalStores::Subscribe(spec);
  const CompiledStore& store = **found;
  // Under the commit lock: no batch commits between the ownership check, the registration and
  // the snapshot, so the snapshot is exactly the state before the first queued change.
  // Batches started from now on log every change; one already under way without a log must
  // be committed before we register (it would reach us folded to one change per key).
  hub_->Announce(1);
  absl::MutexLock commit(&hub_->commit_mutex());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  bool timed_out = false;
  while (hub_->untracked_batch() && !timed_out) {
    timed_out = hub_->committed().WaitWithDeadline(&hub_->commit_mutex(), deadline);
  }
  if (hub_->untracked_batch()) {
    hub_->Announce(-1);
    return absl::UnavailableError(absl::StrCat(
        "Subscribe to store \"", spec.store,
        "\": the ingestion batch under way was not committed within 10s; try again"));
  }
  std::vector<std::string> unavailable;
  for (int32_t p = 0; p < store.info.num_partitions; ++p) {
    if (absl::Status s = states_.CheckReadable(PartitionId(p)); !s.ok()) {
      unavailable.push_back(absl::StrCat(p, " (", s.message(), ")"));
    }
  }
  if (!unavailable.empty()) {
    hub_->Announce(-1);
    return absl::UnavailableError(absl::StrCat(
        "Subscribe to store \"", spec.store, "\" on this node needs every partition ACTIVE here; "
        "not readable here: ", absl::StrJoin(unavailable, ", "),
        ". Subscribe through a node that holds all partitions (fan-in across nodes is not "
        "supported yet)"));
  }
  std::shared_ptr<SubscriberQueue> queue =
      hub_->Register(store.handle, spec.match, spec.buffer_size, spec.coalesce);
  hub_->Announce(-1);  // counted as registered now
  std::shared_ptr<const rocksdb::Snapshot> snapshot;
  if (spec.snapshot) snapshot = engine_.NewSnapshot();
  return std::unique_ptr<router::Subscription>(new LocalSubscription(
      *hub_, std::move(queue), engine_, store.handle, store.info.num_partitions, spec.match,
      std::move(snapshot)));
}

}  // namespace kiq::node
