// One kiq-node process on a kiq-dev-kafka process: produce known data, wait until the node's
// position reaches what was produced, and compare every answer with an independently
// computed truth.
#include <signal.h>

#include <atomic>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/grpc_status.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "kiq/v1/query.grpc.pb.h"
#include "tests/testing/deep_json.h"
#include "tests/testing/kafka_admin.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kPartitions = 6;

std::string OrdersTopology() { return ExampleTopology("orders"); }

// The shop application on JSON orders: the latest order and the count per user.
constexpr char kShopJsonTopology[] =
    "application_id: shop\n"
    "sources:\n"
    "  - topic: orders\n"
    "    value_format: json\n"
    "stores:\n"
    "  - name: orders_by_user\n"
    "    source: orders\n"
    "    table: {}\n"
    "  - name: order_count\n"
    "    source: orders\n"
    "    count: {}\n";

class SingleNodeTest : public KafkaFixture {
 protected:
  void SetUp() override {
    StartKafka("single-node", {{"customers", kPartitions},
                               {"orders", kPartitions},
                               {"orders-demo-order_count-changelog", kPartitions},
                               {"shop-order_count-changelog", kPartitions}});
  }

  void StartNode(const std::string& config = OrdersTopology(),
                 std::vector<std::string> extra_flags = {}) {
    auto node = LaunchNode(config, "n1", std::move(extra_flags));
    ASSERT_OK(node);
    node_ = std::move(*node);
    stub_ = kiq::v1::QueryService::NewStub(
        grpc::CreateChannel(node_->target(), grpc::InsecureChannelCredentials()));
    client_ = std::make_unique<NodeClient>(node_->target());
  }

  void Produce(const std::string& topic, const std::string& key,
               const std::optional<std::string>& value) {
    ProduceAndTrack(topic, key, value);
  }

  grpc::Status Count(const std::string& store, kiq::v1::CountResponse* response) {
    return client_->Count(store, response);
  }

  void WaitCaughtUp(const std::string& store, const std::string& topic) {
    ASSERT_TRUE(WaitFor([&] { return client_->CaughtUp(store, Topic(topic), produced_); },
                        absl::Seconds(60)))
        << "store " << store << " did not reach the produced offsets of " << topic << "\n"
        << node_->process().ReadLog();
  }

  grpc::Status Get(const std::string& store, const std::string& key,
                   kiq::v1::GetResponse* response) {
    return client_->Get(store, key, response);
  }

  Entries ScanAll(const std::string& store, int page_size, const std::string& from = "",
                  const std::string& to = "", int* pages = nullptr) {
    grpc::Status status;
    Entries out = client_->Scan(store, page_size, from, to, pages, &status);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return out;
  }

  std::unique_ptr<NodeProcess> node_;
  std::unique_ptr<kiq::v1::QueryService::Stub> stub_;
  std::unique_ptr<NodeClient> client_;
};

TEST_F(SingleNodeTest, MaterializesTablesAndCountsAndAnswersEveryQuery) {
  std::map<std::string, std::string> customers;
  std::map<std::string, std::string> order_count;
  for (int i = 0; i < 40; ++i) {
    const std::string key = absl::StrCat("u", i);
    Produce("customers", key, absl::StrCat("name-", i));
    customers[key] = absl::StrCat("name-", i);
  }
  for (int i = 0; i < 40; i += 3) {  // updates
    const std::string key = absl::StrCat("u", i);
    Produce("customers", key, absl::StrCat("renamed-", i));
    customers[key] = absl::StrCat("renamed-", i);
  }
  for (int i = 1; i < 40; i += 5) {  // deletes by null value
    const std::string key = absl::StrCat("u", i);
    Produce("customers", key, std::nullopt);
    customers.erase(key);
  }
  StartNode();
  std::mt19937 rng(7);
  std::map<std::string, int64_t> truth;
  for (int i = 0; i < 400; ++i) {
    const std::string key = absl::StrCat("u", rng() % 50);
    Produce("orders", key, absl::StrCat("food-", i));
    ++truth[key];
  }
  for (const auto& [k, n] : truth) order_count[k] = absl::StrCat(n);
  WaitCaughtUp("customers", "customers");
  WaitCaughtUp("order_count", "orders");

  for (int i = 0; i < 50; ++i) {
    const std::string key = absl::StrCat("u", i);
    kiq::v1::GetResponse response;
    ASSERT_TRUE(Get("customers", key, &response).ok());
    auto it = customers.find(key);
    EXPECT_EQ(response.found(), it != customers.end()) << key;
    if (it != customers.end()) {
      EXPECT_EQ(response.entry().value(), it->second);
      EXPECT_EQ(response.entry().key(), key);
    }
    ASSERT_TRUE(Get("order_count", key, &response).ok());
    auto count = truth.find(key);
    EXPECT_EQ(response.found(), count != truth.end()) << key;
    if (count != truth.end()) {
      EXPECT_EQ(response.entry().value(), absl::StrCat(count->second));
      EXPECT_EQ(response.entry().json().number_value(), static_cast<double>(count->second));
    }
    EXPECT_EQ(response.position().offsets_size(), 1);
  }

  int pages = 0;
  auto all_customers = ScanAll("customers", 3, "", "", &pages);
  EXPECT_EQ(all_customers, Entries(customers.begin(), customers.end()));
  EXPECT_EQ(pages, static_cast<int>((customers.size() + 2) / 3));
  auto all_counts = ScanAll("order_count", 7);
  EXPECT_EQ(all_counts, Entries(order_count.begin(), order_count.end()));
  // Range: both bounds inclusive, byte order ("u1" <= k <= "u2" holds u1, u10..u19, u2).
  Entries expected_range(order_count.lower_bound("u1"), order_count.upper_bound("u2"));
  EXPECT_EQ(ScanAll("order_count", 4, "u1", "u2"), expected_range);

  kiq::v1::CountResponse count;
  ASSERT_TRUE(Count("customers", &count).ok());
  EXPECT_EQ(count.count(), static_cast<int64_t>(customers.size()));
  ASSERT_TRUE(Count("order_count", &count).ok());
  EXPECT_EQ(count.count(), static_cast<int64_t>(truth.size()));
  EXPECT_EQ(count.position().offsets_size(), kPartitions);
}

// Generic gRPC tools can discover the API: server reflection lists the services.
TEST_F(SingleNodeTest, ServerReflectionListsTheServices) {
  StartNode();
  auto stub = grpc::reflection::v1alpha::ServerReflection::NewStub(
      grpc::CreateChannel(node_->target(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  stream->WritesDone();
  std::set<std::string> services;
  for (const auto& s : response.list_services_response().service()) services.insert(s.name());
  EXPECT_TRUE(services.count("kiq.v1.QueryService")) << response.DebugString();
  EXPECT_TRUE(services.count("kiq.v1.MetadataService")) << response.DebugString();
  EXPECT_OK(kiq::FromGrpcStatus(stream->Finish(), "reflection"));
}

TEST_F(SingleNodeTest, BadRequestsGetClearErrorsAndTheNodeKeepsServing) {
  StartNode();
  Produce("orders", "u1", "pizza");
  WaitCaughtUp("order_count", "orders");

  kiq::v1::GetResponse get;
  grpc::Status status = Get("no_such_store", "u1", &get);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no_such_store"));

  grpc::ClientContext range_context;
  kiq::v1::RangeRequest range;
  range.set_store("order_count");
  range.set_from("z");
  range.set_to("a");
  kiq::v1::ScanResponse scan;
  status = stub_->Range(&range_context, range, &scan);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("after"));

  grpc::ClientContext page_context;
  kiq::v1::AllRequest all;
  all.set_store("order_count");
  all.set_page_size(100000);
  status = stub_->All(&page_context, all, &scan);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("page_size"));

  grpc::ClientContext empty_context;
  kiq::v1::GetRequest empty;
  empty.set_key("u1");
  status = stub_->Get(&empty_context, empty, &get);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  ASSERT_TRUE(Get("order_count", "u1", &get).ok());
  EXPECT_EQ(get.entry().value(), "1");
  EXPECT_TRUE(node_->process().running());
}

TEST_F(SingleNodeTest, UndecodableRecordsAreSkippedCountedLoggedAndDeadLettered) {
  const std::string config = WriteFile("json.yaml", kShopJsonTopology);
  StartNode(config);
  Produce("orders", "u1", R"({"food":"pizza"})");
  auto bad = producer_->Produce(Topic("orders"), "u1", "{not json");
  ASSERT_OK(bad);
  produced_[{Topic("orders"), bad->partition}] = bad->offset + 1;
  Produce("orders", "u1", R"({"food":"sushi"})");
  WaitCaughtUp("order_count", "orders");

  kiq::v1::GetResponse get;
  ASSERT_TRUE(Get("order_count", "u1", &get).ok());
  EXPECT_EQ(get.entry().value(), "2");  // the bad record is skipped, the others counted
  ASSERT_TRUE(Get("orders_by_user", "u1", &get).ok());
  EXPECT_EQ(get.entry().json().struct_value().fields().at("food").string_value(), "sushi");

  const std::string where = absl::StrCat("topic=", Topic("orders"), " partition=", bad->partition,
                                         " offset=", bad->offset);
  EXPECT_THAT(node_->process().ReadLog(), HasSubstr(where));
  EXPECT_THAT(node_->process().ReadLog(), HasSubstr("value is not JSON"));

  // One dead letter per store the record feeds, with the reason in a header.
  auto letters = ConsumeAll(bootstrap_servers(), Topic("shop-dlq"), 2, absl::Seconds(30));
  ASSERT_EQ(letters.size(), 2u);
  std::set<std::string> stores;
  for (const ConsumedRecord& letter : letters) {
    EXPECT_EQ(letter.value, "{not json");
    std::map<std::string, std::string> headers(letter.headers.begin(), letter.headers.end());
    EXPECT_EQ(headers["kiq.reason"], "value is not JSON");
    EXPECT_EQ(headers["kiq.offset"], absl::StrCat(bad->offset));
    stores.insert(headers["kiq.store"]);
  }
  EXPECT_EQ(stores, (std::set<std::string>{"orders_by_user", "order_count"}));
  EXPECT_TRUE(node_->process().running());
}

// The node creates the topics it needs before it produces or subscribes: the members topic
// (one partition; compacted), the dead-letter topic, and the changelog (as many partitions as
// the sources). Before: only changelogs were created; on a broker without auto-creation (every
// test against KIQ_TEST_BOOTSTRAP_SERVERS) the node found no members ("no nodes", every query
// UNAVAILABLE) and its dead letters were lost.
TEST_F(SingleNodeTest, TheNodeCreatesItsInternalTopicsAndUsesThem) {
  const std::string config = WriteFile("made-here.yaml",
                                       "application_id: made-here\n"
                                       "sources:\n"
                                       "  - topic: orders\n"
                                       "    value_format: json\n"
                                       "stores:\n"
                                       "  - name: order_count\n"
                                       "    source: orders\n"
                                       "    count: {}\n");
  // The mock cluster has no CreateTopics: there the test makes the changelog as a broker
  // would on the node's request (the members and dead-letter topics it auto-creates).
  if (!external_kafka()) {
    ASSERT_OK(kafka_->CreateTopic("made-here-order_count-changelog", kPartitions));
  }
  StartNode(config);
  absl::StatusOr<std::map<std::string, int>> topics =
      ListTopics(bootstrap_servers(), absl::Seconds(10));
  ASSERT_OK(topics);
  for (const char* internal :
       {"made-here-members", "made-here-dlq", "made-here-order_count-changelog"}) {
    EXPECT_EQ(topics->count(Topic(internal)), 1u) << internal;
  }
  EXPECT_EQ((*topics)[Topic("made-here-order_count-changelog")], kPartitions);
  // The broker's default partition count on an auto-creating broker (the dev Kafka).
  if (external_kafka()) {
    EXPECT_EQ((*topics)[Topic("made-here-members")], 1);
  }

  // The members topic works: the node finds itself, owning every partition.
  kiq::v1::NodesResponse nodes;
  ASSERT_TRUE(WaitFor(
      [&] {
        return client_->AllNodes(&nodes).ok() && nodes.nodes_size() == 1 &&
               nodes.nodes(0).partitions_size() == kPartitions;
      },
      absl::Seconds(30)))
      << nodes.DebugString() << node_->process().ReadLog();
  // The dead-letter topic works.
  auto bad = producer_->Produce(Topic("orders"), "u1", "{not json");
  ASSERT_OK(bad);
  auto letters = ConsumeAll(bootstrap_servers(), Topic("made-here-dlq"), 1, absl::Seconds(30));
  ASSERT_EQ(letters.size(), 1u) << node_->process().ReadLog();
  EXPECT_EQ(letters[0].value, "{not json");
  Produce("orders", "u1", R"({"food":"pizza"})");
  WaitCaughtUp("order_count", "orders");
  kiq::v1::GetResponse get;
  ASSERT_TRUE(Get("order_count", "u1", &get).ok());
  EXPECT_EQ(get.entry().value(), "1");

  // A second node finds them all and creates nothing.
  auto second = LaunchNode(config, "n2");
  ASSERT_OK(second);
  NodeClient second_client((*second)->target());
  ASSERT_TRUE(
      WaitFor([&] { return second_client.AllNodes(&nodes).ok() && nodes.nodes_size() == 2; },
              absl::Seconds(60)))
      << (*second)->process().ReadLog();
  EXPECT_THAT((*second)->process().ReadLog(), Not(HasSubstr("created internal topics")));
}

// One record nested 300,000 levels deep made every node that consumed it die (SIGSEGV in
// RapidJSON's recursive reader), in a crash loop. Now it is a bad record; a value within the
// limit but deeper than Entry.json carries (60 levels) is served at once, as text.
TEST_F(SingleNodeTest, DeepRecordIsDeadLetteredAndTheNodeKeepsServing) {
  const std::string config = WriteFile("json.yaml", kShopJsonTopology);
  StartNode(config);
  const std::string sixty = DeepJsonObject(60);
  Produce("orders", "u1", sixty);
  auto bad = producer_->Produce(Topic("orders"), "u2", DeepJsonArray(300'000));
  ASSERT_OK(bad);
  produced_[{Topic("orders"), bad->partition}] = bad->offset + 1;
  Produce("orders", "u2", R"({"food":"sushi"})");
  WaitCaughtUp("order_count", "orders");

  const absl::Time start = absl::Now();
  kiq::v1::GetResponse get;
  ASSERT_TRUE(Get("orders_by_user", "u1", &get).ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(get.entry().value(), sixty);
  EXPECT_FALSE(get.entry().has_json());  // deeper than an Entry carries (kMaxEntryJsonDepth)
  ASSERT_TRUE(Get("order_count", "u2", &get).ok());
  EXPECT_EQ(get.entry().value(), "1");  // the deep record is skipped, the next one counted

  auto letters = ConsumeAll(bootstrap_servers(), Topic("shop-dlq"), 2, absl::Seconds(30));
  ASSERT_EQ(letters.size(), 2u);
  for (const ConsumedRecord& letter : letters) {
    std::map<std::string, std::string> headers(letter.headers.begin(), letter.headers.end());
    EXPECT_EQ(headers["kiq.reason"], "value nests deeper than 64 levels");
    EXPECT_EQ(headers["kiq.offset"], absl::StrCat(bad->offset));
    ASSERT_TRUE(letter.value.has_value());
    EXPECT_EQ(letter.value->size(), 600'000u);
  }
  EXPECT_THAT(node_->process().ReadLog(), HasSubstr("value nests deeper than 64 levels"));
  EXPECT_TRUE(node_->process().running());
}

// --max-json-depth and --max-value-bytes set the limits every decoder applies (JsonLimits):
// a record past either is a bad record with that limit in its reason; within both it counts.
TEST_F(SingleNodeTest, JsonLimitFlagsSetTheLimitsOfEveryRecord) {
  const std::string config = WriteFile("json.yaml", kShopJsonTopology);
  StartNode(config, {"--max-json-depth=3", "--max-value-bytes=100"});
  auto deep = producer_->Produce(Topic("orders"), "u1", DeepJsonArray(4));
  ASSERT_OK(deep);
  produced_[{Topic("orders"), deep->partition}] = deep->offset + 1;
  auto large =
      producer_->Produce(Topic("orders"), "u1", absl::StrCat("\"", std::string(120, 'x'), "\""));
  ASSERT_OK(large);
  produced_[{Topic("orders"), large->partition}] = large->offset + 1;
  Produce("orders", "u1", DeepJsonArray(3));  // 3 deep, 7 bytes: within both
  WaitCaughtUp("order_count", "orders");

  kiq::v1::GetResponse get;
  ASSERT_TRUE(Get("order_count", "u1", &get).ok());
  EXPECT_EQ(get.entry().value(), "1");  // only the last one counted
  // One letter per store per bad record.
  auto letters = ConsumeAll(bootstrap_servers(), Topic("shop-dlq"), 4, absl::Seconds(30));
  EXPECT_EQ(letters.size(), 4u);
  std::set<std::string> reasons;
  for (const ConsumedRecord& letter : letters) {
    for (const auto& [name, value] : letter.headers) {
      if (name == "kiq.reason") reasons.insert(value);
    }
  }
  EXPECT_THAT(reasons, ::testing::Contains("value nests deeper than 3 levels"));
  EXPECT_THAT(reasons, ::testing::Contains(HasSubstr("the limit is 100)")));
}

TEST_F(SingleNodeTest, MalformedTopologyIsRefusedWithTheFieldPath) {
  const std::string config = WriteFile("bad.yaml",
                                       "application_id: shop\n"
                                       "sources:\n"
                                       "  - topic: orders\n"
                                       "stores:\n"
                                       "  - name: order_count\n"
                                       "    source: ordrs\n"
                                       "    count: {}\n");
  auto process = Process::Start(
      {kNodeBin, "--config=" + config, "--bootstrap-servers=" + kafka_->bootstrap_servers(),
       "--data-dir=" + dir_ + "/bad-data", "--grpc-port=0"},
      dir_ + "/bad-node.log");
  ASSERT_OK(process);
  auto code = (*process)->Wait(absl::Seconds(30));
  ASSERT_OK(code);
  EXPECT_EQ(*code, 2);
  EXPECT_THAT((*process)->ReadLog(), HasSubstr("stores[0].source"));
  EXPECT_THAT((*process)->ReadLog(), HasSubstr("ordrs"));
}

// kiqctl, the real binary, against the real node: tables, JSON, exit codes.
TEST_F(SingleNodeTest, KiqctlQueriesARealNode) {
  StartNode();
  Produce("customers", "alice", "Alice");
  Produce("orders", "alice", "pizza");
  Produce("orders", "alice", "sushi");
  WaitCaughtUp("customers", "customers");
  WaitCaughtUp("order_count", "orders");

  int run = 0;
  auto kiqctl = [&](std::vector<std::string> args, int* code) {
    const std::string log = absl::StrCat(dir_, "/kiqctl-", run++, ".out");
    args.insert(args.begin(), {kCtlBin, "--target", node_->target()});
    auto process = Process::Start(args, log);
    EXPECT_TRUE(process.ok());
    auto exit_code = (*process)->Wait(absl::Seconds(30));
    EXPECT_TRUE(exit_code.ok());
    *code = exit_code.ok() ? *exit_code : -1;
    return ReadFile(log);
  };
  int code = -1;
  EXPECT_THAT(kiqctl({"get", "order_count", "alice"}, &code), HasSubstr("alice  2"));
  EXPECT_EQ(code, 0);
  EXPECT_THAT(kiqctl({"all", "customers"}, &code), HasSubstr("alice  Alice"));
  EXPECT_EQ(code, 0);
  EXPECT_THAT(kiqctl({"--json", "count", "order_count"}, &code), HasSubstr("\"count\":\"1\""));
  EXPECT_EQ(code, 0);
  EXPECT_THAT(kiqctl({"get", "order_count", "bob"}, &code), HasSubstr("not found"));
  EXPECT_EQ(code, 1);
  EXPECT_THAT(kiqctl({"get", "nope", "alice"}, &code),
              HasSubstr("NOT_FOUND: unknown store \"nope\""));
  EXPECT_EQ(code, 3);
  EXPECT_THAT(kiqctl({"range", "order_count", "z", "a"}, &code), HasSubstr("INVALID_ARGUMENT"));
  EXPECT_EQ(code, 3);
}

// Produce in the background, kill -9 the node mid-stream, restart it on the same data dir:
// offsets are stored with the state, so no event is lost or counted twice.
TEST_F(SingleNodeTest, RestartAfterKill9NeitherLosesNorDoubleCounts) {
  StartNode();
  std::map<std::string, int64_t> truth;
  constexpr int kRecords = 6000;
  std::vector<std::string> keys;
  std::mt19937 rng(11);
  for (int i = 0; i < kRecords; ++i) keys.push_back(absl::StrCat("user-", rng() % 97));
  for (const std::string& k : keys) ++truth[k];

  std::atomic<bool> failed{false};
  std::thread producer([&] {
    for (int i = 0; i < kRecords; ++i) {
      if (!producer_->ProduceAsync(Topic("orders"), keys[i], "x").ok()) failed = true;
      if (i % 200 == 199 && !producer_->Flush().ok()) failed = true;
    }
    if (!producer_->Flush().ok()) failed = true;
  });
  // Kill once some, but not all, of the stream has been materialized.
  ASSERT_TRUE(WaitFor(
      [&] {
        kiq::v1::CountResponse response;
        if (!Count("order_count", &response).ok()) return false;
        int64_t processed = 0;
        for (const auto& po : response.position().offsets()) processed += po.offset();
        return processed >= 500;
      },
      absl::Seconds(60)));
  node_->process().Kill();
  StartNode();
  producer.join();
  ASSERT_FALSE(failed.load());

  // Wait until every record is reflected: total offsets == records produced.
  ASSERT_TRUE(WaitFor(
      [&] {
        kiq::v1::CountResponse response;
        if (!Count("order_count", &response).ok()) return false;
        int64_t processed = 0;
        for (const auto& po : response.position().offsets()) processed += po.offset();
        return processed == kRecords;
      },
      absl::Seconds(60)))
      << node_->process().ReadLog();
  std::map<std::string, std::string> expected;
  for (const auto& [k, n] : truth) expected[k] = absl::StrCat(n);
  EXPECT_EQ(ScanAll("order_count", 50), Entries(expected.begin(), expected.end()));
}

// State that outlives its Kafka log (here: a new cluster with empty topics) is detected: the
// partitions are FAILED and answer UNAVAILABLE with the reason, or, with
// --offset-out-of-range=reset, rebuilt from the new log.
TEST_F(SingleNodeTest, StoredOffsetOutsideTheLogIsReportedNotMixed) {
  StartNode();
  Produce("orders", "u1", "pizza");
  WaitCaughtUp("order_count", "orders");
  node_->process().Signal(SIGTERM);
  auto code = node_->process().Wait(absl::Seconds(30));
  ASSERT_OK(code);
  EXPECT_EQ(*code, 0);

  // A brand-new Kafka: the stored offset of u1's partition is beyond its (empty) log.
  ASSERT_NO_FATAL_FAILURE(RestartKafkaEmpty());
  StartNode();
  kiq::v1::GetResponse get;
  grpc::Status status;
  ASSERT_TRUE(WaitFor(
      [&] {
        status = Get("order_count", "u1", &get);
        return status.error_code() == grpc::StatusCode::UNAVAILABLE;
      },
      absl::Seconds(60)))
      << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("outside the log"));
  EXPECT_THAT(node_->process().ReadLog(), HasSubstr("outside the log"));

  node_->process().Signal(SIGTERM);
  ASSERT_OK(node_->process().Wait(absl::Seconds(30)));
  auto producer = TestProducer::Create(kafka_->bootstrap_servers());
  ASSERT_OK(producer);
  producer_ = std::move(*producer);
  produced_.clear();
  StartNode(OrdersTopology(), {"--offset-out-of-range=reset"});
  Produce("orders", "u1", "sushi");
  WaitCaughtUp("order_count", "orders");
  ASSERT_TRUE(Get("order_count", "u1", &get).ok());
  EXPECT_EQ(get.entry().value(), "1");  // rebuilt from the new log, not 1 + the old 1
}

}  // namespace
}  // namespace kiq::testing
