#include "node/push/subscription_hub.h"

#include <stdlib.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/topology/window_key.h"
#include "node/store/staged_batch.h"
#include "node/store/store_engine.h"

namespace kiq::node {
namespace {

using router::ChangeEvent;
using router::KeyMatch;

Change MakeChange(int store, int32_t p, const std::string& key,
                  std::optional<std::string> old_value, std::optional<std::string> new_value,
                  int64_t offset) {
  return Change{StoreHandle{store},   PartitionId(p), key,   std::move(old_value),
                std::move(new_value), "topic",        offset};
}

std::vector<ChangeEvent> TakeAll(router::ChangeQueue& queue, absl::Status* end = nullptr,
                                 router::Progress* progress = nullptr) {
  std::vector<ChangeEvent> out;
  absl::Status s = queue.Take(1000000, &out, progress);
  if (end != nullptr) *end = s;
  return out;
}

constexpr int kPartitions = 4;

// Registers a subscriber of every partition (unless given) and returns its queue.
std::shared_ptr<router::ChangeQueue> Subscribe(SubscriptionHub& hub, int store, KeyMatch match,
                                               size_t capacity, bool coalesce,
                                               std::vector<int32_t> partitions = {0, 1, 2, 3},
                                               const router::Progress& resume = {}) {
  absl::StatusOr<std::shared_ptr<Subscriber>> s = hub.Register(
      StoreHandle{store}, "store", std::move(match), partitions, resume, capacity, coalesce);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? (*s)->queue : nullptr;
}

// A store engine with one store, "s", in a temporary directory removed afterwards.
struct TempEngine {
  TempEngine() {
    EXPECT_NE(mkdtemp(dir.data()), nullptr);
    absl::StatusOr<std::unique_ptr<StoreEngine>> opened = StoreEngine::Open(dir + "/db", {"s"});
    EXPECT_TRUE(opened.ok()) << opened.status();
    if (opened.ok()) engine = *std::move(opened);
  }
  ~TempEngine() {
    engine.reset();
    std::filesystem::remove_all(dir);
  }
  std::string dir = ::testing::TempDir() + "subscription_hub_test.XXXXXX";
  std::unique_ptr<StoreEngine> engine;
};

TEST(KeyMatchTest, MatchesKeyPrefixAndAll) {
  EXPECT_TRUE((KeyMatch{KeyMatch::Kind::kAll, ""}).Matches("anything"));
  EXPECT_TRUE((KeyMatch{KeyMatch::Kind::kKey, "k1"}).Matches("k1"));
  EXPECT_FALSE((KeyMatch{KeyMatch::Kind::kKey, "k1"}).Matches("k10"));
  EXPECT_FALSE((KeyMatch{KeyMatch::Kind::kKey, "k1"}).Matches("k"));
  EXPECT_TRUE((KeyMatch{KeyMatch::Kind::kPrefix, "user:"}).Matches("user:7"));
  EXPECT_TRUE((KeyMatch{KeyMatch::Kind::kPrefix, "user:"}).Matches("user:"));
  EXPECT_FALSE((KeyMatch{KeyMatch::Kind::kPrefix, "user:"}).Matches("user"));
  EXPECT_FALSE((KeyMatch{KeyMatch::Kind::kPrefix, "user:"}).Matches("order:1"));
}

TEST(SubscriptionHubTest, DeliversOnlyMatchingChangesOfTheStoreInOrder) {
  SubscriptionHub hub;
  absl::StatusOr<std::shared_ptr<Subscriber>> prefix_subscriber = hub.Register(
      StoreHandle{0}, "a", KeyMatch{KeyMatch::Kind::kPrefix, "a"}, {0, 1}, {}, 100, false);
  ASSERT_TRUE(prefix_subscriber.ok());
  auto prefix = (*prefix_subscriber)->queue;
  auto key = Subscribe(hub, 1, KeyMatch{KeyMatch::Kind::kKey, "b"}, 100, false);
  EXPECT_EQ(hub.size(), 2u);
  int notified = 0;
  prefix->SetNotify([&] { ++notified; });
  hub.Publish({MakeChange(0, 0, "a1", std::nullopt, "x", 1), MakeChange(0, 1, "b", "o", "y", 2),
               MakeChange(1, 1, "b", "o", std::nullopt, 3), MakeChange(0, 0, "a2", "p", "z", 4),
               MakeChange(0, 2, "a3", std::nullopt, "w", 5)},  // partition 2: not followed
              {});
  std::vector<ChangeEvent> got = TakeAll(*prefix);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].key, "a1");
  EXPECT_EQ(got[0].offset, 1);
  EXPECT_FALSE(got[0].old_value.has_value());
  EXPECT_EQ(got[1].key, "a2");
  EXPECT_EQ(got[1].old_value, "p");
  EXPECT_EQ(notified, 1);
  got = TakeAll(*key);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].offset, 3);
  EXPECT_FALSE(got[0].new_value.has_value());
  hub.Unregister(prefix_subscriber->get());
  EXPECT_EQ(hub.size(), 1u);
}

TEST(SubscriptionHubTest, OverflowEndsWithResourceExhaustedAndDropsThePending) {
  SubscriptionHub hub;
  auto queue = Subscribe(hub, 0, KeyMatch{}, 3, false);
  bool notified = false;
  queue->SetNotify([&] { notified = true; });
  for (int i = 0; i < 5; ++i) {
    hub.Publish({MakeChange(0, 0, absl::StrCat("k", i), std::nullopt, "v", i)}, {});
  }
  EXPECT_TRUE(queue->ended());
  EXPECT_TRUE(notified);
  EXPECT_EQ(queue->pending(), 0u);
  absl::Status end;
  EXPECT_TRUE(TakeAll(*queue, &end).empty());
  EXPECT_TRUE(absl::IsResourceExhausted(end)) << end;
  // Nothing more is queued after the end.
  hub.Publish({MakeChange(0, 0, "k9", std::nullopt, "v", 9)}, {});
  EXPECT_EQ(queue->pending(), 0u);
}

TEST(SubscriptionHubTest, CoalesceKeepsTheLatestValuePerKeyWhenFull) {
  SubscriptionHub hub;
  auto queue = Subscribe(hub, 0, KeyMatch{}, 10, true);
  std::map<std::string, std::string> latest;
  for (int i = 0; i < 20000; ++i) {
    const std::string key = absl::StrCat("hot", i % 5);
    const std::string value = absl::StrCat("v", i);
    hub.Publish(
        {MakeChange(0, (i % 5) % kPartitions, key,
                    latest.count(key) ? std::optional(latest[key]) : std::nullopt, value, i)},
        {});
    latest[key] = value;
    if (i % 997 == 0) {  // the subscriber reads a little now and then
      std::vector<ChangeEvent> some;
      ASSERT_TRUE(queue->Take(3, &some).ok());
    }
  }
  EXPECT_FALSE(queue->ended());
  absl::Status end;
  std::vector<ChangeEvent> got = TakeAll(*queue, &end);
  EXPECT_TRUE(end.ok());
  EXPECT_LE(got.size(), 15u);
  std::map<std::string, std::string> seen;
  for (const ChangeEvent& e : got) seen[e.key] = *e.new_value;
  EXPECT_EQ(seen, latest);
}

TEST(SubscriptionHubTest, EndAllEndsAfterTheQueuedChanges) {
  SubscriptionHub hub;
  auto queue = Subscribe(hub, 0, KeyMatch{}, 10, false);
  hub.Publish({MakeChange(0, 0, "k", std::nullopt, "v", 1)}, {});
  hub.EndAll(absl::AbortedError("moved"));
  std::vector<ChangeEvent> got;
  absl::Status s = queue->Take(1, &got);
  EXPECT_EQ(got.size(), 1u);
  EXPECT_TRUE(absl::IsAborted(s)) << s;  // the last change and the end come together
}

TEST(KeyMatchTest, WindowedMatchesTheUserKeyAndNeverTheStreamTime) {
  KeyMatch key{KeyMatch::Kind::kKey, "a", /*windowed=*/true};
  EXPECT_TRUE(key.Matches(WindowKey("a", 60000)));
  EXPECT_FALSE(key.Matches(WindowKey("ab", 60000)));
  EXPECT_FALSE(key.Matches(std::string(kStreamTimeKey)));
  KeyMatch all{KeyMatch::Kind::kAll, "", /*windowed=*/true};
  EXPECT_TRUE(all.Matches(WindowKey("", 0)));  // an empty user key is still a window
  EXPECT_FALSE(all.Matches(std::string(kStreamTimeKey)));
  KeyMatch prefix{KeyMatch::Kind::kPrefix, "a", /*windowed=*/true};
  EXPECT_TRUE(prefix.Matches(WindowKey("ab", -5)));
  EXPECT_FALSE(prefix.Matches(WindowKey("", 0x61)));  // 'a' only in the window start
}

TEST(SubscriptionHubTest, ProgressAdvancesWithCommitsAndIsHandedOutWhenDrained) {
  SubscriptionHub hub;
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 10);
  auto queue = Subscribe(hub, 0, KeyMatch{KeyMatch::Kind::kKey, "k"}, 10, false, {0, 1});
  router::Progress progress;
  TakeAll(*queue, nullptr, &progress);
  EXPECT_EQ(progress, (router::Progress{{0, 10}, {1, 0}}));
  // A batch whose records matched nothing still moves the subscription forward.
  hub.Publish({MakeChange(0, 0, "other", std::nullopt, "v", 10)},
              {{StoreHandle{0}, PartitionId(0), 11}, {StoreHandle{0}, PartitionId(2), 7}});
  hub.Publish({MakeChange(0, 1, "k", std::nullopt, "v", 3)}, {{StoreHandle{0}, PartitionId(1), 4}});
  std::vector<ChangeEvent> got;
  ASSERT_TRUE(queue->Take(0, &got, &progress).ok());
  EXPECT_EQ(progress, (router::Progress{{0, 10}, {1, 0}}));  // not drained: not handed out
  got = TakeAll(*queue, nullptr, &progress);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(progress, (router::Progress{{0, 11}, {1, 4}}));  // partition 2 is not followed
}

// A router resumes a subscription after its owner dies from the last progress the owner sent,
// so progress must never be handed out ahead of the changes it covers: a stream that takes
// from its queue while a batch is being published (here: from the notify of the subscriber
// published before it, run on the publishing thread) gets either neither or both.
TEST(SubscriptionHubTest, ProgressIsNeverHandedOutBeforeTheChangesItCovers) {
  SubscriptionHub hub;
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 10);
  auto first = Subscribe(hub, 0, KeyMatch{}, 10, false, {0});
  auto second = Subscribe(hub, 0, KeyMatch{}, 10, false, {0});
  router::Progress progress;
  TakeAll(*first, nullptr, &progress);
  TakeAll(*second, nullptr, &progress);
  ASSERT_EQ(progress, (router::Progress{{0, 10}}));
  std::vector<ChangeEvent> taken;
  router::Progress seen;
  first->SetNotify([&] {
    std::vector<ChangeEvent> got = TakeAll(*second, nullptr, &seen);
    taken.insert(taken.end(), got.begin(), got.end());
  });
  hub.Publish({MakeChange(0, 0, "k", std::nullopt, "v", 10)},
              {{StoreHandle{0}, PartitionId(0), 11}});
  // Whatever the notify saw, the change is there if the progress past it is.
  if (seen.count(0) != 0 && seen.at(0) == 11) {
    ASSERT_EQ(taken.size(), 1u) << "progress 11 handed out without the change at offset 10";
  }
  std::vector<ChangeEvent> rest = TakeAll(*second, nullptr, &progress);
  taken.insert(taken.end(), rest.begin(), rest.end());
  ASSERT_EQ(taken.size(), 1u);
  EXPECT_EQ(taken[0].offset, 10);
  EXPECT_EQ(progress, (router::Progress{{0, 11}}));
}

TEST(SubscriptionHubTest, ResumeAtTheSamePositionContinuesWithTheNextChange) {
  SubscriptionHub hub;
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 20);
  auto queue = Subscribe(hub, 0, KeyMatch{}, 10, false, {0}, {{0, 20}});
  hub.Publish({MakeChange(0, 0, "k", "a", "b", 20)}, {{StoreHandle{0}, PartitionId(0), 21}});
  router::Progress progress;
  std::vector<ChangeEvent> got = TakeAll(*queue, nullptr, &progress);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].offset, 20);
  EXPECT_EQ(progress, (router::Progress{{0, 21}}));
}

TEST(SubscriptionHubTest, ResumeBehindDropsTheChangesAlreadyDelivered) {
  SubscriptionHub hub;
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 5);
  // The subscription had reached offset 8 elsewhere; this node makes 5..7 again.
  auto queue = Subscribe(hub, 0, KeyMatch{}, 10, false, {0}, {{0, 8}});
  router::Progress progress;
  TakeAll(*queue, nullptr, &progress);
  EXPECT_EQ(progress, (router::Progress{{0, 8}}));
  hub.Publish({MakeChange(0, 0, "k", std::nullopt, "5", 5), MakeChange(0, 0, "k", "5", "7", 7),
               MakeChange(0, 0, "k", "7", "8", 8)},
              {{StoreHandle{0}, PartitionId(0), 9}});
  std::vector<ChangeEvent> got = TakeAll(*queue, nullptr, &progress);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].new_value, "8");
  EXPECT_EQ(progress, (router::Progress{{0, 9}}));
}

TEST(SubscriptionHubTest, ResumeAheadReplaysTheChangesSinceTheAssignment) {
  SubscriptionHub hub;
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 100);  // restored to where it stopped
  hub.Publish({MakeChange(0, 0, "a", std::nullopt, "1", 100), MakeChange(0, 0, "b", "x", "2", 101),
               MakeChange(0, 0, "a", "1", "3", 102)},
              {{StoreHandle{0}, PartitionId(0), 103}});
  // A subscription that had everything before 101 resumes: 101 and 102 are replayed.
  auto queue = Subscribe(hub, 0, KeyMatch{}, 10, false, {0}, {{0, 101}});
  hub.Publish({MakeChange(0, 0, "b", "2", "4", 103)}, {{StoreHandle{0}, PartitionId(0), 104}});
  router::Progress progress;
  std::vector<ChangeEvent> got = TakeAll(*queue, nullptr, &progress);
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].offset, 101);
  EXPECT_EQ(got[0].old_value, "x");
  EXPECT_EQ(got[1].offset, 102);
  EXPECT_EQ(got[2].offset, 103);
  EXPECT_EQ(progress, (router::Progress{{0, 104}}));
  // Resuming before the replay log's start cannot be done without a gap.
  absl::StatusOr<std::shared_ptr<Subscriber>> refused =
      hub.Register(StoreHandle{0}, "scores", KeyMatch{}, {0}, {{0, 99}}, 10, false);
  ASSERT_FALSE(refused.ok());
  EXPECT_TRUE(absl::IsAborted(refused.status())) << refused.status();
  EXPECT_EQ(refused.status().message(),
            "cannot resume the subscription to store \"scores\" partition 0 at offset 99: its "
            "new owner is already at offset 104 and keeps its changes from offset 100 only; the "
            "changes in between cannot be replayed. Subscribe again (FROM_SNAPSHOT to resync)");
}

TEST(SubscriptionHubTest, ReplayLogContinuesWhenThePartitionComesBackWhereItLeft) {
  SubscriptionHub hub;
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 342);
  hub.Publish({MakeChange(0, 0, "k", "a", "b", 342), MakeChange(0, 0, "k", "b", "c", 584)},
              {{StoreHandle{0}, PartitionId(0), 585}});
  // A rebalance revokes partition 0 and hands it back at 585: a subscription
  // that stood at 342 before the first revoke still resumes without a gap.
  hub.PartitionsRevoked({0});
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 585);
  auto queue = Subscribe(hub, 0, KeyMatch{}, 10, false, {0}, {{0, 342}});
  std::vector<ChangeEvent> got = TakeAll(*queue);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].offset, 342);
  EXPECT_EQ(got[1].offset, 584);
  // Back at another position (restored from what another node did): the log starts over.
  hub.PartitionsRevoked({0});
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 700);
  EXPECT_FALSE(hub.Register(StoreHandle{0}, "s", KeyMatch{}, {0}, {{0, 585}}, 10, false).ok());
}

// A standby replica's changes are kept like an owner's: when this node gains the partition
// at the replica's position, a subscription that its previous owner served up to an older
// offset resumes from the replica's changes, without a gap.
TEST(SubscriptionHubTest, AReplicasChangesAreReplayedAfterItsNodeGainsThePartition) {
  SubscriptionHub hub;
  hub.ReplicaStarted(StoreHandle{0}, PartitionId(0), 10);
  hub.ReplicaApplied(
      {MakeChange(0, 0, "k", std::nullopt, "1", 10), MakeChange(0, 0, "k", "1", "2", 11)},
      {{StoreHandle{0}, PartitionId(0), 10, 12}});
  hub.ReplicaApplied({MakeChange(0, 0, "j", std::nullopt, "5", 12)},
                     {{StoreHandle{0}, PartitionId(0), 12, 13}});
  // Gained at the replica's position (the restore found nothing newer).
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 13);
  auto queue = Subscribe(hub, 0, KeyMatch{}, 10, false, {0}, {{0, 11}});
  std::vector<ChangeEvent> got = TakeAll(*queue);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].offset, 11);
  EXPECT_EQ(got[0].new_value, "2");
  EXPECT_EQ(got[1].offset, 12);
  // Before the replica started: not replayable.
  EXPECT_FALSE(hub.Register(StoreHandle{0}, "s", KeyMatch{}, {0}, {{0, 9}}, 10, false).ok());
}

// An aggregate's replica learns its changes from the changelog, which holds one folded write
// per key for batches its owner made while nobody subscribed: those changes are not the ones a
// subscriber saw, so the log starts again after them. A log that expired while the replica was
// idle starts again where the replica stands, never with a hole.
TEST(SubscriptionHubTest, AReplicasLogStartsAgainAfterFoldedChangesAndAfterExpiring) {
  SubscriptionHubOptions options;
  options.replay_window = absl::Milliseconds(50);
  SubscriptionHub hub(options);
  hub.ReplicaStarted(StoreHandle{0}, PartitionId(0), 0);
  // Records 0..9 folded (one change of k at 9), then 10 and 11 exact.
  hub.ReplicaApplied({MakeChange(0, 0, "k", std::nullopt, "10", -1),
                      MakeChange(0, 0, "k", "10", "11", 10), MakeChange(0, 0, "k", "11", "12", 11)},
                     {{StoreHandle{0}, PartitionId(0), 10, 12}});
  EXPECT_TRUE(hub.KeepsReplayLog(StoreHandle{0}, PartitionId(0)));
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 12);
  EXPECT_FALSE(hub.Register(StoreHandle{0}, "s", KeyMatch{}, {0}, {{0, 5}}, 10, false).ok());
  auto queue = Subscribe(hub, 0, KeyMatch{}, 10, false, {0}, {{0, 10}});
  std::vector<ChangeEvent> got = TakeAll(*queue);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].offset, 10);
  EXPECT_EQ(got[1].offset, 11);

  SubscriptionHub idle(options);
  idle.ReplicaStarted(StoreHandle{0}, PartitionId(1), 0);
  idle.ReplicaApplied({MakeChange(0, 1, "a", std::nullopt, "1", 0)},
                      {{StoreHandle{0}, PartitionId(1), 0, 1}});
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (idle.KeepsReplayLog(StoreHandle{0}, PartitionId(1)) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_FALSE(idle.KeepsReplayLog(StoreHandle{0}, PartitionId(1)));
  // Changes at 1 and 2 arrive after the log expired: kept in a new log that starts at 1.
  idle.ReplicaApplied({MakeChange(0, 1, "a", "1", "2", 1), MakeChange(0, 1, "a", "2", "3", 2)},
                      {{StoreHandle{0}, PartitionId(1), 1, 3}});
  idle.PartitionAssigned(StoreHandle{0}, PartitionId(1), 3);
  EXPECT_FALSE(idle.Register(StoreHandle{0}, "s", KeyMatch{}, {1}, {{1, 0}}, 10, false).ok());
  auto resumed = Subscribe(idle, 0, KeyMatch{}, 10, false, {1}, {{1, 2}});
  got = TakeAll(*resumed);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].new_value, "3");
}

TEST(SubscriptionHubTest, ReplayLogTrimsWholeRecordsAndExpires) {
  SubscriptionHubOptions options;
  options.replay_capacity = 3;
  options.replay_window = absl::Seconds(30);
  SubscriptionHub hub(options);
  hub.PartitionAssigned(StoreHandle{0}, PartitionId(0), 0);
  EXPECT_TRUE(hub.active());  // changes are logged while a replay log records
  // Record 1 changes two windows: trimming drops both, never half a record.
  hub.Publish(
      {MakeChange(0, 0, "w1", std::nullopt, "1", 0), MakeChange(0, 0, "w1", "1", "2", 1),
       MakeChange(0, 0, "w2", std::nullopt, "1", 1), MakeChange(0, 0, "w3", std::nullopt, "1", 2),
       MakeChange(0, 0, "w4", std::nullopt, "1", 3)},
      {{StoreHandle{0}, PartitionId(0), 4}});
  EXPECT_FALSE(hub.Register(StoreHandle{0}, "s", KeyMatch{}, {0}, {{0, 1}}, 10, false).ok());
  auto queue = Subscribe(hub, 0, KeyMatch{}, 10, false, {0}, {{0, 2}});
  std::vector<ChangeEvent> got = TakeAll(*queue);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].key, "w3");
  EXPECT_EQ(got[1].key, "w4");

  // A node-wide memory bound trims too: here ~2 changes' worth.
  SubscriptionHubOptions small;
  small.replay_max_bytes = 2 * (sizeof(router::ChangeEvent) + 12);
  SubscriptionHub bounded(small);
  bounded.PartitionAssigned(StoreHandle{0}, PartitionId(0), 0);
  bounded.Publish(
      {MakeChange(0, 0, "a", std::nullopt, "1", 0), MakeChange(0, 0, "b", std::nullopt, "1", 1),
       MakeChange(0, 0, "c", std::nullopt, "1", 2)},
      {{StoreHandle{0}, PartitionId(0), 3}});
  EXPECT_FALSE(bounded.Register(StoreHandle{0}, "s", KeyMatch{}, {0}, {{0, 0}}, 10, false).ok());
  auto recent = bounded.Register(StoreHandle{0}, "s", KeyMatch{}, {0}, {{0, 2}}, 10, false);
  ASSERT_TRUE(recent.ok()) << recent.status();
  EXPECT_EQ(TakeAll(*(*recent)->queue).size(), 1u);

  SubscriptionHubOptions off;
  off.replay_window = absl::ZeroDuration();
  SubscriptionHub no_replay(off);
  no_replay.PartitionAssigned(StoreHandle{0}, PartitionId(0), 0);
  EXPECT_FALSE(no_replay.active());
  no_replay.Publish({}, {{StoreHandle{0}, PartitionId(0), 4}});
  EXPECT_FALSE(no_replay.Register(StoreHandle{0}, "s", KeyMatch{}, {0}, {{0, 2}}, 10, false).ok());
}

// The pipelined ingestor begins batch n+1 while batch n commits (its changelog in flight): if
// n+1 is untracked (its changes folded), n's commit must not let a registration in before
// n+1's own commit, or that subscriber would get n+1's changes folded.
TEST(SubscriptionHubTest, ABatchBegunUntrackedDuringAnotherCommitKeepsRegistrationsOutUntilItsOwn) {
  TempEngine temp;
  ASSERT_NE(temp.engine, nullptr);
  StoreEngine& engine = *temp.engine;
  const StoreHandle store{0};
  SubscriptionHub hub;
  const auto subscribe = [&] {
    return hub.Subscribe(
        store, "s", KeyMatch{}, {0}, {}, 10, false, absl::Milliseconds(50),
        [] { return absl::OkStatus(); }, [] { return absl::OkStatus(); });
  };
  StagedBatch first(engine);
  first.TrackWrites(hub.BeginBatch());
  EXPECT_FALSE(first.tracks_writes());  // nobody listens
  ASSERT_TRUE(first.Write(store, PartitionId(0), "k", std::string("1")).ok());
  EXPECT_FALSE(hub.StartCommit(first));
  StagedBatch second(engine);
  second.ReadThrough(&first);
  second.TrackWrites(hub.BeginBatch());
  ASSERT_TRUE(second.Write(store, PartitionId(0), "k", std::string("2")).ok());
  EXPECT_EQ(subscribe().status().code(), absl::StatusCode::kUnavailable);  // first commits
  ASSERT_TRUE(hub.FinishCommit(first, {}, absl::OkStatus()).ok());
  second.ReadThrough(nullptr);
  EXPECT_EQ(subscribe().status().code(), absl::StatusCode::kUnavailable);  // second is untracked
  EXPECT_FALSE(hub.StartCommit(second));
  ASSERT_TRUE(hub.FinishCommit(second, {}, absl::OkStatus()).ok());
  absl::StatusOr<std::shared_ptr<Subscriber>> after = subscribe();
  ASSERT_TRUE(after.ok()) << after.status();
  // A batch whose write-ahead failed commits nothing and lets registrations in as well.
  StagedBatch third(engine);
  third.TrackWrites(hub.BeginBatch());
  EXPECT_TRUE(third.tracks_writes());  // someone listens now
  ASSERT_TRUE(third.Write(store, PartitionId(0), "k", std::string("3")).ok());
  EXPECT_TRUE(hub.StartCommit(third));  // exact: a subscriber gets every write
  EXPECT_EQ(hub.FinishCommit(third, {}, absl::UnavailableError("changelog delivery failed")).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine.Get(store, PartitionId(0), "k").value(), std::optional<std::string>("2"));
  absl::StatusOr<std::shared_ptr<Subscriber>> again = subscribe();
  EXPECT_TRUE(again.ok()) << again.status();
  hub.Unregister(after->get());
  if (again.ok()) hub.Unregister(again->get());
}

// Two ingestion threads, each committing through its own lane of one hub.
class SubscriptionHubLanesTest : public ::testing::Test {
 protected:
  static SubscriptionHubOptions TwoLanes() {
    SubscriptionHubOptions options;
    options.lanes = 2;
    return options;
  }
  TempEngine temp;
  const StoreHandle store{0};
  SubscriptionHub hub{TwoLanes()};
};

// Two ingestion threads commit through their own lanes: a registration waits until neither
// commits nor has an untracked batch under way.
TEST_F(SubscriptionHubLanesTest, ARegistrationWaitsForABoundaryOfEveryLane) {
  ASSERT_NE(temp.engine, nullptr);
  StoreEngine& engine = *temp.engine;
  const auto subscribe = [&] {
    return hub.Subscribe(
        store, "s", KeyMatch{}, {0, 1}, {}, 10, false, absl::Milliseconds(50),
        [] { return absl::OkStatus(); }, [] { return absl::OkStatus(); });
  };
  StagedBatch lane0(engine);
  lane0.TrackWrites(hub.BeginBatch(0));
  ASSERT_TRUE(lane0.Write(store, PartitionId(0), "a", std::string("1")).ok());
  StagedBatch lane1(engine);
  lane1.TrackWrites(hub.BeginBatch(1));
  ASSERT_TRUE(lane1.Write(store, PartitionId(1), "b", std::string("1")).ok());
  EXPECT_FALSE(hub.StartCommit(lane0, 0));
  EXPECT_EQ(subscribe().status().code(), absl::StatusCode::kUnavailable);
  ASSERT_TRUE(hub.FinishCommit(lane0, {}, absl::OkStatus(), 0).ok());
  // Lane 0 is at a boundary; lane 1's batch is untracked still.
  EXPECT_EQ(subscribe().status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(hub.StartCommit(lane1, 1));
  ASSERT_TRUE(hub.FinishCommit(lane1, {}, absl::OkStatus(), 1).ok());
  absl::StatusOr<std::shared_ptr<Subscriber>> after = subscribe();
  ASSERT_TRUE(after.ok()) << after.status();
  hub.Unregister(after->get());
}

// Lanes that take turns committing are never all at a boundary at once: a waiting
// registration goes before the next commit of a lane (which holds its StartCommit until the
// registration has taken its snapshot), and gets that commit's changes.
TEST_F(SubscriptionHubLanesTest, AWaitingRegistrationGoesBeforeTheNextCommitOfAnyLane) {
  ASSERT_NE(temp.engine, nullptr);
  StoreEngine& engine = *temp.engine;
  auto listener = Subscribe(hub, 0, KeyMatch{}, 100, false, {0, 1});  // batches are tracked
  StagedBatch lane0(engine);
  lane0.TrackWrites(hub.BeginBatch(0));
  ASSERT_TRUE(lane0.Write(store, PartitionId(0), "a", std::string("1")).ok());
  EXPECT_TRUE(hub.StartCommit(lane0, 0));

  std::atomic<bool> lane1_started{false};
  std::atomic<bool> snapshot_saw_lane1{true};
  absl::StatusOr<std::shared_ptr<Subscriber>> late = absl::UnknownError("not run");
  std::thread registration([&] {
    late = hub.Subscribe(
        store, "s", KeyMatch{}, {0, 1}, {}, 100, false, absl::Seconds(60),
        [] { return absl::OkStatus(); },
        [&] {
          snapshot_saw_lane1 = lane1_started.load();
          return absl::OkStatus();
        });
  });
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (hub.waiting() == 0 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  ASSERT_EQ(hub.waiting(), 1);
  StagedBatch lane1(engine);
  lane1.TrackWrites(hub.BeginBatch(1));
  EXPECT_TRUE(lane1.tracks_writes());
  ASSERT_TRUE(lane1.Write(store, PartitionId(1), "b", std::string("1")).ok());
  std::thread lane1_thread([&] {
    hub.StartCommit(lane1, 1);
    lane1_started = true;
    ASSERT_TRUE(hub.FinishCommit(lane1, {}, absl::OkStatus(), 1).ok());
  });
  ASSERT_TRUE(hub.FinishCommit(lane0, {}, absl::OkStatus(), 0).ok());
  registration.join();
  lane1_thread.join();
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_FALSE(snapshot_saw_lane1.load());
  // Registered before lane 1 committed: it gets lane 1's change, not lane 0's.
  std::vector<ChangeEvent> got = TakeAll(*(*late)->queue);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].key, "b");
  EXPECT_EQ(TakeAll(*listener).size(), 2u);
  hub.Unregister(late->get());
}

}  // namespace
}  // namespace kiq::node
