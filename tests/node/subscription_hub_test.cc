#include "node/subscription_hub.h"

#include <map>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"

namespace kiq::node {
namespace {

using router::ChangeEvent;
using router::KeyMatch;

Change MakeChange(int store, int32_t p, const std::string& key, std::optional<std::string> old_value,
                  std::optional<std::string> new_value, int64_t offset) {
  return Change{StoreHandle{store}, PartitionId(p), key, std::move(old_value),
                std::move(new_value), "topic", offset};
}

std::vector<ChangeEvent> TakeAll(SubscriberQueue& queue, absl::Status* end = nullptr) {
  std::vector<ChangeEvent> out;
  absl::Status s = queue.Take(1000000, &out);
  if (end != nullptr) *end = s;
  return out;
}

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
  auto prefix = hub.Register(StoreHandle{0}, KeyMatch{KeyMatch::Kind::kPrefix, "a"}, 100, false);
  auto key = hub.Register(StoreHandle{1}, KeyMatch{KeyMatch::Kind::kKey, "b"}, 100, false);
  EXPECT_EQ(hub.size(), 2u);
  int notified = 0;
  prefix->SetNotify([&] { ++notified; });
  hub.Publish({MakeChange(0, 0, "a1", std::nullopt, "x", 1), MakeChange(0, 1, "b", "o", "y", 2),
               MakeChange(1, 1, "b", "o", std::nullopt, 3), MakeChange(0, 0, "a2", "p", "z", 4)});
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
  hub.Unregister(prefix.get());
  EXPECT_EQ(hub.size(), 1u);
}

TEST(SubscriptionHubTest, OverflowEndsWithResourceExhaustedAndDropsThePending) {
  SubscriptionHub hub;
  auto queue = hub.Register(StoreHandle{0}, KeyMatch{}, 3, false);
  bool notified = false;
  queue->SetNotify([&] { notified = true; });
  for (int i = 0; i < 5; ++i) {
    hub.Publish({MakeChange(0, 0, absl::StrCat("k", i), std::nullopt, "v", i)});
  }
  EXPECT_TRUE(queue->ended());
  EXPECT_TRUE(notified);
  EXPECT_EQ(queue->pending(), 0u);
  absl::Status end;
  EXPECT_TRUE(TakeAll(*queue, &end).empty());
  EXPECT_TRUE(absl::IsResourceExhausted(end)) << end;
  // Nothing more is queued after the end.
  hub.Publish({MakeChange(0, 0, "k9", std::nullopt, "v", 9)});
  EXPECT_EQ(queue->pending(), 0u);
}

TEST(SubscriptionHubTest, CoalesceKeepsTheLatestValuePerKeyWhenFull) {
  SubscriptionHub hub;
  auto queue = hub.Register(StoreHandle{0}, KeyMatch{}, 10, true);
  std::map<std::string, std::string> latest;
  for (int i = 0; i < 20000; ++i) {
    const std::string key = absl::StrCat("hot", i % 5);
    const std::string value = absl::StrCat("v", i);
    hub.Publish({MakeChange(0, i % 5, key, latest.count(key) ? std::optional(latest[key])
                                                             : std::nullopt,
                            value, i)});
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
  auto queue = hub.Register(StoreHandle{0}, KeyMatch{}, 10, false);
  hub.Publish({MakeChange(0, 0, "k", std::nullopt, "v", 1)});
  hub.EndAll(absl::AbortedError("moved"));
  std::vector<ChangeEvent> got;
  absl::Status s = queue->Take(1, &got);
  EXPECT_EQ(got.size(), 1u);
  EXPECT_TRUE(absl::IsAborted(s)) << s;  // the last change and the end come together
}

}  // namespace
}  // namespace kiq::node
