#include "router/routing_table.h"

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kiq/v1/membership.pb.h"

namespace kiq::router {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kStartMs = 1'700'000'000'000;
constexpr int64_t kLeaseMs = 10'000;

std::vector<std::string> Ids(const std::vector<kiq::v1::NodeInfo>& nodes) {
  std::vector<std::string> ids;
  for (const auto& n : nodes) ids.push_back(n.node_id());
  return ids;
}

class RoutingTableTest : public ::testing::Test {
 protected:
  // A record written "now" with a lease of kLeaseMs, owning `partitions` (all ACTIVE).
  kiq::v1::MemberRecord Record(const std::string& node_id, int32_t generation,
                               std::initializer_list<int32_t> partitions,
                               std::vector<std::string> stores = {"orders"}) {
    kiq::v1::MemberRecord r;
    r.set_node_id(node_id);
    r.set_application_id("app");
    r.set_grpc_endpoint(absl::StrCat(node_id, ".local:7070"));
    r.set_http_endpoint(absl::StrCat(node_id, ".local:8080"));
    for (const auto& s : stores) r.add_stores(s);
    for (int32_t p : partitions) {
      kiq::v1::OwnedPartition* owned = r.add_partitions();
      owned->set_partition(p);
      owned->set_state(kiq::v1::PARTITION_STATE_ACTIVE);
    }
    r.set_generation(generation);
    r.set_written_at_ms(now_ms_.load());
    r.set_lease_expiry_ms(now_ms_.load() + kLeaseMs);
    return r;
  }

  void Advance(int64_t ms) { now_ms_ += ms; }

  std::string OwnerId(int32_t partition) {
    std::optional<PartitionOwner> owner = table_.OwnerOf(partition);
    return owner ? owner->node.node_id() : "<none>";
  }

  std::atomic<int64_t> now_ms_{kStartMs};
  RoutingTable table_{[this] { return absl::FromUnixMillis(now_ms_.load()); }};
};

TEST(ToNodeInfoTest, SplitsHostAndPort) {
  kiq::v1::MemberRecord r;
  r.set_node_id("n1");
  r.set_grpc_endpoint("kiq-0.kiq.default.svc:7070");
  r.set_http_endpoint("kiq-0:8080");
  r.add_stores("orders");
  r.add_partitions()->set_partition(3);
  r.set_generation(7);
  r.set_lease_expiry_ms(123);
  r.set_written_at_ms(100);
  kiq::v1::NodeInfo info = ToNodeInfo(r);
  EXPECT_EQ(info.node_id(), "n1");
  EXPECT_EQ(info.host(), "kiq-0.kiq.default.svc");
  EXPECT_EQ(info.port(), 7070);
  EXPECT_EQ(info.http_endpoint(), "kiq-0:8080");
  EXPECT_THAT(info.stores(), ElementsAre("orders"));
  ASSERT_EQ(info.partitions_size(), 1);
  EXPECT_EQ(info.partitions(0).partition(), 3);
  EXPECT_EQ(info.generation(), 7);
  EXPECT_EQ(info.lease_expiry_ms(), 123);
}

TEST(ToNodeInfoTest, BracketedIpv6AndMissingPort) {
  kiq::v1::MemberRecord r;
  r.set_grpc_endpoint("[::1]:9090");
  EXPECT_EQ(ToNodeInfo(r).host(), "::1");
  EXPECT_EQ(ToNodeInfo(r).port(), 9090);
  r.set_grpc_endpoint("127.0.0.1:7070");
  EXPECT_EQ(ToNodeInfo(r).host(), "127.0.0.1");
  EXPECT_EQ(ToNodeInfo(r).port(), 7070);
  r.set_grpc_endpoint("somehost");
  EXPECT_EQ(ToNodeInfo(r).host(), "somehost");
  EXPECT_EQ(ToNodeInfo(r).port(), 0);
  r.set_grpc_endpoint("somehost:notaport");
  EXPECT_EQ(ToNodeInfo(r).port(), 0);
}

TEST_F(RoutingTableTest, EmptyTableHasNoOwners) {
  EXPECT_FALSE(table_.OwnerOf(0).has_value());
  EXPECT_THAT(table_.AllNodes(), IsEmpty());
  EXPECT_FALSE(table_.Node("n1").has_value());
  EXPECT_EQ(table_.version(), 0u);
}

TEST_F(RoutingTableTest, ApplyMakesOwnersAndNodesVisible) {
  kiq::v1::MemberRecord b = Record("b", 1, {1, 3});
  b.mutable_partitions(1)->set_state(kiq::v1::PARTITION_STATE_RESTORING);
  table_.Apply(b);
  table_.Apply(Record("a", 1, {0, 2}));
  EXPECT_EQ(table_.version(), 2u);

  std::optional<PartitionOwner> owner = table_.OwnerOf(3);
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->node.node_id(), "b");
  EXPECT_EQ(owner->node.host(), "b.local");
  EXPECT_EQ(owner->node.port(), 7070);
  EXPECT_EQ(owner->state, kiq::v1::PARTITION_STATE_RESTORING);
  EXPECT_EQ(table_.OwnerOf(1)->state, kiq::v1::PARTITION_STATE_ACTIVE);
  EXPECT_EQ(OwnerId(0), "a");
  EXPECT_EQ(OwnerId(2), "a");
  EXPECT_EQ(OwnerId(4), "<none>");
  EXPECT_THAT(Ids(table_.AllNodes()), ElementsAre("a", "b"));
  ASSERT_TRUE(table_.Node("b").has_value());
  EXPECT_EQ(table_.Node("b")->partitions_size(), 2);
  EXPECT_FALSE(table_.Node("c").has_value());
}

TEST_F(RoutingTableTest, ExpiredLeaseIsIgnoredUntilRenewed) {
  table_.Apply(Record("a", 1, {0}));
  Advance(kLeaseMs - 1);
  EXPECT_EQ(OwnerId(0), "a");
  Advance(1);  // lease_expiry_ms == now: passed
  EXPECT_EQ(OwnerId(0), "<none>");
  EXPECT_THAT(table_.AllNodes(), IsEmpty());
  EXPECT_FALSE(table_.Node("a").has_value());
  EXPECT_THAT(table_.NodesForStore("orders"), IsEmpty());

  table_.Apply(Record("a", 1, {0}));  // renewed lease
  EXPECT_EQ(OwnerId(0), "a");
  EXPECT_THAT(Ids(table_.AllNodes()), ElementsAre("a"));
}

TEST_F(RoutingTableTest, HigherGenerationWinsAConflict) {
  table_.Apply(Record("a", 5, {0, 1}));
  Advance(100);
  table_.Apply(Record("b", 6, {1, 2}));
  EXPECT_EQ(OwnerId(0), "a");
  EXPECT_EQ(OwnerId(1), "b");
  EXPECT_EQ(OwnerId(2), "b");

  // The higher generation wins even when it was written before the lower one.
  Advance(100);
  table_.Apply(Record("a", 5, {0, 1}));
  EXPECT_EQ(OwnerId(1), "b");
}

// A standby replica is never an owner, however high its node's generation; replicas are
// listed freshest first and drop out with their node's lease.
TEST_F(RoutingTableTest, StandbyReplicasAreListedButNeverOwners) {
  table_.Apply(Record("a", 5, {0}));
  auto with_standby = [&](const std::string& id, int32_t generation, int64_t lag) {
    kiq::v1::MemberRecord r = Record(id, generation, {});
    kiq::v1::OwnedPartition* standby = r.add_partitions();
    standby->set_partition(0);
    standby->set_state(kiq::v1::PARTITION_STATE_STANDBY);
    standby->set_lag_records(lag);
    return r;
  };
  table_.Apply(with_standby("b", 9, 40));
  table_.Apply(with_standby("c", 9, 3));
  EXPECT_EQ(OwnerId(0), "a");
  std::vector<StandbyReplica> replicas = table_.Standbys(0);
  ASSERT_EQ(replicas.size(), 2u);
  EXPECT_EQ(replicas[0].node.node_id(), "c");
  EXPECT_EQ(replicas[0].lag_records, 3);
  EXPECT_EQ(replicas[1].node.node_id(), "b");
  EXPECT_TRUE(table_.Standbys(1).empty());
  // The owner's lease runs out: still no owner from a replica.
  Advance(kLeaseMs + 1);
  table_.Apply(with_standby("c", 9, 0));
  EXPECT_EQ(OwnerId(0), "<none>");
  replicas = table_.Standbys(0);
  ASSERT_EQ(replicas.size(), 1u);  // b's lease ran out too
  EXPECT_EQ(replicas[0].node.node_id(), "c");
}

TEST_F(RoutingTableTest, SameGenerationNewerRecordWins) {
  table_.Apply(Record("a", 5, {0}));
  Advance(100);
  table_.Apply(Record("b", 5, {0}));
  EXPECT_EQ(OwnerId(0), "b");
  Advance(100);
  table_.Apply(Record("a", 5, {0}));
  EXPECT_EQ(OwnerId(0), "a");
}

TEST_F(RoutingTableTest, WinnerExpiredFallsBackToLiveClaimant) {
  kiq::v1::MemberRecord winner = Record("b", 6, {0});
  winner.set_lease_expiry_ms(now_ms_ + 1000);
  table_.Apply(Record("a", 5, {0}));
  table_.Apply(winner);
  EXPECT_EQ(OwnerId(0), "b");
  Advance(1000);
  EXPECT_EQ(OwnerId(0), "a");
  Advance(kLeaseMs);
  EXPECT_EQ(OwnerId(0), "<none>");
}

TEST_F(RoutingTableTest, StaleRecordIsIgnored) {
  kiq::v1::MemberRecord old_record = Record("a", 1, {0});
  Advance(100);
  table_.Apply(Record("a", 2, {1}));
  const uint64_t v = table_.version();
  table_.Apply(old_record);
  EXPECT_EQ(table_.version(), v);
  EXPECT_EQ(OwnerId(0), "<none>");
  EXPECT_EQ(OwnerId(1), "a");
  EXPECT_EQ(table_.Node("a")->generation(), 2);
}

TEST_F(RoutingTableTest, SameRecordAgainIsNotAChange) {
  kiq::v1::MemberRecord r = Record("a", 1, {0});
  table_.Apply(r);
  table_.Apply(r);
  EXPECT_EQ(table_.version(), 1u);
  Advance(1);
  table_.Apply(Record("a", 1, {0}));  // renewed lease: a change
  EXPECT_EQ(table_.version(), 2u);
}

TEST_F(RoutingTableTest, NewerRecordReleasesPartitions) {
  table_.Apply(Record("a", 1, {0, 1}));
  Advance(1);
  table_.Apply(Record("a", 2, {1}));
  EXPECT_EQ(OwnerId(0), "<none>");
  EXPECT_EQ(OwnerId(1), "a");
}

TEST_F(RoutingTableTest, RecordWithoutNodeIdIsIgnored) {
  table_.Apply(Record("", 1, {0}));
  EXPECT_EQ(table_.version(), 0u);
  EXPECT_EQ(OwnerId(0), "<none>");
}

TEST_F(RoutingTableTest, TombstoneRemovesNode) {
  table_.Apply(Record("a", 1, {0}));
  table_.Apply(Record("b", 1, {1}));
  table_.Remove("a");
  EXPECT_EQ(table_.version(), 3u);
  EXPECT_EQ(OwnerId(0), "<none>");
  EXPECT_EQ(OwnerId(1), "b");
  EXPECT_THAT(Ids(table_.AllNodes()), ElementsAre("b"));
  EXPECT_FALSE(table_.Node("a").has_value());

  table_.Remove("a");  // unknown now: not a change
  table_.Remove("zzz");
  EXPECT_EQ(table_.version(), 3u);

  // The node comes back (restart): its new record is taken.
  Advance(1);
  table_.Apply(Record("a", 2, {0}));
  EXPECT_EQ(OwnerId(0), "a");
}

TEST_F(RoutingTableTest, NodesForStoreFiltersByStore) {
  table_.Apply(Record("c", 1, {}, {"orders", "customers"}));
  table_.Apply(Record("a", 1, {}, {"customers"}));
  table_.Apply(Record("b", 1, {}, {"orders"}));
  EXPECT_THAT(Ids(table_.NodesForStore("orders")), ElementsAre("b", "c"));
  EXPECT_THAT(Ids(table_.NodesForStore("customers")), ElementsAre("a", "c"));
  EXPECT_THAT(table_.NodesForStore("nope"), IsEmpty());
  EXPECT_THAT(Ids(table_.AllNodes()), ElementsAre("a", "b", "c"));
}

TEST_F(RoutingTableTest, WaitForChangeTimesOutWithoutChange) {
  table_.Apply(Record("a", 1, {0}));
  const absl::Time start = absl::Now();
  EXPECT_FALSE(table_.WaitForChange(table_.version(), absl::Now() + absl::Milliseconds(50)));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(45));
}

TEST_F(RoutingTableTest, WaitForChangeReturnsAtOnceIfAlreadyChanged) {
  table_.Apply(Record("a", 1, {0}));
  EXPECT_TRUE(table_.WaitForChange(0, absl::InfinitePast()));
}

TEST_F(RoutingTableTest, WaitForChangeWakesOnApply) {
  const uint64_t seen = table_.version();
  std::thread writer([&] {
    absl::SleepFor(absl::Milliseconds(20));
    table_.Apply(Record("a", 1, {0}));
  });
  EXPECT_TRUE(table_.WaitForChange(seen, absl::Now() + absl::Seconds(30)));
  EXPECT_EQ(OwnerId(0), "a");
  writer.join();
}

TEST_F(RoutingTableTest, WaitForChangeWakesOnRemove) {
  table_.Apply(Record("a", 1, {0}));
  const uint64_t seen = table_.version();
  std::thread writer([&] { table_.Remove("a"); });
  EXPECT_TRUE(table_.WaitForChange(seen, absl::Now() + absl::Seconds(30)));
  writer.join();
}

// Writers move partitions between nodes while readers look them up: every answer must be
// consistent with some record that was applied (an owner that claims the partition it was
// asked about), and the table must end in the state of the last records.
TEST_F(RoutingTableTest, ConcurrentReadersAndWriters) {
  constexpr int kNodes = 4;
  constexpr int kPartitions = 8;
  constexpr int kRounds = 500;
  std::atomic<bool> done{false};
  std::atomic<int64_t> lookups{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 3; ++r) {
    readers.emplace_back([&] {
      while (!done.load()) {
        for (int32_t p = 0; p < kPartitions; ++p) {
          std::optional<PartitionOwner> owner = table_.OwnerOf(p);
          if (!owner) continue;
          bool claims = false;
          for (const auto& owned : owner->node.partitions()) claims |= owned.partition() == p;
          ASSERT_TRUE(claims) << owner->node.node_id() << " does not claim " << p;
          ++lookups;
        }
        ASSERT_LE(table_.AllNodes().size(), static_cast<size_t>(kNodes));
      }
    });
  }
  std::vector<std::thread> writers;
  for (int w = 0; w < kNodes; ++w) {
    writers.emplace_back([&, w] {
      const std::string id = absl::StrCat("n", w);
      for (int round = 1; round <= kRounds; ++round) {
        kiq::v1::MemberRecord r;
        r.set_node_id(id);
        r.set_grpc_endpoint("h:1");
        r.set_generation(round);
        r.set_written_at_ms(kStartMs + round);
        r.set_lease_expiry_ms(kStartMs + kLeaseMs);
        // Round-robin: in round r, node w claims the partitions p with (p + r) % kNodes == w.
        for (int32_t p = 0; p < kPartitions; ++p) {
          if ((p + round) % kNodes == w) r.add_partitions()->set_partition(p);
        }
        table_.Apply(r);
        if (round % 50 == 0) {
          table_.Remove(id);
          table_.Apply(r);
        }
      }
    });
  }
  for (auto& t : writers) t.join();
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_GT(lookups.load(), 0);
  EXPECT_EQ(table_.AllNodes().size(), static_cast<size_t>(kNodes));
  for (int32_t p = 0; p < kPartitions; ++p) {
    EXPECT_EQ(OwnerId(p), absl::StrCat("n", (p + kRounds) % kNodes));
  }
}

}  // namespace
}  // namespace kiq::router
