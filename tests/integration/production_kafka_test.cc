// Production Kafka behaviour that the dev Kafka can show: a Kafka that stops answering (the dev
// Kafka process SIGSTOPped: connections stay open and nothing answers, as with a hung or
// partitioned broker) neither stops the answers nor the shutdown.
#include <signal.h>

#include <map>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;

constexpr int kPartitions = 6;
constexpr int kKeys = 12;

class ProductionKafkaTest : public KafkaFixture {
 protected:
  void SetUp() override {
    StartKafka("production-kafka", OrdersDemoTopics(kPartitions));
    if (external_kafka()) {
      GTEST_SKIP() << "stops the dev Kafka process (SIGSTOP); on an external cluster stop the "
                      "broker by hand (see the production-Kafka resolution note)";
    }
  }

  // Every node of `ids` on the orders example, settled, with `orders` records over kKeys keys
  // produced and counted in truth_.
  void StartCluster(const std::vector<std::string>& ids, int orders,
                    std::vector<std::string> extra_flags = {}) {
    for (const std::string& id : ids) {
      auto node = LaunchNode(ExampleTopology("orders"), id, extra_flags);
      ASSERT_OK(node);
      clients_[id] = std::make_unique<NodeClient>((*node)->target());
      nodes_[id] = std::move(*node);
    }
    ASSERT_TRUE(WaitFor(
        [&] {
          return clients_.begin()
              ->second->SettledOwners({ids.begin(), ids.end()}, kPartitions)
              .has_value();
        },
        absl::Seconds(60)));
    for (int i = 0; i < orders; ++i) {
      const std::string key = absl::StrCat("user-", i % kKeys);
      ProduceAndTrack("orders", key, "food");
      ++truth_[key];
    }
    for (auto& [id, client] : clients_) {
      NodeClient& c = *client;
      ASSERT_TRUE(WaitFor([&] { return c.CaughtUp("order_count", Topic("orders"), produced_); },
                          absl::Seconds(60)));
    }
  }

  // One Get of every key through `client`; the number of failed or wrong answers.
  int ReadEveryKey(NodeClient& client) {
    int bad = 0;
    for (const auto& [key, count] : truth_) {
      kiq::v1::GetResponse response;
      grpc::Status status = client.Get("order_count", key, &response, /*timeout_seconds=*/2);
      if (!status.ok() || !response.found() || response.entry().value() != absl::StrCat(count)) {
        ++bad;
        if (failures_.size() < 10) {
          failures_.push_back(absl::StrCat(absl::FormatTime("%H:%M:%E3S", absl::Now(),
                                                            absl::LocalTimeZone()),
                                           " ", key, ": ", status.error_message(),
                                           status.ok() ? response.entry().value() : ""));
        }
      }
    }
    return bad;
  }

  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  std::map<std::string, std::unique_ptr<NodeClient>> clients_;
  std::map<std::string, int64_t> truth_;
  std::vector<std::string> failures_;  // the first few, for the failure message
};

// Before: every query failed "no live node owns partition" from ~8 s into an outage (leases
// expired while the members topic could not be read, and the group session was lost) until
// after the broker was back.
TEST_F(ProductionKafkaTest, NodesKeepAnsweringWhileKafkaDoesNotAnswer) {
  ASSERT_NO_FATAL_FAILURE(StartCluster({"n1", "n2"}, 240));
  Process& kafka = kafka_->process();
  kafka.Signal(SIGSTOP);
  // Longer than the session timeout (6 s here) and the members lease (10 s).
  const absl::Time until = absl::Now() + absl::Seconds(16);
  int rounds = 0;
  int bad = 0;
  while (absl::Now() < until) {
    for (auto& [id, client] : clients_) bad += ReadEveryKey(*client);
    ++rounds;
  }
  // The node says why it still serves.
  httplib::Client http("127.0.0.1", nodes_["n1"]->http_port());
  auto ready = http.Get("/readyz");
  kafka.Signal(SIGCONT);
  EXPECT_EQ(bad, 0) << "failed or wrong answers in " << rounds << " rounds of "
                    << truth_.size() * clients_.size() << " reads during the outage; first: "
                    << absl::StrJoin(failures_, "; ");
  EXPECT_GE(rounds, 3);
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_THAT(ready->body, AnyOf(HasSubstr("Kafka unreachable"), HasSubstr("unreadable")));
  // Back: the group is joined again and new records are counted exactly.
  for (int i = 0; i < 60; ++i) {
    const std::string key = absl::StrCat("user-", i % kKeys);
    ProduceAndTrack("orders", key, "food");
    ++truth_[key];
  }
  for (auto& [id, client] : clients_) {
    NodeClient& c = *client;
    ASSERT_TRUE(
        WaitFor([&] { return c.CaughtUp("order_count", Topic("orders"), produced_); }, absl::Seconds(90)))
        << id;
    EXPECT_TRUE(WaitFor([&] { return ReadEveryKey(c) == 0; }, absl::Seconds(30))) << id;
  }
}

// Before: SIGTERM with a Kafka that does not answer hung in the Kafka clients' close (the
// process outlived any grace period).
TEST_F(ProductionKafkaTest, ShutdownIsBoundedWhenKafkaDoesNotAnswer) {
  ASSERT_NO_FATAL_FAILURE(StartCluster({"n1"}, 60, {"--shutdown-timeout=4s"}));
  Process& kafka = kafka_->process();
  kafka.Signal(SIGSTOP);
  const absl::Time started = absl::Now();
  absl::StatusOr<int> code = nodes_["n1"]->process().Terminate(absl::Seconds(30));
  const absl::Duration took = absl::Now() - started;
  kafka.Signal(SIGCONT);
  ASSERT_OK(code);
  EXPECT_LT(took, absl::Seconds(12)) << "SIGTERM took " << took;
  const std::string log = nodes_["n1"]->process().ReadLog();
  if (*code == 3) {
    EXPECT_THAT(log, HasSubstr("shutdown did not finish within 4s"));
    EXPECT_THAT(log, HasSubstr("stores flushed"));
  } else {
    EXPECT_EQ(*code, 0) << log;
  }
  // The stores were left consistent: the node restarts on them and answers exactly.
  nodes_.clear();
  clients_.clear();
  auto node = LaunchNode(ExampleTopology("orders"), "n1");
  ASSERT_OK(node);
  NodeClient client((*node)->target());
  ASSERT_TRUE(WaitFor([&] { return client.CaughtUp("order_count", Topic("orders"), produced_); },
                      absl::Seconds(60)));
  EXPECT_EQ(ReadEveryKey(client), 0);
}

}  // namespace
}  // namespace kiq::testing
