// kiq-dev-kafka's fault injection, end to end through its control channel: with every broker
// down a producer's delivery times out and a fresh client's metadata request fails, and once
// they are up both succeed again; an RTT delays every response; a kiq-node keeps answering
// from its stores through an outage and catches up after it. Every wait has a deadline.
// An external cluster (KIQ_TEST_BOOTSTRAP_SERVERS) has no control channel: skipped there.
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "tests/testing/kafka_admin.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kPartitions = 3;

class DevKafkaControlTest : public KafkaFixture {
 protected:
  void SetUp() override {
    StartKafka("dev-kafka-control", {{"events", kPartitions}});
    if (HasFatalFailure()) return;
    if (external_kafka()) {
      EXPECT_THAT(kafka_->BrokersDown(), StatusIs(absl::StatusCode::kUnimplemented, "external"));
      GTEST_SKIP() << "fault injection needs kiq-dev-kafka's control channel; the external "
                      "cluster "
                   << bootstrap_servers() << " has none";
    }
  }

  // A metadata request of a new client (nothing cached), answered within `timeout`.
  absl::Status Metadata(absl::Duration timeout) {
    return ListTopics(bootstrap_servers(), timeout).status();
  }
};

TEST_F(DevKafkaControlTest, BrokersDownFailDeliveryAndMetadataUntilTheyAreUp) {
  // Records time out after 2 s instead of librdkafka's 5 minutes; reconnects are retried at
  // least every second (instead of up to 10 s) once the brokers are back.
  auto producer =
      TestProducer::Create(bootstrap_servers(), "murmur2_random",
                           {{"message.timeout.ms", "2000"}, {"reconnect.backoff.max.ms", "1000"}});
  ASSERT_OK(producer);
  ASSERT_OK((*producer)->Produce(Topic("events"), "k", "before"));
  ASSERT_OK(Metadata(absl::Seconds(10)));

  ASSERT_OK(kafka_->BrokersDown());
  absl::Time start = absl::Now();
  EXPECT_THAT(Metadata(absl::Seconds(3)), StatusIs(absl::StatusCode::kUnavailable, "metadata"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  start = absl::Now();
  auto during = (*producer)->Produce(Topic("events"), "k", "during");
  EXPECT_THAT(during, StatusIs(absl::StatusCode::kUnavailable, "timed out"));
  // The message timeout decided, not the producer's 10 s wait for the report.
  EXPECT_LT(absl::Now() - start, absl::Seconds(9));

  ASSERT_OK(kafka_->BrokersUp());
  absl::Status metadata;
  EXPECT_TRUE(WaitFor(
      [&] {
        metadata = Metadata(absl::Seconds(2));
        return metadata.ok();
      },
      absl::Seconds(30)))
      << metadata;
  // librdkafka reconnects with a backoff (at most reconnect.backoff.max.ms, 10 s).
  absl::StatusOr<TestProducer::Delivered> after;
  ASSERT_TRUE(WaitFor(
      [&] {
        after = (*producer)->Produce(Topic("events"), "k", "after");
        return after.ok();
      },
      absl::Seconds(60)))
      << after.status();

  std::set<std::string> values;
  for (const ConsumedRecord& r :
       ConsumeAll(bootstrap_servers(), Topic("events"), 2, absl::Seconds(30))) {
    values.insert(r.value.value_or("<null>"));
  }
  EXPECT_EQ(values, (std::set<std::string>{"before", "after"}));
}

TEST_F(DevKafkaControlTest, RttDelaysEveryResponseUntilReset) {
  ASSERT_OK(producer_->Produce(Topic("events"), "k", "warm"));  // connected, metadata known
  constexpr absl::Duration kRtt = absl::Milliseconds(400);
  ASSERT_OK(kafka_->SetRtt(kRtt));
  absl::Time start = absl::Now();
  ASSERT_OK(producer_->Produce(Topic("events"), "k", "slow"));
  EXPECT_GE(absl::Now() - start, kRtt);
  start = absl::Now();
  ASSERT_OK(Metadata(absl::Seconds(20)));
  EXPECT_GE(absl::Now() - start, kRtt);

  ASSERT_OK(kafka_->SetRtt(absl::ZeroDuration()));
  ASSERT_OK(producer_->Produce(Topic("events"), "k", "fast"));
  ASSERT_OK(Metadata(absl::Seconds(10)));
}

TEST_F(DevKafkaControlTest, OneBrokerAndBadRequests) {
  ASSERT_OK(kafka_->BrokerDown(2));
  ASSERT_OK(kafka_->BrokerUp(2));
  EXPECT_THAT(kafka_->BrokerDown(7),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no broker 7"));
  EXPECT_THAT(kafka_->SetRtt(absl::Milliseconds(-5)),
              StatusIs(absl::StatusCode::kFailedPrecondition, "bad rtt"));
  // The cluster still works.
  ASSERT_OK(producer_->Produce(Topic("events"), "k", "v"));
}

// An outage seen by a node: queries keep being answered from the stores, and once the brokers
// are back the node reads on from where it stood. What its Kafka clients said of the outage
// is in kiq's log format, down to the shutdown (before: librdkafka's own `%3|...|FAIL|...`
// lines on stderr, some only at shutdown).
TEST_F(DevKafkaControlTest, NodeServesThroughAnOutageAndCatchesUpAfterIt) {
  const std::string config = WriteFile("events.yaml",
                                       "application_id: outage\n"
                                       "sources:\n"
                                       "  - topic: events\n"
                                       "stores:\n"
                                       "  - name: latest\n"
                                       "    source: events\n"
                                       "    table: {}\n");
  auto node = LaunchNode(config);
  ASSERT_OK(node);
  NodeClient client((*node)->target());
  ProduceAndTrack("events", "k", "before");
  ASSERT_TRUE(WaitFor([&] { return client.CaughtUp("latest", Topic("events"), produced_); },
                      absl::Seconds(60)))
      << (*node)->process().ReadLog();

  ASSERT_OK(kafka_->BrokersDown());
  ASSERT_TRUE(WaitFor([&] { return !Metadata(absl::Seconds(1)).ok(); }, absl::Seconds(10)));
  kiq::v1::GetResponse response;
  grpc::Status status = client.Get("latest", "k", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.entry().value(), "before");
  ASSERT_OK(kafka_->BrokersUp());

  // The producer reconnects with a backoff too.
  absl::StatusOr<TestProducer::Delivered> after;
  ASSERT_TRUE(WaitFor(
      [&] {
        after = producer_->Produce(Topic("events"), "k", "after");
        return after.ok();
      },
      absl::Seconds(60)))
      << after.status();
  produced_[{Topic("events"), after->partition}] = after->offset + 1;
  ASSERT_TRUE(WaitFor(
      [&] {
        return client.CaughtUp("latest", Topic("events"), produced_) &&
               client.Get("latest", "k", &response).ok() && response.entry().value() == "after";
      },
      absl::Seconds(60)))
      << (*node)->process().ReadLog();
  EXPECT_TRUE((*node)->process().running());

  EXPECT_THAT((*node)->process().Terminate(absl::Seconds(30)), IsOkAndHolds(0));
  const std::string log = (*node)->process().ReadLog();
  const std::regex librdkafka_format(R"(^%\d\|)");
  const std::regex kiq_kafka_line(
      R"(^\d{4}-\d\d-\d\dT[\d:.]+ (warning|error|info) node=n1 kafka: )");
  int kafka_lines = 0;
  for (const std::string& line :
       std::vector<std::string>(absl::StrSplit(log, '\n', absl::SkipEmpty()))) {
    EXPECT_FALSE(std::regex_search(line, librdkafka_format)) << "librdkafka's own format: " << line;
    if (std::regex_search(line, kiq_kafka_line)) ++kafka_lines;
  }
  EXPECT_GT(kafka_lines, 0) << "the outage left no kafka: line in kiq's format\n" << log;
}

// `kiq-dev-kafka --config` creates every topic a topology needs: its sources with
// --partitions partitions and its internal topics, which a node cannot create itself on the
// mock cluster (it has no Admin API). A node of the orders example starts on it with nothing
// else created and counts what is produced.
TEST(DevKafkaConfigTest, CreatesEveryTopicATopologyNeeds) {
  if (!ExternalBootstrapServers().empty()) GTEST_SKIP() << "runs kiq-dev-kafka itself";
  const std::string dir = MakeTempDir("dev-kafka-config");
  const std::string topology = ExampleTopology("orders");
  auto kafka = DevKafkaProcess::Start(dir, {}, {"--config=" + topology, "--partitions=4"});
  ASSERT_OK(kafka);
  absl::StatusOr<std::map<std::string, int>> topics =
      ListTopics((*kafka)->bootstrap_servers(), absl::Seconds(10));
  ASSERT_OK(topics);
  EXPECT_EQ(topics->count("orders") ? topics->at("orders") : 0, 4);
  EXPECT_EQ(topics->count("customers") ? topics->at("customers") : 0, 4);

  NodeProcess::Options options;
  options.config = topology;
  options.bootstrap_servers = (*kafka)->bootstrap_servers();
  options.data_dir = dir + "/data-n1";
  auto node = NodeProcess::Start(dir, options);
  ASSERT_OK(node);
  auto producer = TestProducer::Create((*kafka)->bootstrap_servers());
  ASSERT_OK(producer);
  for (int i = 0; i < 3; ++i) ASSERT_OK((*producer)->Produce("orders", "u1", "o"));
  NodeClient client((*node)->target());
  kiq::v1::GetResponse response;
  EXPECT_TRUE(WaitFor(
      [&] {
        return client.Get("order_count", "u1", &response).ok() && response.found() &&
               response.entry().value() == "3";
      },
      absl::Seconds(60)))
      << response.DebugString() << (*node)->process().ReadLog();
  EXPECT_THAT((*node)->process().ReadLog(), Not(HasSubstr("do not exist")));
  ASSERT_OK((*node)->process().Terminate(absl::Seconds(20)).status());
  node->reset();
  kafka->reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kiq::testing
