#include "router/fan_in.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kiq/v1/membership.pb.h"
#include "router/peer_pool.h"
#include "router/peer_service.h"
#include "router/port/change_queue.h"
#include "router/port/local_stores.h"
#include "router/port/subscription.h"
#include "router/query_metrics.h"
#include "router/routing_table.h"
#include "router/thread_pool.h"
#include "tests/testing/status_matchers.h"

namespace kiq::router {
namespace {

using ::kiq::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

constexpr char kStore[] = "orders";
constexpr char kTopic[] = "orders-topic";
constexpr char kSelf[] = "self";
constexpr int32_t kPartitions = 6;
// How long any wait of these tests may take before it counts as a failure (a wait that
// succeeds returns as soon as its condition holds).
constexpr absl::Duration kWait = absl::Seconds(10);

StoreInfo Info() {
  StoreInfo info;
  info.name = kStore;
  info.kind = "table";
  info.num_partitions = kPartitions;
  return info;
}

// A change or snapshot entry as one comparable line.
std::string Show(const ChangeEvent& c) {
  return absl::StrCat("p", c.partition.value(), " ", c.key, " ", c.old_value.value_or("(none)"),
                      " -> ", c.new_value.value_or("(deleted)"), " @", c.offset);
}
std::string Show(const KeyValue& kv) {
  return absl::StrCat("p", kv.partition.value(), " ", kv.key, "=", kv.value);
}
template <typename T>
std::vector<std::string> Shown(const std::vector<T>& items) {
  std::vector<std::string> out;
  for (const T& item : items) out.push_back(Show(item));
  return out;
}
template <typename T>
std::vector<std::string> SortedShown(const std::vector<T>& items) {
  std::vector<std::string> out = Shown(items);
  std::sort(out.begin(), out.end());
  return out;
}

// The changes of partition `p` among `changes`, in the order they came.
std::vector<std::string> ShownOf(int32_t p, const std::vector<ChangeEvent>& changes) {
  std::vector<ChangeEvent> of;
  for (const ChangeEvent& c : changes) {
    if (c.partition.value() == p) of.push_back(c);
  }
  return Shown(of);
}

// The record at offset `o` of partition `p` in these tests' source topic: a few keys written
// over and over, sometimes deleted.
std::string KeyAt(int32_t p, int64_t o) { return absl::StrCat("p", p, "-k", o % 4); }
std::optional<std::string> ValueAt(int32_t p, int64_t o) {
  if (o % 5 == 4) return std::nullopt;
  return absl::StrCat("v", p, ".", o);
}

// The partitions a spec asks for (empty: all of them).
std::vector<int32_t> PartitionsOf(const SubscribeSpec& spec) {
  if (!spec.partitions.empty()) return spec.partitions;
  std::vector<int32_t> all;
  for (int32_t p = 0; p < kPartitions; ++p) all.push_back(p);
  return all;
}

// One subscription a FakeLocalStores handed out, as a node's subscription hub would hold it:
// what it was asked, the snapshot taken when it registered, and the queue its changes go to.
// Thread-safe.
class FakeFeed {
 public:
  FakeFeed(SubscribeSpec spec, std::vector<KeyValue> snapshot, size_t hold_snapshot_after)
      : spec_(std::move(spec)),
        queue_(spec_.buffer_size == 0 ? 10000 : spec_.buffer_size, spec_.coalesce),
        snapshot_(std::move(snapshot)),
        hold_after_(hold_snapshot_after) {}

  const SubscribeSpec& spec() const { return spec_; }
  ChangeQueue& queue() { return queue_; }

  bool Follows(int32_t p) const {
    const std::vector<int32_t> all = PartitionsOf(spec_);
    return std::find(all.begin(), all.end(), p) != all.end();
  }
  // What the hub would queue for this subscriber: its partitions and keys, and nothing before
  // the position it resumed from (changes a new owner makes again).
  bool Wants(const ChangeEvent& c) const {
    if (!Follows(c.partition.value()) || !spec_.match.Matches(c.key)) return false;
    auto resumed = spec_.resume.find(c.partition.value());
    return resumed == spec_.resume.end() || c.offset >= resumed->second;
  }
  bool live() const { return !closed() && !queue_.ended(); }

  // Ends it as a revoke would: the queue ends with `status` after what it holds, and a snapshot
  // still being read fails with it.
  void End(absl::Status status) {
    {
      absl::MutexLock lock(&mu_);
      end_ = status;
    }
    queue_.End(std::move(status));
  }

  absl::StatusOr<SnapshotPage> NextSnapshotPage(size_t limit) {
    absl::MutexLock lock(&mu_);
    SnapshotPage page;
    if (!end_.ok() && next_ < snapshot_.size()) return end_;
    while (next_ < snapshot_.size() && next_ < hold_after_ && page.entries.size() < limit) {
      page.entries.push_back(snapshot_[next_++]);
    }
    page.done = next_ == snapshot_.size();
    return page;
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  bool closed() const {
    absl::MutexLock lock(&mu_);
    return closed_;
  }
  // Waits until the subscription was destroyed (its reader let go of it).
  bool WaitClosed() const {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&closed_), kWait);
  }
  // Waits until `n` snapshot entries were read from it.
  bool WaitSnapshotServed(size_t n) const {
    auto served = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return next_ >= n; };
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&served), kWait);
  }

 private:
  const SubscribeSpec spec_;
  ChangeQueue queue_;
  mutable absl::Mutex mu_;
  const std::vector<KeyValue> snapshot_;
  const size_t hold_after_;
  size_t next_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status end_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// The Subscription a FakeLocalStores hands out: a face of its feed.
class FakeSubscription final : public Subscription {
 public:
  explicit FakeSubscription(std::shared_ptr<FakeFeed> feed) : feed_(std::move(feed)) {}
  ~FakeSubscription() override {
    feed_->queue().SetNotify(nullptr);
    feed_->Close();
  }
  absl::StatusOr<SnapshotPage> NextSnapshotPage(size_t limit) override {
    return feed_->NextSnapshotPage(limit);
  }
  absl::Status Take(size_t max, std::vector<ChangeEvent>* out, Progress* progress) override {
    return feed_->queue().Take(max, out, progress);
  }
  void SetNotify(std::function<void()> notify) override {
    feed_->queue().SetNotify(std::move(notify));
  }

 private:
  const std::shared_ptr<FakeFeed> feed_;
};

// One node's partitions of the store, in memory, with the part of a subscription hub that a
// fan-in sees: Make commits a change and publishes it to the live subscriptions (after the
// batch boundary their snapshot was taken at), Advance publishes progress, and a subscription
// that resumes a partition gets what this node made from the resume position on (its replay
// log) and nothing before it. Thread-safe.
class FakeLocalStores : public LocalStores {
 public:
  // `partitions` are ACTIVE here; this node can replay their changes from `log_start` on.
  void Own(const std::vector<int32_t>& partitions, int64_t log_start = 0) {
    absl::MutexLock lock(&mu_);
    for (int32_t p : partitions) {
      owned_[p] = absl::OkStatus();
      log_start_[p] = log_start;
    }
  }
  // `partitions` are no longer here: CheckReadable and Subscribe answer `why`.
  void Disown(const std::vector<int32_t>& partitions, const absl::Status& why) {
    absl::MutexLock lock(&mu_);
    for (int32_t p : partitions) owned_[p] = why;
  }
  // State restored without a change (what a snapshot shows).
  void SetEntry(int32_t p, const std::string& key, const std::optional<std::string>& value) {
    absl::MutexLock lock(&mu_);
    Apply(p, key, value);
  }
  // Subscribe answers `status` from now on.
  void FailSubscribe(absl::Status status) {
    absl::MutexLock lock(&mu_);
    fail_ = std::move(status);
  }
  // Snapshots of later subscriptions stop after `n` entries, as if still being read.
  void HoldSnapshotsAfter(size_t n) {
    absl::MutexLock lock(&mu_);
    hold_after_ = n;
  }

  // Commits a change to `key` made by the record at `offset` and publishes it.
  ChangeEvent Make(int32_t p, const std::string& key, const std::optional<std::string>& value,
                   int64_t offset) {
    std::vector<std::shared_ptr<FakeFeed>> notify;
    ChangeEvent change;
    {
      absl::MutexLock lock(&mu_);
      change.partition = PartitionId(p);
      change.key = key;
      auto it = state_[p].find(key);
      if (it != state_[p].end()) change.old_value = it->second;
      change.new_value = value;
      change.topic = kTopic;
      change.offset = offset;
      Apply(p, key, value);
      log_[p].push_back(change);
      // Queued under the lock, so that every subscription sees the changes in the order made.
      for (const std::shared_ptr<FakeFeed>& feed : feeds_) {
        if (feed->live() && feed->Wants(change)) {
          feed->queue().Push(change);
          notify.push_back(feed);
        }
      }
    }
    for (const auto& feed : notify) feed->queue().Notify();
    return change;
  }
  // The record at offset `o` of the test topic, made here.
  ChangeEvent MakeAt(int32_t p, int64_t o) { return Make(p, KeyAt(p, o), ValueAt(p, o), o); }

  // Every change of `p` before `next` was published.
  void Advance(int32_t p, int64_t next) {
    std::vector<std::shared_ptr<FakeFeed>> notify;
    {
      absl::MutexLock lock(&mu_);
      for (const std::shared_ptr<FakeFeed>& feed : feeds_) {
        if (feed->live() && feed->Follows(p) && feed->queue().Advance(p, next)) {
          notify.push_back(feed);
        }
      }
    }
    for (const auto& feed : notify) feed->queue().Notify();
  }

  // Ends every live subscription that follows `p` with `status` (the partition was revoked).
  void EndFeeds(int32_t p, const absl::Status& status) {
    std::vector<std::shared_ptr<FakeFeed>> end;
    {
      absl::MutexLock lock(&mu_);
      for (const std::shared_ptr<FakeFeed>& feed : feeds_) {
        if (feed->live() && feed->Follows(p)) end.push_back(feed);
      }
    }
    for (const auto& feed : end) feed->End(status);
  }

  std::map<std::string, std::string> State(int32_t p) const {
    absl::MutexLock lock(&mu_);
    auto it = state_.find(p);
    return it == state_.end() ? std::map<std::string, std::string>() : it->second;
  }
  std::vector<std::shared_ptr<FakeFeed>> feeds() const {
    absl::MutexLock lock(&mu_);
    return feeds_;
  }
  int subscribe_calls() const {
    absl::MutexLock lock(&mu_);
    return subscribe_calls_;
  }
  // The `index`-th subscription this node registered, once it has; nullptr after kWait.
  std::shared_ptr<FakeFeed> WaitForFeed(size_t index) const {
    auto registered = [this, index]()
                          ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return feeds_.size() > index; };
    absl::MutexLock lock(&mu_);
    if (!mu_.AwaitWithTimeout(absl::Condition(&registered), kWait)) return nullptr;
    return feeds_[index];
  }
  bool WaitForSubscribeCalls(int n) const {
    auto called = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return subscribe_calls_ >= n; };
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&called), kWait);
  }

  // LocalStores:
  absl::StatusOr<StoreInfo> Describe(absl::string_view store) const override {
    if (store != kStore) return absl::NotFoundError(absl::StrCat("unknown store \"", store, "\""));
    return Info();
  }
  std::vector<StoreInfo> ListStores() const override { return {Info()}; }
  absl::Status CheckReadable(absl::string_view store, PartitionId p) const override {
    if (store != kStore) return absl::NotFoundError(absl::StrCat("unknown store \"", store, "\""));
    absl::MutexLock lock(&mu_);
    return OwnedLocked(p.value());
  }
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view, PartitionId,
                                                 absl::string_view) const override {
    return absl::UnimplementedError("not used by FanIn");
  }
  absl::StatusOr<std::vector<KeyValue>> Scan(absl::string_view, PartitionId, const KeyRange&,
                                             const std::optional<std::string>&,
                                             size_t) const override {
    return absl::UnimplementedError("not used by FanIn");
  }
  absl::StatusOr<int64_t> EntryCount(absl::string_view, PartitionId) const override {
    return absl::UnimplementedError("not used by FanIn");
  }
  void AppendPosition(absl::string_view, PartitionId, kiq::v1::Position*) const override {}
  absl::Status WaitForPosition(absl::string_view, const kiq::v1::Position&,
                               absl::Time) const override {
    return absl::OkStatus();
  }

  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(
      const SubscribeSpec& spec) const override {
    absl::MutexLock lock(&mu_);
    ++subscribe_calls_;
    if (!fail_.ok()) return fail_;
    if (spec.store != kStore) {
      return absl::NotFoundError(absl::StrCat("unknown store \"", spec.store, "\""));
    }
    std::vector<KeyValue> snapshot;
    for (int32_t p : PartitionsOf(spec)) {
      if (absl::Status s = OwnedLocked(p); !s.ok()) return s;
      auto resumed = spec.resume.find(p);
      if (resumed != spec.resume.end()) {
        auto start = log_start_.find(p);
        if (start != log_start_.end() && resumed->second < start->second) {
          return absl::AbortedError(absl::StrCat("fake: cannot resume partition ", p, " at ",
                                                 resumed->second, ", log starts at ",
                                                 start->second));
        }
      } else if (spec.snapshot) {
        auto state = state_.find(p);
        if (state == state_.end()) continue;
        for (const auto& [k, v] : state->second) {
          if (spec.match.Matches(k)) snapshot.push_back(KeyValue{k, v, PartitionId(p)});
        }
      }
    }
    auto feed = std::make_shared<FakeFeed>(spec, std::move(snapshot), hold_after_);
    // The replay log: what this node made from the resume positions on.
    for (const auto& [p, changes] : log_) {
      for (const ChangeEvent& c : changes) {
        if (spec.resume.count(p) != 0 && feed->Wants(c)) feed->queue().Push(c);
      }
    }
    feeds_.push_back(feed);
    return std::unique_ptr<Subscription>(new FakeSubscription(feed));
  }

 private:
  absl::Status OwnedLocked(int32_t p) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = owned_.find(p);
    if (it == owned_.end()) {
      return absl::UnavailableError(absl::StrCat("fake: partition ", p, " is not here"));
    }
    return it->second;
  }
  void Apply(int32_t p, const std::string& key, const std::optional<std::string>& value)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (value) {
      state_[p][key] = *value;
    } else {
      state_[p].erase(key);
    }
  }

  mutable absl::Mutex mu_;
  std::map<int32_t, absl::Status> owned_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, int64_t> log_start_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, std::map<std::string, std::string>> state_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, std::vector<ChangeEvent>> log_ ABSL_GUARDED_BY(mu_);
  absl::Status fail_ ABSL_GUARDED_BY(mu_);
  size_t hold_after_ ABSL_GUARDED_BY(mu_) = SIZE_MAX;
  mutable int subscribe_calls_ ABSL_GUARDED_BY(mu_) = 0;
  mutable std::vector<std::shared_ptr<FakeFeed>> feeds_ ABSL_GUARDED_BY(mu_);
};

// The subscriber's side, driven the way SubscriptionStream drives a subscription: snapshot
// pages until done (SNAPSHOT_END), then changes until the end status. It waits for the notify,
// never for a fixed time. Destroying it ends the fan-in (FanInSubscription).
class Reader {
 public:
  explicit Reader(std::shared_ptr<FanIn> fan_in)
      : subscription_(std::make_unique<FanInSubscription>(std::move(fan_in))) {
    subscription_->SetNotify([this] {
      absl::MutexLock lock(&mu_);
      ++notifies_;
    });
  }

  // Reads snapshot pages of up to `page` entries until the snapshot is done, or, with `until`,
  // until that many entries came. OK, the page's error, or DEADLINE_EXCEEDED after kWait.
  absl::Status ReadSnapshot(size_t page = 100, std::optional<size_t> until = std::nullopt) {
    const absl::Time deadline = absl::Now() + kWait;
    while (!snapshot_done_ && (!until || snapshot_.size() < *until)) {
      const uint64_t seen = notifies();
      absl::StatusOr<SnapshotPage> next = subscription_->NextSnapshotPage(page);
      if (!next.ok()) return next.status();
      for (KeyValue& kv : next->entries) snapshot_.push_back(std::move(kv));
      snapshot_done_ = next->done;
      if (next->entries.empty() && !next->done && !WaitForNotify(seen, deadline)) {
        return absl::DeadlineExceededError(
            absl::StrCat("test: snapshot not done after ", snapshot_.size(), " entries"));
      }
    }
    return absl::OkStatus();
  }
  // The snapshot entries there are now, without waiting for more.
  absl::Status ReadSnapshotAvailable() {
    while (!snapshot_done_) {
      absl::StatusOr<SnapshotPage> next = subscription_->NextSnapshotPage(100);
      if (!next.ok()) return next.status();
      for (KeyValue& kv : next->entries) snapshot_.push_back(std::move(kv));
      snapshot_done_ = next->done;
      if (next->entries.empty()) break;
    }
    return absl::OkStatus();
  }

  // Takes changes until `done()` holds. OK, the end status if the subscription ended first, or
  // DEADLINE_EXCEEDED after kWait.
  absl::Status TakeUntil(const std::function<bool()>& done) {
    const absl::Time deadline = absl::Now() + kWait;
    while (!done()) {
      const uint64_t seen = notifies();
      std::vector<ChangeEvent> taken;
      absl::Status s = subscription_->Take(64, &taken);
      for (ChangeEvent& c : taken) changes_.push_back(std::move(c));
      if (!s.ok()) return s;
      if (taken.empty() && !WaitForNotify(seen, deadline)) {
        return absl::DeadlineExceededError(
            absl::StrCat("test: still waiting after ", changes_.size(), " changes"));
      }
    }
    return absl::OkStatus();
  }
  absl::Status TakeChanges(size_t n) {
    return TakeUntil([this, n] { return changes_.size() >= n; });
  }
  // Takes changes until the subscription ends; its end status (DEADLINE_EXCEEDED after kWait).
  absl::Status WaitForEnd() {
    absl::Status s = TakeUntil([] { return false; });
    return s.ok() ? absl::UnknownError("test: no end") : s;
  }
  // What Take says now, without waiting; the changes it hands out are kept.
  absl::Status TakeNow() {
    std::vector<ChangeEvent> taken;
    absl::Status s = subscription_->Take(SIZE_MAX, &taken);
    for (ChangeEvent& c : taken) changes_.push_back(std::move(c));
    return s;
  }

  const std::vector<KeyValue>& snapshot() const { return snapshot_; }
  bool snapshot_done() const { return snapshot_done_; }
  const std::vector<ChangeEvent>& changes() const { return changes_; }

 private:
  uint64_t notifies() {
    absl::MutexLock lock(&mu_);
    return notifies_;
  }
  bool WaitForNotify(uint64_t seen, absl::Time deadline) {
    auto notified = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return notifies_ > seen; };
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithDeadline(absl::Condition(&notified), deadline);
  }

  absl::Mutex mu_;
  uint64_t notifies_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<KeyValue> snapshot_;
  bool snapshot_done_ = false;
  std::vector<ChangeEvent> changes_;
  // Last: destroyed first, so that its notify stops before the members above go.
  std::unique_ptr<Subscription> subscription_;
};

// Checks that every key's changes continue from its snapshot value (each change's old value is
// the value before it) and returns every key's value after them.
std::map<int32_t, std::map<std::string, std::string>> ExpectChains(
    const std::vector<KeyValue>& snapshot, const std::vector<ChangeEvent>& changes) {
  std::map<std::pair<int32_t, std::string>, std::optional<std::string>> value;
  for (const KeyValue& kv : snapshot) value[{kv.partition.value(), kv.key}] = kv.value;
  for (const ChangeEvent& c : changes) {
    std::optional<std::string>& v = value[{c.partition.value(), c.key}];
    EXPECT_EQ(c.old_value, v) << "a change does not continue the key's value: " << Show(c);
    v = c.new_value;
  }
  std::map<int32_t, std::map<std::string, std::string>> out;
  for (const auto& [id, v] : value) {
    if (v) out[id.first][id.second] = *v;
  }
  return out;
}

// Per key, the offsets of its changes strictly increase (per partition too, unless changes were
// coalesced: then a later change may sit ahead of an earlier one of another key).
void ExpectOffsetsIncrease(const std::vector<ChangeEvent>& changes, bool per_key) {
  std::map<std::pair<int32_t, std::string>, int64_t> last;
  for (const ChangeEvent& c : changes) {
    auto [it, first] =
        last.try_emplace({c.partition.value(), per_key ? c.key : std::string()}, c.offset);
    if (!first) {
      EXPECT_GT(c.offset, it->second) << "out of order or duplicate: " << Show(c);
      it->second = c.offset;
    }
  }
}

SubscribeSpec AllOf(bool snapshot) {
  SubscribeSpec spec;
  spec.store = kStore;
  spec.snapshot = snapshot;
  return spec;
}

// The hermetic cluster: this process's partitions in `local_`, other nodes as real gRPC
// servers on 127.0.0.1:0 running PeerServiceImpl over their own FakeLocalStores, found
// through members records applied to `table_`.
class FanInTest : public ::testing::Test {
 protected:
  // Another node of the cluster.
  struct Node {
    explicit Node(std::string node_id) : id(std::move(node_id)) {}
    ~Node() {
      if (server) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    }
    const std::string id;
    FakeLocalStores stores;
    ThreadPool pool{1};
    PeerServiceImpl service{stores, pool};
    std::unique_ptr<grpc::Server> server;
    int port = 0;
  };

  void TearDown() override {
    // The readers went with the test body, closing their fan-ins; a remote stream keeps its
    // fan-in until gRPC is done with it. Wait for that before the nodes and the pool go.
    for (const std::weak_ptr<FanIn>& weak : fan_ins_) {
      if (std::shared_ptr<FanIn> fan_in = weak.lock()) {
        fan_in->Close(absl::CancelledError("test over"));
      }
    }
    const absl::Time deadline = absl::Now() + kWait;
    for (const std::weak_ptr<FanIn>& weak : fan_ins_) {
      while (!weak.expired() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
      EXPECT_TRUE(weak.expired()) << "a fan-in was not freed after its subscription ended";
    }
  }

  Node& AddNode(const std::string& id) {
    nodes_.push_back(std::make_unique<Node>(id));
    Node& node = *nodes_.back();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &node.port);
    builder.RegisterService(&node.service);
    node.server = builder.BuildAndStart();
    EXPECT_NE(node.server, nullptr);
    EXPECT_GT(node.port, 0);
    return node;
  }

  // Applies `node`'s members record: it owns `partitions` in `state`. Each record is newer
  // than the one before.
  void Announce(const Node& node, const std::vector<int32_t>& partitions,
                kiq::v1::PartitionState state = kiq::v1::PARTITION_STATE_ACTIVE) {
    kiq::v1::MemberRecord r;
    r.set_node_id(node.id);
    r.set_grpc_endpoint(absl::StrCat("127.0.0.1:", node.port));
    r.add_stores(kStore);
    for (int32_t p : partitions) {
      kiq::v1::OwnedPartition* owned = r.add_partitions();
      owned->set_partition(p);
      owned->set_state(state);
    }
    r.set_generation(1);
    r.set_written_at_ms(++written_at_ms_);
    r.set_lease_expiry_ms(absl::ToUnixMillis(absl::Now() + absl::Hours(1)));
    table_.Apply(r);
  }

  // Starts a fan-in the way QueryRouter::Subscribe does.
  std::unique_ptr<Reader> Subscribe(SubscribeSpec spec, absl::Duration give_up = absl::Seconds(60),
                                    bool with_table = true) {
    FanInCluster cluster{with_table ? &table_ : nullptr, &peers_, kSelf, &metrics_};
    auto fan_in = std::make_shared<FanIn>(local_, cluster, Info(), std::move(spec), give_up);
    fan_in->set_placer(&placer_);
    fan_ins_.push_back(fan_in);
    if (fan_in->PlacePending()) placer_.Wake(fan_in);
    return std::make_unique<Reader>(std::move(fan_in));
  }

  // kiq_subscription_moves_total of the store.
  double Moves() {
    double total = 0;
    for (const prometheus::MetricFamily& family : registry_.Collect()) {
      if (family.name != "kiq_subscription_moves_total") continue;
      for (const prometheus::ClientMetric& m : family.metric) {
        for (const prometheus::ClientMetric::Label& label : m.label) {
          if (label.name == "store" && label.value == kStore) total += m.counter.value;
        }
      }
    }
    return total;
  }

  FakeLocalStores local_;
  RoutingTable table_;
  PeerPool peers_;
  prometheus::Registry registry_;
  QueryMetrics metrics_{registry_};
  SubscriptionPlacer placer_;
  std::vector<std::unique_ptr<Node>> nodes_;
  std::vector<std::weak_ptr<FanIn>> fan_ins_;
  int64_t written_at_ms_ = absl::ToUnixMillis(absl::Now());
};

// --- Merge ---

TEST_F(FanInTest, MergesLocalAndRemotePartitionsEveryEntryAndChangeExactlyOnce) {
  Node& a = AddNode("a");
  Node& b = AddNode("b");
  local_.Own({0, 1});
  a.stores.Own({2, 3});
  b.stores.Own({4, 5});
  Announce(a, {2, 3});
  Announce(b, {4, 5});
  auto owner = [&](int32_t p) -> FakeLocalStores& {
    return p < 2 ? local_ : (p < 4 ? a.stores : b.stores);
  };
  std::vector<KeyValue> expected_snapshot;
  for (int32_t p = 0; p < kPartitions; ++p) {
    for (int i = 0; i < 3; ++i) {
      const std::string key = absl::StrCat("p", p, "-k", i);
      const std::string value = absl::StrCat("init", p, ".", i);
      owner(p).SetEntry(p, key, value);
      expected_snapshot.push_back(KeyValue{key, value, PartitionId(p)});
    }
  }

  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/true));
  // Every owner has registered the subscriber: what is made from now on is a change.
  for (FakeLocalStores* node : {&local_, &a.stores, &b.stores}) {
    std::shared_ptr<FakeFeed> feed = node->WaitForFeed(0);
    ASSERT_NE(feed, nullptr);
    EXPECT_TRUE(feed->spec().snapshot);
    EXPECT_THAT(feed->spec().resume, IsEmpty());
  }
  EXPECT_THAT(local_.feeds()[0]->spec().partitions, ElementsAre(0, 1));
  EXPECT_THAT(a.stores.feeds()[0]->spec().partitions, ElementsAre(2, 3));
  EXPECT_THAT(b.stores.feeds()[0]->spec().partitions, ElementsAre(4, 5));

  std::map<int32_t, std::vector<ChangeEvent>> made;
  auto make_round = [&](int64_t o) {
    for (int32_t p = 0; p < kPartitions; ++p) {
      made[p].push_back(owner(p).MakeAt(p, o));
      if (o % 4 == 3) owner(p).Advance(p, o + 1);
    }
  };
  // Half of the changes wait behind the snapshot, half come while it is read.
  for (int64_t o = 0; o < 15; ++o) make_round(o);
  ASSERT_OK(reader->ReadSnapshot(/*page=*/4));
  for (int64_t o = 15; o < 30; ++o) make_round(o);
  ASSERT_OK(reader->TakeChanges(kPartitions * 30));

  EXPECT_TRUE(reader->snapshot_done());
  EXPECT_EQ(SortedShown(reader->snapshot()), SortedShown(expected_snapshot));
  EXPECT_EQ(reader->changes().size(), static_cast<size_t>(kPartitions * 30));
  for (int32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(ShownOf(p, reader->changes()), Shown(made[p])) << "partition " << p;
  }
  std::map<int32_t, std::map<std::string, std::string>> rebuilt =
      ExpectChains(reader->snapshot(), reader->changes());
  for (int32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(rebuilt[p], owner(p).State(p)) << "partition " << p;
  }
  EXPECT_OK(reader->TakeNow());
  EXPECT_EQ(Moves(), 0.0);
}

TEST_F(FanInTest, KeyPrefixIsAskedOfEverySourceAndOnlyMatchingEntriesCome) {
  Node& a = AddNode("a");
  local_.Own({0, 1, 2});
  a.stores.Own({3, 4, 5});
  Announce(a, {3, 4, 5});
  local_.SetEntry(0, "ab1", "x");
  local_.SetEntry(0, "b1", "x");
  a.stores.SetEntry(3, "ab2", "y");
  a.stores.SetEntry(3, "c", "y");

  SubscribeSpec spec = AllOf(/*snapshot=*/true);
  spec.match = KeyMatch{KeyMatch::Kind::kPrefix, "ab"};
  std::unique_ptr<Reader> reader = Subscribe(spec);
  for (FakeLocalStores* node : {&local_, &a.stores}) {
    std::shared_ptr<FakeFeed> feed = node->WaitForFeed(0);
    ASSERT_NE(feed, nullptr);
    EXPECT_EQ(feed->spec().match.kind, KeyMatch::Kind::kPrefix);
    EXPECT_EQ(feed->spec().match.text, "ab");
  }
  ASSERT_OK(reader->ReadSnapshot());
  EXPECT_THAT(SortedShown(reader->snapshot()), ElementsAre("p0 ab1=x", "p3 ab2=y"));
  local_.Make(1, "b2", "no", 7);
  local_.Make(1, "ab3", "yes", 8);
  a.stores.Make(4, "zz", "no", 9);
  a.stores.Make(4, "ab4", "yes", 10);
  ASSERT_OK(reader->TakeChanges(2));
  EXPECT_THAT(SortedShown(reader->changes()),
              ElementsAre("p1 ab3 (none) -> yes @8", "p4 ab4 (none) -> yes @10"));
}

// --- Move ---

// Partitions 0 and 1 move from node a to node c after a sent changes and PROGRESS; node a's
// stream ends with `end`. With `table_first` the routing table names c before a ends, else
// only after the fan-in has tried a again and been refused.
class FanInMoveTest : public FanInTest {
 protected:
  void MoveAndResume(const absl::Status& end, bool table_first);
};

void FanInMoveTest::MoveAndResume(const absl::Status& end, bool table_first) {
  Node& a = AddNode("a");
  Node& b = AddNode("b");
  Node& c = AddNode("c");
  local_.Own({4, 5});
  a.stores.Own({0, 1});
  b.stores.Own({2, 3});
  Announce(a, {0, 1});
  Announce(b, {2, 3});
  for (FakeLocalStores* node : {&a.stores, &c.stores}) {
    node->SetEntry(0, "p0-k0", "init0");
    node->SetEntry(1, "p1-k1", "init1");
  }
  b.stores.SetEntry(2, "p2-k0", "init2");

  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/true));
  for (FakeLocalStores* node : {&local_, &a.stores, &b.stores}) {
    ASSERT_NE(node->WaitForFeed(0), nullptr);
  }
  ASSERT_OK(reader->ReadSnapshot());
  EXPECT_THAT(SortedShown(reader->snapshot()),
              ElementsAre("p0 p0-k0=init0", "p1 p1-k1=init1", "p2 p2-k0=init2"));

  // Offsets 0..9 of partitions 0 and 1 at a, reported up to 10; the others go on meanwhile.
  std::map<int32_t, std::vector<ChangeEvent>> made;
  for (int64_t o = 0; o < 10; ++o) {
    for (int32_t p : {0, 1}) made[p].push_back(a.stores.MakeAt(p, o));
    made[2].push_back(b.stores.MakeAt(2, o));
    made[4].push_back(local_.MakeAt(4, o));
  }
  a.stores.Advance(0, 10);
  a.stores.Advance(1, 10);
  ASSERT_OK(reader->TakeChanges(40));

  // c restored the partitions up to offset 5 and has made 5..14 since: it is ahead of where
  // a stopped, and made 5..9 again.
  c.stores.Own({0, 1}, /*log_start=*/5);
  for (int32_t p : {0, 1}) {
    for (int64_t o = 0; o < 5; ++o) c.stores.SetEntry(p, KeyAt(p, o), ValueAt(p, o));
    for (int64_t o = 5; o < 15; ++o) {
      ChangeEvent change = c.stores.MakeAt(p, o);
      if (o >= 10) made[p].push_back(change);
    }
  }
  if (table_first) {
    Announce(c, {0, 1});
    Announce(a, {});
  }
  a.stores.Disown({0, 1}, end);
  a.stores.EndFeeds(0, end);
  if (!table_first) {
    // Still named by the table, a refuses the subscription again.
    ASSERT_TRUE(a.stores.WaitForSubscribeCalls(2));
    Announce(c, {0, 1});
    Announce(a, {});
  }

  std::shared_ptr<FakeFeed> resumed = c.stores.WaitForFeed(0);
  ASSERT_NE(resumed, nullptr);
  EXPECT_THAT(resumed->spec().partitions, ElementsAre(0, 1));
  EXPECT_THAT(resumed->spec().resume, ElementsAre(Pair(0, 10), Pair(1, 10)));
  EXPECT_FALSE(resumed->spec().snapshot);
  for (int64_t o = 15; o < 20; ++o) {
    for (int32_t p : {0, 1}) made[p].push_back(c.stores.MakeAt(p, o));
    made[2].push_back(b.stores.MakeAt(2, o));
  }
  ASSERT_OK(reader->TakeChanges(40 + 10 + 10 + 5));

  EXPECT_EQ(reader->changes().size(), 65u);
  for (int32_t p : {0, 1, 2, 4}) {
    EXPECT_EQ(ShownOf(p, reader->changes()), Shown(made[p])) << "partition " << p;
  }
  ExpectOffsetsIncrease(reader->changes(), /*per_key=*/false);
  std::map<int32_t, std::map<std::string, std::string>> rebuilt =
      ExpectChains(reader->snapshot(), reader->changes());
  EXPECT_EQ(rebuilt[0], c.stores.State(0));
  EXPECT_EQ(rebuilt[1], c.stores.State(1));
  EXPECT_EQ(c.stores.subscribe_calls(), 1);
  EXPECT_EQ(b.stores.subscribe_calls(), 1);  // the other sources are not touched
  EXPECT_EQ(local_.subscribe_calls(), 1);
  EXPECT_EQ(Moves(), 1.0);  // one move, however many refused attempts it took
  EXPECT_OK(reader->TakeNow());
}

TEST_F(FanInMoveTest, RemoteSourceEndingUnavailableResumesAtTheNewOwnerFromTheLastProgress) {
  MoveAndResume(absl::UnavailableError("partitions 0,1 revoked"), /*table_first=*/true);
}

TEST_F(FanInMoveTest, NotOwnerBeforeTheTableMovesIsRetriedThenResumesAtTheNewOwner) {
  MoveAndResume(NotOwnerError("partition 0 is not owned by node a"), /*table_first=*/false);
}

// An owner sends a change before the PROGRESS that covers it; one that dies in between (kill -9)
// leaves the fan-in's position below changes it already delivered, and the next owner, resuming
// from that position, sends them again. The fan-in drops them, telling the changes of one
// record apart by their rank (a record may make several, e.g. one per window): here a's last
// record made two changes and only the first had arrived when a died.
TEST_F(FanInTest, ChangesAnOwnerSentAfterItsLastProgressAreNotDeliveredAgainByTheNextOwner) {
  Node& a = AddNode("a");
  Node& c = AddNode("c");
  local_.Own({2, 3, 4, 5});
  a.stores.Own({0, 1});
  Announce(a, {0, 1});

  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/false));
  ASSERT_NE(local_.WaitForFeed(0), nullptr);
  ASSERT_NE(a.stores.WaitForFeed(0), nullptr);
  std::map<int32_t, std::vector<ChangeEvent>> made;
  for (int64_t o = 0; o < 10; ++o) {
    for (int32_t p : {0, 1}) made[p].push_back(a.stores.MakeAt(p, o));
  }
  a.stores.Advance(0, 10);
  a.stores.Advance(1, 10);
  // Sent, but a dies before it reports them: the last PROGRESS stays at 10.
  made[0].push_back(a.stores.MakeAt(0, 10));
  made[0].push_back(a.stores.MakeAt(0, 11));
  made[0].push_back(a.stores.Make(0, "p0-w1", "one", 12));
  ASSERT_OK(reader->TakeChanges(23));

  // c has made the same records again (restored up to 5): its replay from 10 repeats 10, 11
  // and the first change of 12.
  c.stores.Own({0, 1}, /*log_start=*/5);
  for (int32_t p : {0, 1}) {
    for (int64_t o = 0; o < 5; ++o) c.stores.SetEntry(p, KeyAt(p, o), ValueAt(p, o));
    for (int64_t o = 5; o < 12; ++o) {
      ChangeEvent change = c.stores.MakeAt(p, o);
      if (p == 1 && o >= 10) made[p].push_back(change);
    }
  }
  c.stores.Make(0, "p0-w1", "one", 12);
  made[0].push_back(c.stores.Make(0, "p0-w2", "two", 12));
  for (int64_t o = 12; o < 15; ++o) {
    made[1].push_back(c.stores.MakeAt(1, o));
    if (o > 12) made[0].push_back(c.stores.MakeAt(0, o));
  }
  Announce(c, {0, 1});
  Announce(a, {});
  const absl::Status killed = absl::UnavailableError("connection reset");
  a.stores.Disown({0, 1}, killed);
  a.stores.EndFeeds(0, killed);

  std::shared_ptr<FakeFeed> resumed = c.stores.WaitForFeed(0);
  ASSERT_NE(resumed, nullptr);
  EXPECT_THAT(resumed->spec().resume, ElementsAre(Pair(0, 10), Pair(1, 10)));
  // Live after the replay: the first change of a record is not taken for a repeat.
  made[0].push_back(c.stores.Make(0, "p0-w1", "three", 15));
  made[1].push_back(c.stores.MakeAt(1, 15));
  // p0: w2@12, 13, 14, w1@15; p1: 10..15.
  ASSERT_OK(reader->TakeChanges(23 + 4 + 6));
  EXPECT_EQ(reader->changes().size(), 33u);
  for (int32_t p : {0, 1}) {
    EXPECT_EQ(ShownOf(p, reader->changes()), Shown(made[p])) << "partition " << p;
  }
  ExpectChains({}, reader->changes());
  EXPECT_OK(reader->TakeNow());
  EXPECT_EQ(reader->changes().size(), 33u);
}

TEST_F(FanInTest, LocalPartitionThatMovesAwayResumesAtItsNewOwnerAndTheRestStayHere) {
  Node& a = AddNode("a");
  Node& c = AddNode("c");
  local_.Own({0, 1, 2});
  a.stores.Own({3, 4, 5});
  Announce(a, {3, 4, 5});

  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/false));
  ASSERT_NE(local_.WaitForFeed(0), nullptr);
  ASSERT_NE(a.stores.WaitForFeed(0), nullptr);
  std::map<int32_t, std::vector<ChangeEvent>> made;
  for (int64_t o = 0; o < 10; ++o) {
    for (int32_t p : {0, 1, 2}) made[p].push_back(local_.MakeAt(p, o));
    made[3].push_back(a.stores.MakeAt(3, o));
  }
  for (int32_t p : {0, 1, 2}) local_.Advance(p, 10);
  ASSERT_OK(reader->TakeChanges(40));

  // Partition 0 goes to c, which restored it up to 8 and has made 8..11 since.
  c.stores.Own({0}, /*log_start=*/8);
  for (int64_t o = 0; o < 8; ++o) c.stores.SetEntry(0, KeyAt(0, o), ValueAt(0, o));
  for (int64_t o = 8; o < 12; ++o) {
    ChangeEvent change = c.stores.MakeAt(0, o);
    if (o >= 10) made[0].push_back(change);
  }
  Announce(c, {0});
  local_.Disown({0}, NotOwnerError("partition 0 was revoked"));
  local_.EndFeeds(0, absl::UnavailableError("partition 0 was revoked"));
  // Partition 1 goes on here while the subscription is placed again (replayed or live).
  for (int64_t o = 10; o < 13; ++o) made[1].push_back(local_.MakeAt(1, o));

  std::shared_ptr<FakeFeed> here = local_.WaitForFeed(1);
  ASSERT_NE(here, nullptr);
  EXPECT_THAT(here->spec().partitions, ElementsAre(1, 2));
  EXPECT_THAT(here->spec().resume, ElementsAre(Pair(1, 10), Pair(2, 10)));
  EXPECT_FALSE(here->spec().snapshot);
  std::shared_ptr<FakeFeed> there = c.stores.WaitForFeed(0);
  ASSERT_NE(there, nullptr);
  EXPECT_THAT(there->spec().partitions, ElementsAre(0));
  EXPECT_THAT(there->spec().resume, ElementsAre(Pair(0, 10)));

  for (int64_t o = 12; o < 15; ++o) made[0].push_back(c.stores.MakeAt(0, o));
  for (int64_t o = 13; o < 15; ++o) made[1].push_back(local_.MakeAt(1, o));
  for (int64_t o = 10; o < 15; ++o) made[2].push_back(local_.MakeAt(2, o));
  ASSERT_OK(reader->TakeChanges(40 + 5 + 5 + 5));
  EXPECT_EQ(reader->changes().size(), 55u);
  for (int32_t p : {0, 1, 2, 3}) {
    EXPECT_EQ(ShownOf(p, reader->changes()), Shown(made[p])) << "partition " << p;
  }
  EXPECT_EQ(Moves(), 1.0);
  EXPECT_EQ(a.stores.subscribe_calls(), 1);
}

// --- Waiting for an owner ---

TEST_F(FanInTest, PartitionWithoutActiveOwnerIsWaitedForAndPlacedOnceItHasOne) {
  Node& a = AddNode("a");
  local_.Own({0, 1, 2, 3, 4});
  a.stores.Own({5});
  local_.SetEntry(0, "here", "0");
  a.stores.SetEntry(5, "there", "5");
  Announce(a, {5}, kiq::v1::PARTITION_STATE_RESTORING);

  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/true));
  ASSERT_OK(reader->ReadSnapshotAvailable());
  // No SNAPSHOT_END while a partition's snapshot is missing.
  EXPECT_FALSE(reader->snapshot_done());
  EXPECT_THAT(Shown(reader->snapshot()), ElementsAre("p0 here=0"));
  EXPECT_EQ(a.stores.subscribe_calls(), 0);  // never asked while RESTORING

  Announce(a, {5}, kiq::v1::PARTITION_STATE_ACTIVE);
  ASSERT_OK(reader->ReadSnapshot());
  EXPECT_THAT(Shown(reader->snapshot()), ElementsAre("p0 here=0", "p5 there=5"));
  std::shared_ptr<FakeFeed> feed = a.stores.WaitForFeed(0);
  ASSERT_NE(feed, nullptr);
  EXPECT_THAT(feed->spec().partitions, ElementsAre(5));
  EXPECT_TRUE(feed->spec().snapshot);

  a.stores.Make(5, "there", "6", 1);
  local_.Make(0, "here", "1", 1);
  ASSERT_OK(reader->TakeChanges(2));
  EXPECT_THAT(SortedShown(reader->changes()),
              ElementsAre("p0 here 0 -> 1 @1", "p5 there 5 -> 6 @1"));
  EXPECT_EQ(a.stores.subscribe_calls(), 1);
  EXPECT_EQ(local_.subscribe_calls(), 1);
}

TEST_F(FanInTest, PartitionWithoutActiveOwnerLongerThanGiveUpEndsUnavailable) {
  local_.Own({0, 1, 2, 3, 4});  // partition 5: no live node claims it
  const absl::Duration give_up = absl::Milliseconds(300);
  const absl::Time start = absl::Now();
  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/false), give_up);
  EXPECT_THAT(reader->WaitForEnd(), StatusIs(absl::StatusCode::kUnavailable,
                                             "partition 5 has no ACTIVE owner for 300ms"));
  EXPECT_GE(absl::Now() - start, give_up);
  std::shared_ptr<FakeFeed> feed = local_.WaitForFeed(0);
  ASSERT_NE(feed, nullptr);
  EXPECT_TRUE(feed->WaitClosed());  // the local partitions were let go
}

TEST_F(FanInTest, MovedPartitionWithoutNewOwnerEndsUnavailableAfterGiveUp) {
  Node& a = AddNode("a");
  local_.Own({0, 1, 2, 3, 4});
  a.stores.Own({5});
  Announce(a, {5});
  std::unique_ptr<Reader> reader =
      Subscribe(AllOf(/*snapshot=*/false), /*give_up=*/absl::Milliseconds(300));
  ASSERT_NE(a.stores.WaitForFeed(0), nullptr);
  a.stores.MakeAt(5, 0);
  a.stores.Advance(5, 1);
  ASSERT_OK(reader->TakeChanges(1));

  // a leaves (a tombstone) and nobody takes partition 5 over.
  const absl::Time left = absl::Now();
  table_.Remove("a");
  a.stores.EndFeeds(5, absl::UnavailableError("node a is shutting down"));
  EXPECT_THAT(reader->WaitForEnd(),
              StatusIs(absl::StatusCode::kUnavailable, "partition 5 has no ACTIVE owner"));
  // Counted from the move, not from the start of the subscription.
  EXPECT_GE(absl::Now() - left, absl::Milliseconds(300));
  EXPECT_EQ(Moves(), 1.0);
}

TEST_F(FanInTest, WithoutRoutingTableANonLocalPartitionEndsUnavailableAtOnce) {
  local_.Own({0, 1, 2, 3, 4});
  std::unique_ptr<Reader> reader =
      Subscribe(AllOf(/*snapshot=*/false), absl::Seconds(60), /*with_table=*/false);
  EXPECT_THAT(reader->TakeNow(),
              StatusIs(absl::StatusCode::kUnavailable, "partition 5 has no ACTIVE owner"));
  EXPECT_EQ(local_.subscribe_calls(), 0);
}

// --- Errors and overflow ---

TEST_F(FanInTest, NonRetriableRefusalOfASourceEndsTheWholeSubscription) {
  Node& a = AddNode("a");
  Node& b = AddNode("b");
  local_.Own({0, 1});
  a.stores.Own({2, 3});
  b.stores.Own({4, 5});
  a.stores.FailSubscribe(absl::NotFoundError("fake: unknown store \"orders\""));
  Announce(a, {2, 3});
  Announce(b, {4, 5});

  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/true));
  EXPECT_THAT(reader->WaitForEnd(),
              StatusIs(absl::StatusCode::kNotFound, "fake: unknown store \"orders\""));
  // Every other source is let go, and the refusal is not retried.
  for (const auto& feed : local_.feeds()) EXPECT_TRUE(feed->WaitClosed());
  for (const auto& feed : b.stores.feeds()) EXPECT_TRUE(feed->WaitClosed());
  EXPECT_EQ(a.stores.subscribe_calls(), 1);
  EXPECT_EQ(Moves(), 0.0);
}

TEST_F(FanInTest, NonRetriableEndOfASourceComesAfterItsChanges) {
  Node& a = AddNode("a");
  local_.Own({0, 1, 2, 3});
  a.stores.Own({4, 5});
  Announce(a, {4, 5});
  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/false));
  std::shared_ptr<FakeFeed> feed = a.stores.WaitForFeed(0);
  ASSERT_NE(feed, nullptr);
  std::vector<ChangeEvent> made;
  for (int64_t o = 0; o < 3; ++o) made.push_back(a.stores.MakeAt(4, o));
  a.stores.EndFeeds(4, absl::DataLossError("fake: corrupt block"));
  EXPECT_THAT(reader->WaitForEnd(), StatusIs(absl::StatusCode::kDataLoss, "fake: corrupt block"));
  EXPECT_EQ(Shown(reader->changes()), Shown(made));
  EXPECT_TRUE(local_.feeds()[0]->WaitClosed());
  EXPECT_EQ(a.stores.subscribe_calls(), 1);
}

TEST_F(FanInTest, FullBufferEndsResourceExhaustedByDefault) {
  Node& a = AddNode("a");
  local_.Own({0, 1, 2});
  a.stores.Own({3, 4, 5});
  Announce(a, {3, 4, 5});
  SubscribeSpec spec = AllOf(/*snapshot=*/false);
  spec.buffer_size = 4;
  std::unique_ptr<Reader> reader = Subscribe(spec);
  std::shared_ptr<FakeFeed> remote = a.stores.WaitForFeed(0);
  ASSERT_NE(remote, nullptr);
  EXPECT_EQ(remote->spec().buffer_size, 4u);  // each owner bounds its queue the same
  EXPECT_FALSE(remote->spec().coalesce);

  // Nobody reads: the fifth pending change is one too many.
  for (int64_t o = 0; o < 4; ++o) local_.MakeAt(0, o);
  local_.MakeAt(0, 4);
  EXPECT_THAT(reader->TakeNow(),
              StatusIs(absl::StatusCode::kResourceExhausted, "subscriber too slow"));
  EXPECT_THAT(reader->changes(), IsEmpty());  // what was pending is dropped
  EXPECT_TRUE(remote->WaitClosed());
  EXPECT_TRUE(local_.feeds()[0]->WaitClosed());
}

TEST_F(FanInTest, FullBufferWithCoalesceKeepsTheLatestPendingChangeOfEachKey) {
  local_.Own({0, 1, 2, 3, 4, 5});
  SubscribeSpec spec = AllOf(/*snapshot=*/false);
  spec.buffer_size = 3;
  spec.coalesce = true;
  std::unique_ptr<Reader> reader = Subscribe(spec);
  ASSERT_NE(local_.WaitForFeed(0), nullptr);
  EXPECT_TRUE(local_.feeds()[0]->spec().coalesce);

  int64_t offset = 0;
  local_.Make(0, "b", "b1", offset++);
  local_.Make(0, "c", "c1", offset++);
  for (int i = 1; i <= 10; ++i) local_.Make(0, "a", absl::StrCat("a", i), offset++);  // full
  local_.Make(0, "d", "d1", offset++);  // a key with nothing pending is still queued
  local_.Make(0, "e", "e1", offset++);
  local_.Make(0, "b", "b2", offset++);
  EXPECT_OK(reader->TakeNow());  // not ended
  EXPECT_THAT(Shown(reader->changes()),
              ElementsAre("p0 b (none) -> b2 @14", "p0 c (none) -> c1 @1", "p0 a (none) -> a10 @11",
                          "p0 d (none) -> d1 @12", "p0 e (none) -> e1 @13"));
}

TEST_F(FanInTest, FullBufferWithCoalesceAcrossAPeerKeepsEveryKeysLatestValueInOrder) {
  Node& a = AddNode("a");
  local_.Own({0, 1, 2, 3, 4});
  a.stores.Own({5});
  Announce(a, {5});
  SubscribeSpec spec = AllOf(/*snapshot=*/false);
  spec.buffer_size = 2;
  spec.coalesce = true;
  std::unique_ptr<Reader> reader = Subscribe(spec);
  std::shared_ptr<FakeFeed> remote = a.stores.WaitForFeed(0);
  ASSERT_NE(remote, nullptr);
  EXPECT_TRUE(remote->spec().coalesce);
  for (int64_t o = 0; o < 200; ++o) {
    a.stores.Make(5, absl::StrCat("k", o % 3), absl::StrCat("v", o), o);
  }
  // Whatever was coalesced on the way, the last value of each key comes, keys in order.
  std::map<std::string, std::string> latest;
  ASSERT_OK(reader->TakeUntil([&] {
    for (const ChangeEvent& c : reader->changes()) latest[c.key] = c.new_value.value_or("");
    return latest == a.stores.State(5);
  }));
  ExpectOffsetsIncrease(reader->changes(), /*per_key=*/true);
  ExpectChains({}, reader->changes());  // a coalesced change keeps the older old value
  EXPECT_OK(reader->TakeNow());
}

// --- A move in the middle of a snapshot ---

TEST_F(FanInTest, LocalPartitionLostInTheMiddleOfItsSnapshotEndsAborted) {
  Node& a = AddNode("a");
  local_.Own({0, 1, 2});
  a.stores.Own({3, 4, 5});
  Announce(a, {3, 4, 5});
  for (int i = 0; i < 10; ++i) local_.SetEntry(0, absl::StrCat("k", i), "v");
  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/true));
  ASSERT_OK(reader->ReadSnapshot(/*page=*/3, /*until=*/3));
  EXPECT_EQ(reader->snapshot().size(), 3u);

  local_.EndFeeds(0, absl::UnavailableError("partition 0 revoked"));
  EXPECT_THAT(reader->WaitForEnd(),
              StatusIs(absl::StatusCode::kAborted,
                       "partition 0 moved while its snapshot was being sent; subscribe again"));
  // Ended: the stream learns it after SNAPSHOT_END, from Take.
  ASSERT_OK(reader->ReadSnapshot());
  EXPECT_EQ(reader->snapshot().size(), 3u);
  EXPECT_EQ(Moves(), 0.0);
}

TEST_F(FanInTest, RemotePartitionLostInTheMiddleOfItsSnapshotEndsAborted) {
  Node& a = AddNode("a");
  local_.Own({0, 1, 2});
  a.stores.Own({3, 4, 5});
  Announce(a, {3, 4, 5});
  local_.SetEntry(1, "here", "v");
  for (int i = 0; i < 10; ++i) a.stores.SetEntry(3, absl::StrCat("k", i), "v");
  a.stores.HoldSnapshotsAfter(4);
  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/true));
  ASSERT_OK(reader->ReadSnapshot(/*page=*/100, /*until=*/5));  // this node's entry, then 4 of a's
  EXPECT_FALSE(reader->snapshot_done());

  a.stores.EndFeeds(3, absl::UnavailableError("partition 3 revoked"));
  EXPECT_THAT(reader->WaitForEnd(),
              StatusIs(absl::StatusCode::kAborted, "partition 3 moved while its snapshot"));
  EXPECT_TRUE(local_.feeds()[0]->WaitClosed());
}

TEST_F(FanInTest, RemotePartitionLostBeforeAnyOfItsSnapshotWentOutSnapshotsAgainAtTheNewOwner) {
  Node& a = AddNode("a");
  Node& b = AddNode("b");
  Node& c = AddNode("c");
  a.stores.Own({0, 1, 2});
  b.stores.Own({3, 4, 5});
  Announce(a, {0, 1, 2});
  Announce(b, {3, 4, 5});
  for (int i = 0; i < 10; ++i) a.stores.SetEntry(0, absl::StrCat("k", i), "old");
  b.stores.SetEntry(3, "b", "v");
  a.stores.HoldSnapshotsAfter(4);
  std::unique_ptr<Reader> reader = Subscribe(AllOf(/*snapshot=*/true));
  std::shared_ptr<FakeFeed> first = a.stores.WaitForFeed(0);
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->WaitSnapshotServed(4));  // sent, but the subscriber has read nothing

  // c has the partitions now, one entry changed since.
  c.stores.Own({0, 1, 2});
  std::vector<KeyValue> expected{{"b", "v", PartitionId(3)}};
  for (int i = 0; i < 10; ++i) {
    const std::string value = i == 7 ? "new" : "old";
    c.stores.SetEntry(0, absl::StrCat("k", i), value);
    expected.push_back(KeyValue{absl::StrCat("k", i), value, PartitionId(0)});
  }
  Announce(c, {0, 1, 2});
  Announce(a, {});
  a.stores.EndFeeds(0, absl::UnavailableError("partitions 0-2 revoked"));

  std::shared_ptr<FakeFeed> again = c.stores.WaitForFeed(0);
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(again->spec().snapshot);
  EXPECT_THAT(again->spec().resume, IsEmpty());
  EXPECT_THAT(again->spec().partitions, ElementsAre(0, 1, 2));
  ASSERT_OK(reader->ReadSnapshot(/*page=*/3));
  EXPECT_EQ(SortedShown(reader->snapshot()), SortedShown(expected));

  ChangeEvent change = c.stores.Make(0, "k7", "newer", 20);
  ASSERT_OK(reader->TakeChanges(1));
  EXPECT_EQ(Shown(reader->changes()), Shown(std::vector<ChangeEvent>{change}));
}

}  // namespace
}  // namespace kiq::router
