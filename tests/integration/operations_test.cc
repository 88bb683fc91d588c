// Operations: the Prometheus exposition of a running node moves as ingestion and queries do
// (and passes promtool), health and readiness answer, and SIGTERM during queries loses nothing.
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/metrics.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kPartitions = 6;

double Sum(const std::string& exposition, const std::string& name,
           const std::vector<std::string>& labels = {}) {
  return MetricSum(exposition, name, labels);
}

class OperationsTest : public KafkaFixture {
 protected:
  void SetUp() override { StartKafka("operations", OrdersDemoTopics(kPartitions)); }

  void StartNode() {
    auto node = LaunchNode(ExampleTopology("orders"));
    ASSERT_OK(node);
    node_ = std::move(*node);
    client_ = std::make_unique<NodeClient>(node_->target());
  }

  httplib::Result HttpGet(const std::string& path) {
    httplib::Client http("127.0.0.1", node_->http_port());
    return http.Get(path);
  }

  std::string Scrape() {
    auto result = HttpGet("/metrics");
    EXPECT_TRUE(result && result->status == 200);
    return result ? result->body : std::string();
  }

  void ProduceOrders(int n, Positions* produced) {
    for (int i = 0; i < n; ++i) {
      auto delivered = producer_->Produce(Topic("orders"), absl::StrCat("user-", i % 7), "food");
      ASSERT_OK(delivered);
      int64_t& next = (*produced)[{Topic("orders"), delivered->partition}];
      next = std::max(next, delivered->offset + 1);
    }
  }

  std::unique_ptr<NodeProcess> node_;
  std::unique_ptr<NodeClient> client_;
};

TEST_F(OperationsTest, MetricsMoveWithIngestionAndQueriesAndPassPromtool) {
  StartNode();
  auto health = HttpGet("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  ASSERT_TRUE(WaitFor(
      [&] {
        auto ready = HttpGet("/readyz");
        return ready && ready->status == 200;
      },
      absl::Seconds(60)));
  const std::string before = Scrape();
  EXPECT_EQ(Sum(before, "kiq_records_consumed_total"), 0);
  EXPECT_EQ(Sum(before, "kiq_partitions", {"state=\"active\""}), kPartitions);

  Positions produced;
  ProduceOrders(50, &produced);
  auto bad = producer_->Produce(Topic("orders"), "", std::nullopt);  // null value: bad for a count
  ASSERT_OK(bad);
  produced[{Topic("orders"), bad->partition}] =
      std::max(produced[{Topic("orders"), bad->partition}], bad->offset + 1);
  ASSERT_TRUE(WaitFor([&] { return client_->CaughtUp("order_count", Topic("orders"), produced); },
                      absl::Seconds(60)));
  for (int i = 0; i < 5; ++i) {
    kiq::v1::GetResponse response;
    ASSERT_TRUE(client_->Get("order_count", absl::StrCat("user-", i), &response).ok());
  }
  kiq::v1::GetResponse unknown;
  EXPECT_FALSE(client_->Get("nope", "user-1", &unknown).ok());

  // Gauges and counters as they should have moved. (Members appear within a lease interval.)
  std::string after;
  ASSERT_TRUE(WaitFor(
      [&] {
        after = Scrape();
        return Sum(after, "kiq_members") == 1 && Sum(after, "kiq_store_estimated_keys") > 0;
      },
      absl::Seconds(30)))
      << after;
  EXPECT_EQ(Sum(after, "kiq_records_consumed_total"), 51);
  EXPECT_EQ(Sum(after, "kiq_records_materialized_total", {"store=\"order_count\""}), 50);
  EXPECT_EQ(Sum(after, "kiq_bad_records_total", {"store=\"order_count\"", "null_value"}), 1);
  EXPECT_EQ(
      Sum(after, "kiq_consumer_lag_records", {absl::StrCat("topic=\"", Topic("orders"), "\"")}), 0);
  EXPECT_GE(Sum(after, "kiq_queries_total", {"method=\"Get\"", "code=\"OK\""}), 5);
  EXPECT_EQ(Sum(after, "kiq_queries_total", {"method=\"Get\"", "code=\"NOT_FOUND\""}), 1);
  EXPECT_GE(Sum(after, "kiq_query_duration_seconds_count", {"method=\"Get\""}), 6);
  EXPECT_GE(Sum(after, "kiq_rebalances_total", {"type=\"assign\""}), 1);
  EXPECT_EQ(Sum(after, "kiq_partitions", {"state=\"active\""}), kPartitions);

  // The exposition is valid for Prometheus' own checker, and every metric the dashboard and
  // alerts use is one the node exports.
  const std::string file = dir_ + "/metrics.txt";
  std::ofstream(file) << after;
  const std::string promtool =
      "promtool check metrics < " + file + " > " + dir_ + "/promtool.out 2>&1";
  EXPECT_EQ(std::system(promtool.c_str()), 0) << ReadFile(dir_ + "/promtool.out");
  const std::string check =
      absl::StrCat("/usr/bin/python3 ", kSourceDir, "/deploy/check_deploy.py --metrics ", file,
                   " > ", dir_, "/check.out 2>&1");
  EXPECT_EQ(std::system(check.c_str()), 0) << ReadFile(dir_ + "/check.out");
}

// SIGTERM while queries wait for a position: the server stops taking new ones but finishes
// those in flight (they complete once the record arrives), writes the membership tombstone,
// and exits 0; the store reopens with the same answers.
// kiq_records_materialized_total counts records once their batch is committed, so it never
// runs ahead of what a Get sees: while one key's records stream in (every record +1), each
// scrape's count is at most what a Get right after it answers. On the dev Kafka every broker
// answers 100 ms late, so each batch spends that long between staging and its commit (its
// changelog is made durable first), which a metric counting staged records would show.
TEST_F(OperationsTest, TheMaterializedMetricNeverRunsAheadOfWhatAGetSees) {
  ASSERT_NO_FATAL_FAILURE(StartNode());
  kiq::v1::GetResponse ready;
  ASSERT_TRUE(WaitFor([&] { return client_->Get("order_count", "hot", &ready).ok(); },
                      absl::Seconds(60)));  // every partition ACTIVE
  if (!external_kafka()) ASSERT_OK(kafka_->SetRtt(absl::Milliseconds(100)));
  std::atomic<bool> stop{false};
  std::atomic<int> produced{0};
  std::thread producer([&] {
    while (!stop.load() && produced.load() < 3000) {
      if (!producer_->ProduceAsync(Topic("orders"), "hot", "food").ok()) break;
      ++produced;
      if (produced.load() % 50 == 0) absl::SleepFor(absl::Milliseconds(5));  // pacing
    }
  });
  absl::Cleanup join = [&] {
    stop = true;
    producer.join();
  };
  int checks = 0;
  int64_t last_metric = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    const int64_t metric = static_cast<int64_t>(
        Sum(Scrape(), "kiq_records_materialized_total", {"store=\"order_count\""}));
    kiq::v1::GetResponse response;
    const grpc::Status status = client_->Get("order_count", "hot", &response);
    ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
    int64_t got = 0;
    if (response.found()) {
      ASSERT_TRUE(absl::SimpleAtoi(response.entry().value(), &got));
    }
    ASSERT_LE(metric, got) << "the metric ran ahead of the committed count (check " << checks
                           << ")";
    last_metric = metric;
    ++checks;
    if (metric >= 1000) break;
  }
  std::move(join).Invoke();
  EXPECT_GE(last_metric, 1000) << "not enough was materialized while checking (" << checks
                               << " checks)";
}

TEST_F(OperationsTest, SigtermDuringQueriesFinishesThemAndWritesTheTombstone) {
  StartNode();
  Positions produced;
  ProduceOrders(20, &produced);
  ASSERT_TRUE(WaitFor([&] { return client_->CaughtUp("order_count", Topic("orders"), produced); },
                      absl::Seconds(60)));
  kiq::v1::GetResponse before;
  ASSERT_TRUE(client_->Get("order_count", "user-1", &before).ok());
  const int64_t partition = before.entry().partition();
  const int64_t next = produced[{Topic("orders"), static_cast<int32_t>(partition)}];

  // Queries that wait for the next record of user-1's partition: in flight during SIGTERM.
  constexpr int kQueries = 8;
  std::atomic<int> ok{0};
  std::vector<std::string> errors(kQueries);
  std::vector<std::thread> queries;
  for (int i = 0; i < kQueries; ++i) {
    queries.emplace_back([&, i] {
      kiq::v1::GetResponse response;
      grpc::Status status = client_->GetAtLeast(
          "order_count", "user-1", {{{Topic("orders"), static_cast<int32_t>(partition)}, next + 1}},
          &response, 20);
      if (status.ok() && response.entry().value() == "4") {
        ++ok;
      } else {
        errors[i] = status.ok() ? response.DebugString() : status.error_message();
      }
    });
  }
  absl::SleepFor(absl::Milliseconds(300));  // let the queries reach the server (a load shape)
  node_->process().Signal(SIGTERM);
  // user-1 had 3 orders; this one is the 4th, at offset `next` of its partition.
  auto delivered = producer_->Produce(Topic("orders"), "user-1", "food");
  ASSERT_OK(delivered);
  ASSERT_EQ(delivered->offset, next);
  for (std::thread& t : queries) t.join();
  EXPECT_EQ(ok.load(), kQueries) << errors[0];
  auto code = node_->process().Wait(absl::Seconds(30));
  ASSERT_OK(code);
  EXPECT_EQ(*code, 0) << node_->process().ReadLog();
  EXPECT_THAT(node_->process().ReadLog(), HasSubstr("membership tombstone written"));

  // The last record of n1 on the members topic is its tombstone.
  std::vector<ConsumedRecord> members =
      ConsumeAll(bootstrap_servers(), Topic("orders-demo-members"), 1000, absl::Seconds(5));
  std::optional<ConsumedRecord> last;
  for (const ConsumedRecord& r : members) {
    if (r.key == "n1" && (!last || r.offset > last->offset)) last = r;
  }
  ASSERT_TRUE(last.has_value());
  EXPECT_FALSE(last->value.has_value());

  StartNode();
  produced[{Topic("orders"), static_cast<int32_t>(partition)}] = next + 1;
  ASSERT_TRUE(WaitFor([&] { return client_->CaughtUp("order_count", Topic("orders"), produced); },
                      absl::Seconds(60)));
  kiq::v1::GetResponse after;
  ASSERT_TRUE(client_->Get("order_count", "user-1", &after).ok());
  EXPECT_EQ(after.entry().value(), "4");
}

}  // namespace
}  // namespace kiq::testing
