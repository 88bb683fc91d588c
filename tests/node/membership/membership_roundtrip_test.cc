// The membership protocol end to end on a dev Kafka: MembershipPublisher writes records and
// tombstones, MembershipTailer reads them into a RoutingTable.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <librdkafka/rdkafkacpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/kafka/dev_kafka.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kiq/v1/membership.pb.h"
#include "node/membership/membership_publisher.h"
#include "router/membership_tailer.h"
#include "router/routing_table.h"
#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using ::kiq::router::MembershipTailer;
using ::kiq::router::RoutingTable;
using ::kiq::testing::StatusIs;
using ::testing::ElementsAre;

constexpr absl::Duration kWait = absl::Seconds(30);

kiq::v1::MemberRecord Record(const std::string& node_id, std::vector<int32_t> partitions) {
  kiq::v1::MemberRecord r;
  r.set_node_id(node_id);
  r.set_application_id("app");
  r.set_grpc_endpoint(absl::StrCat("127.0.0.1:", 7000 + partitions.size()));
  r.add_stores("orders");
  for (int32_t p : partitions) {
    auto* owned = r.add_partitions();
    owned->set_partition(p);
    owned->set_state(kiq::v1::PARTITION_STATE_ACTIVE);
  }
  r.set_generation(1);
  r.set_written_at_ms(absl::ToUnixMillis(absl::Now()));
  r.set_lease_expiry_ms(absl::ToUnixMillis(absl::Now() + absl::Hours(1)));
  return r;
}

// Waits until `done()` holds, re-checking whenever the table changes, up to `timeout`.
bool WaitUntil(const RoutingTable& table, const std::function<bool()>& done,
               absl::Duration timeout = kWait) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    const uint64_t seen = table.version();  // before the check: no change can slip between
    if (done()) return true;
    if (absl::Now() >= deadline) return false;
    table.WaitForChange(seen, deadline);
  }
}

std::vector<std::string> Ids(const std::vector<kiq::v1::NodeInfo>& nodes) {
  std::vector<std::string> ids;
  for (const auto& n : nodes) ids.push_back(n.node_id());
  return ids;
}

class MembershipRoundtripTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<DevKafka>> kafka = DevKafka::Start(3);
    ASSERT_OK(kafka);
    kafka_ = std::move(*kafka);
  }

  std::unique_ptr<MembershipPublisher> Publisher(const std::string& topic,
                                                 const std::string& node_id) {
    absl::StatusOr<std::unique_ptr<MembershipPublisher>> p =
        MembershipPublisher::Create(KafkaClientConfig(kafka_->bootstrap_servers()), topic, node_id);
    EXPECT_OK(p);
    return p.ok() ? std::move(*p) : nullptr;
  }

  std::unique_ptr<MembershipTailer> Tailer(const std::string& topic, RoutingTable& table) {
    absl::StatusOr<std::unique_ptr<MembershipTailer>> t =
        MembershipTailer::Start(KafkaClientConfig(kafka_->bootstrap_servers()), topic, table);
    EXPECT_OK(t);
    return t.ok() ? std::move(*t) : nullptr;
  }

  std::unique_ptr<DevKafka> kafka_;
};

TEST_F(MembershipRoundtripTest, RecordsAndTombstoneReachTheTable) {
  const std::string topic = "app-members";
  ASSERT_OK(kafka_->CreateTopic(topic, 3));
  RoutingTable table;
  std::unique_ptr<MembershipTailer> tailer = Tailer(topic, table);
  ASSERT_NE(tailer, nullptr);
  std::unique_ptr<MembershipPublisher> n1 = Publisher(topic, "n1");
  std::unique_ptr<MembershipPublisher> n2 = Publisher(topic, "n2");
  ASSERT_NE(n1, nullptr);
  ASSERT_NE(n2, nullptr);

  n1->Publish(Record("n1", {0, 2, 4}));
  n2->Publish(Record("", {1, 3, 5}));  // node id filled in by the publisher
  ASSERT_TRUE(WaitUntil(table, [&] { return table.AllNodes().size() == 2; }))
      << "nodes seen: " << table.AllNodes().size();
  EXPECT_TRUE(WaitUntil(table, [&] { return tailer->CaughtUp(); }));
  EXPECT_THAT(Ids(table.AllNodes()), ElementsAre("n1", "n2"));
  for (int32_t p = 0; p < 6; ++p) {
    ASSERT_TRUE(table.OwnerOf(p).has_value()) << p;
    EXPECT_EQ(table.OwnerOf(p)->node.node_id(), p % 2 == 0 ? "n1" : "n2");
  }
  EXPECT_EQ(table.Node("n1")->host(), "127.0.0.1");

  // A newer record moves partition 4 to n2.
  n1->Publish(Record("n1", {0, 2}));
  n2->Publish(Record("n2", {1, 3, 4, 5}));
  ASSERT_TRUE(WaitUntil(table, [&] {
    auto owner = table.OwnerOf(4);
    return owner && owner->node.node_id() == "n2" && table.Node("n1")->partitions_size() == 2;
  }));

  ASSERT_OK(n1->PublishTombstone(absl::Seconds(10)));
  ASSERT_TRUE(WaitUntil(table, [&] { return !table.Node("n1").has_value(); }));
  EXPECT_THAT(Ids(table.AllNodes()), ElementsAre("n2"));
  EXPECT_FALSE(table.OwnerOf(0).has_value());
  EXPECT_EQ(table.OwnerOf(1)->node.node_id(), "n2");

  // A tailer started now replays the whole topic, tombstone included, and says when it has.
  RoutingTable late_table;
  std::unique_ptr<MembershipTailer> late = Tailer(topic, late_table);
  ASSERT_NE(late, nullptr);
  ASSERT_TRUE(WaitUntil(late_table, [&] { return late->CaughtUp(); }));
  EXPECT_THAT(Ids(late_table.AllNodes()), ElementsAre("n2"));
  EXPECT_EQ(late_table.OwnerOf(4)->node.node_id(), "n2");
}

TEST_F(MembershipRoundtripTest, TailerWaitsForTheTopicToExist) {
  const std::string topic = "late-members";
  RoutingTable table;
  std::unique_ptr<MembershipTailer> tailer = Tailer(topic, table);
  ASSERT_NE(tailer, nullptr);
  EXPECT_FALSE(tailer->CaughtUp());
  ASSERT_OK(kafka_->CreateTopic(topic, 2));
  std::unique_ptr<MembershipPublisher> n1 = Publisher(topic, "n1");
  ASSERT_NE(n1, nullptr);
  n1->Publish(Record("n1", {0, 1}));
  ASSERT_TRUE(WaitUntil(table, [&] { return table.Node("n1").has_value(); }));
  EXPECT_TRUE(tailer->CaughtUp());
}

TEST_F(MembershipRoundtripTest, BadRecordsAreSkipped) {
  const std::string topic = "bad-members";
  ASSERT_OK(kafka_->CreateTopic(topic, 1));
  // Garbage, a record under another node's key, and a keyless tombstone, written raw.
  {
    std::string err;
    std::unique_ptr<RdKafka::Conf> conf(RdKafka::Conf::create(RdKafka::Conf::CONF_GLOBAL));
    ASSERT_EQ(conf->set("bootstrap.servers", kafka_->bootstrap_servers(), err),
              RdKafka::Conf::CONF_OK);
    std::unique_ptr<RdKafka::Producer> raw(RdKafka::Producer::create(conf.get(), err));
    ASSERT_NE(raw, nullptr) << err;
    std::string garbage = "\xff\xff\xff not a protobuf";
    std::string key = "x";
    ASSERT_EQ(raw->produce(topic, 0, RdKafka::Producer::RK_MSG_COPY, garbage.data(), garbage.size(),
                           key.data(), key.size(), 0, nullptr),
              RdKafka::ERR_NO_ERROR);
    std::string other = Record("someone-else", {0}).SerializeAsString();
    ASSERT_EQ(raw->produce(topic, 0, RdKafka::Producer::RK_MSG_COPY, other.data(), other.size(),
                           key.data(), key.size(), 0, nullptr),
              RdKafka::ERR_NO_ERROR);
    ASSERT_EQ(
        raw->produce(topic, 0, RdKafka::Producer::RK_MSG_COPY, nullptr, 0, nullptr, 0, 0, nullptr),
        RdKafka::ERR_NO_ERROR);
    ASSERT_EQ(raw->flush(10000), RdKafka::ERR_NO_ERROR);
  }
  std::unique_ptr<MembershipPublisher> n1 = Publisher(topic, "n1");
  ASSERT_NE(n1, nullptr);
  n1->Publish(Record("n1", {0}));

  RoutingTable table;
  std::unique_ptr<MembershipTailer> tailer = Tailer(topic, table);
  ASSERT_NE(tailer, nullptr);
  ASSERT_TRUE(WaitUntil(table, [&] { return table.Node("n1").has_value(); }));
  EXPECT_THAT(Ids(table.AllNodes()), ElementsAre("n1"));
}

TEST_F(MembershipRoundtripTest, TombstoneTimesOutWithoutBrokers) {
  // Nothing listens on this port: the tombstone cannot be acknowledged.
  absl::StatusOr<std::unique_ptr<MembershipPublisher>> p =
      MembershipPublisher::Create(KafkaClientConfig("127.0.0.1:1"), "app-members", "n1");
  ASSERT_OK(p);
  EXPECT_THAT((*p)->PublishTombstone(absl::Milliseconds(300)),
              StatusIs(absl::StatusCode::kDeadlineExceeded, "publish tombstone node=n1"));
}

TEST(MembershipPublisherTest, RequiresTopicAndNodeId) {
  EXPECT_THAT(MembershipPublisher::Create(KafkaClientConfig("127.0.0.1:1"), "", "n1"),
              StatusIs(absl::StatusCode::kInvalidArgument, "topic"));
  EXPECT_THAT(MembershipPublisher::Create(KafkaClientConfig("127.0.0.1:1"), "t", ""),
              StatusIs(absl::StatusCode::kInvalidArgument, "node id"));
}

}  // namespace
}  // namespace kiq::node
