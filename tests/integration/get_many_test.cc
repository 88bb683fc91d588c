// GetMany on a real cluster: three kiq-nodes on one kiq-dev-kafka (6 partitions) and a
// kiq-router, asked over gRPC and over the HTTP/JSON gateway for keys of every node's
// partitions, absent keys, a deleted key and a duplicate; every answer is compared with the
// truth this test computes from the records it produced.
#include <httplib.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/topology/partitioner.h"
#include "kiq/v1/query.grpc.pb.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/metrics.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using ::testing::HasSubstr;
namespace pb = google::protobuf;

constexpr int kPartitions = 6;
constexpr char kStore[] = "customers";

class GetManyIntegrationTest : public KafkaFixture {
 protected:
  void SetUp() override { StartKafka("get-many", OrdersDemoTopics(kPartitions)); }

  void StartNode(const std::string& id) {
    auto node = LaunchNode(ExampleTopology("orders"), id);
    ASSERT_OK(node);
    clients_[id] = std::make_unique<NodeClient>((*node)->target());
    nodes_[id] = std::move(*node);
  }

  std::string AllLogs() {
    std::string out;
    for (auto& [id, node] : nodes_) {
      absl::StrAppend(&out, "---- ", id, "\n", node->process().ReadLog());
    }
    return out;
  }

  // Produces key=value (nullopt: a tombstone) and keeps the truth: the latest value per key.
  void Put(const std::string& key, const std::optional<std::string>& value) {
    ProduceAndTrack("customers", key, value);
    if (value) {
      truth_[key] = *value;
    } else {
      truth_.erase(key);
    }
  }

  static kiq::v1::GetManyRequest Request(const std::vector<std::string>& keys) {
    kiq::v1::GetManyRequest request;
    request.set_store(kStore);
    for (const std::string& k : keys) request.add_keys(k);
    return request;
  }

  grpc::Status GrpcGetMany(const std::string& target, const std::vector<std::string>& keys,
                           kiq::v1::GetManyResponse* response) {
    auto stub = kiq::v1::QueryService::NewStub(
        grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub->GetMany(&context, Request(keys), response);
  }

  // POST /v1/stores/customers/getMany with the request as its JSON body: the HTTP status,
  // and the response parsed when it is 200 (the body otherwise).
  int HttpGetMany(int port, const std::vector<std::string>& keys,
                  kiq::v1::GetManyResponse* response, std::string* body) {
    httplib::Client http("127.0.0.1", port);
    http.set_read_timeout(30, 0);
    kiq::v1::GetManyRequest request = Request(keys);
    request.clear_store();  // bound by the path
    std::string json;
    EXPECT_TRUE(pb::util::MessageToJsonString(request, &json).ok());
    auto res = http.Post("/v1/stores/customers/getMany", json, "application/json");
    if (!res) return 0;
    *body = res->body;
    if (res->status == 200) {
      EXPECT_TRUE(pb::util::JsonStringToMessage(res->body, response).ok()) << res->body;
    }
    return res->status;
  }

  // Each result answers its key, in request order, exactly as the records produced say: found
  // with the latest value, or not found (absent, deleted), in the key's partition, at a
  // position that reflects every record produced to that partition.
  void ExpectTruth(const std::vector<std::string>& keys, const kiq::v1::GetManyResponse& response,
                   const std::string& via) {
    SCOPED_TRACE(via);
    ASSERT_EQ(response.results_size(), static_cast<int>(keys.size()));
    for (size_t i = 0; i < keys.size(); ++i) {
      const kiq::v1::GetResponse& r = response.results(static_cast<int>(i));
      const int32_t p = Murmur2Partition(keys[i], kPartitions);
      auto it = truth_.find(keys[i]);
      EXPECT_EQ(r.found(), it != truth_.end()) << keys[i];
      EXPECT_EQ(r.entry().key(), keys[i]);
      EXPECT_EQ(r.entry().partition(), p) << keys[i];
      EXPECT_EQ(r.entry().value(), it == truth_.end() ? "" : it->second) << keys[i];
      int64_t at = -1;
      for (const kiq::v1::PartitionOffset& po : r.position().offsets()) {
        if (po.topic() == Topic("customers") && po.partition() == p) at = po.offset();
      }
      auto produced = produced_.find({Topic("customers"), p});
      EXPECT_EQ(at, produced == produced_.end() ? 0 : produced->second) << keys[i];
    }
  }

  // n1, n2 and n3 up, and every node seeing the same settled owners (`owners`).
  void StartThreeSettledNodes(std::map<std::string, std::set<int32_t>>* owners) {
    for (const char* id : {"n1", "n2", "n3"}) StartNode(id);
    ASSERT_TRUE(WaitFor(
        [&] {
          for (auto& [id, client] : clients_) {
            auto settled = client->SettledOwners({"n1", "n2", "n3"}, kPartitions);
            if (!settled) return false;
            *owners = *settled;
          }
          return true;
        },
        absl::Seconds(90)))
        << AllLogs();
  }

  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  std::map<std::string, std::unique_ptr<NodeClient>> clients_;
  std::map<std::string, std::string> truth_;
};

TEST_F(GetManyIntegrationTest, AnswersEveryKeyThroughAnyNodeAndTheRouterOverGrpcAndHttp) {
  std::map<std::string, std::set<int32_t>> owners;
  ASSERT_NO_FATAL_FAILURE(StartThreeSettledNodes(&owners));

  std::vector<std::string> keys;
  for (int i = 0; i < 60; ++i) {
    keys.push_back(absl::StrCat("c-", i));
    Put(keys.back(), absl::StrCat("name-", i));
  }
  Put("c-0", "renamed");     // the latest value wins
  Put("c-5", std::nullopt);  // deleted: not found
  Put("caf\xC3\xA9 \xE2\x82\xAC", "utf8");
  keys.push_back("caf\xC3\xA9 \xE2\x82\xAC");
  keys.push_back("absent-1");
  keys.push_back("c-3");  // a duplicate is answered at both positions
  keys.push_back("absent-2");
  // Every node owns some of the keys asked: each GetMany reads locally and forwards to both
  // other nodes.
  for (const auto& [id, partitions] : owners) {
    bool some = false;
    for (const std::string& k : keys)
      some |= partitions.count(Murmur2Partition(k, kPartitions)) > 0;
    ASSERT_TRUE(some) << id << " owns none of the keys";
  }
  for (auto& entry : clients_) {
    NodeClient& client = *entry.second;  // clang's C++17 refuses lambdas capturing bindings
    ASSERT_TRUE(WaitFor([&] { return client.CaughtUp(kStore, Topic("customers"), produced_); },
                        absl::Seconds(60)))
        << entry.first << "\n"
        << AllLogs();
  }

  for (auto& [id, node] : nodes_) {
    kiq::v1::GetManyResponse response;
    grpc::Status s = GrpcGetMany(node->target(), keys, &response);
    ASSERT_TRUE(s.ok()) << id << ": " << s.error_message();
    ExpectTruth(keys, response, absl::StrCat("gRPC via ", id));
    std::string body;
    kiq::v1::GetManyResponse over_http;
    ASSERT_EQ(HttpGetMany(node->http_port(), keys, &over_http, &body), 200) << body;
    ExpectTruth(keys, over_http, absl::StrCat("HTTP via ", id));
  }

  // kiq-router holds no partition: every key is forwarded, one GetMany per node.
  auto router = LaunchRouter(ExampleTopology("orders"));
  ASSERT_OK(router);
  kiq::v1::GetManyResponse via_router;
  grpc::Status last;
  ASSERT_TRUE(WaitFor(
      [&] {
        via_router.Clear();
        last = GrpcGetMany((*router)->target(), keys, &via_router);
        return last.ok();
      },
      absl::Seconds(60)))
      << last.error_message() << "\n"
      << (*router)->process().ReadLog();
  ExpectTruth(keys, via_router, "gRPC via kiq-router");
  std::string body;
  kiq::v1::GetManyResponse router_http;
  ASSERT_EQ(HttpGetMany((*router)->http_port(), keys, &router_http, &body), 200) << body;
  ExpectTruth(keys, router_http, "HTTP via kiq-router");

  // Bad batches: 400 with the reason, over HTTP as over gRPC.
  kiq::v1::GetManyResponse unused;
  EXPECT_EQ(HttpGetMany(nodes_["n1"]->http_port(), {}, &unused, &body), 400);
  EXPECT_THAT(body, HasSubstr("keys is required"));
  EXPECT_EQ(
      HttpGetMany(nodes_["n1"]->http_port(), std::vector<std::string>(1025, "k"), &unused, &body),
      400);
  EXPECT_THAT(body, HasSubstr("over the limit of 1024"));
  grpc::Status s = GrpcGetMany(nodes_["n2"]->target(), {}, &unused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// Forward coalescing: 16 callers at once asking n1 for keys the other nodes own (present,
// deleted, absent) share forwarded GetMany calls, and each answer is what a single forwarded
// Get gives: the latest value, or not found without an entry, in the key's partition, at the
// position of everything produced there.
TEST_F(GetManyIntegrationTest, ConcurrentForwardedGetsAreAnsweredExactlyAsSingleForwards) {
  std::map<std::string, std::set<int32_t>> owners;
  ASSERT_NO_FATAL_FAILURE(StartThreeSettledNodes(&owners));
  std::vector<std::string> remote;  // keys n1 forwards
  for (int i = 0; i < 200; ++i) {
    const std::string key = absl::StrCat("c-", i);
    if (i % 7 != 3) Put(key, absl::StrCat("name-", i));  // else: absent
    if (i % 11 == 5) Put(key, std::nullopt);             // deleted
    if (owners["n1"].count(Murmur2Partition(key, kPartitions)) == 0) remote.push_back(key);
  }
  ASSERT_GT(remote.size(), 50u);
  for (auto& entry : clients_) {
    NodeClient& client = *entry.second;
    ASSERT_TRUE(WaitFor([&] { return client.CaughtUp(kStore, Topic("customers"), produced_); },
                        absl::Seconds(60)))
        << entry.first << "\n"
        << AllLogs();
  }
  std::vector<std::string> problems(16);
  std::vector<std::thread> callers;
  for (size_t t = 0; t < problems.size(); ++t) {
    callers.emplace_back([&, t] {
      auto stub = kiq::v1::QueryService::NewStub(
          grpc::CreateChannel(nodes_["n1"]->target(), grpc::InsecureChannelCredentials()));
      for (int round = 0; round < 3 && problems[t].empty(); ++round) {
        for (size_t k = t; k < remote.size() + t; ++k) {
          const std::string& key = remote[k % remote.size()];
          kiq::v1::GetRequest request;
          request.set_store(kStore);
          request.set_key(key);
          kiq::v1::GetResponse r;
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
          grpc::Status s = stub->Get(&context, request, &r);
          const int32_t p = Murmur2Partition(key, kPartitions);
          auto it = truth_.find(key);
          int64_t at = -1;
          for (const kiq::v1::PartitionOffset& po : r.position().offsets()) {
            if (po.topic() == Topic("customers") && po.partition() == p) at = po.offset();
          }
          auto produced = produced_.find({Topic("customers"), p});
          const int64_t want_at = produced == produced_.end() ? 0 : produced->second;
          std::string problem;
          if (!s.ok()) {
            problem = s.error_message();
          } else if (r.found() != (it != truth_.end())) {
            problem = absl::StrCat("found=", r.found());
          } else if (r.found() && (r.entry().key() != key || r.entry().partition() != p ||
                                   r.entry().value() != it->second)) {
            problem = r.ShortDebugString();
          } else if (!r.found() && r.has_entry()) {
            problem = absl::StrCat("not found with an entry: ", r.ShortDebugString());
          } else if (at != want_at) {
            problem =
                absl::StrCat("position ", r.position().ShortDebugString(), ", want ", want_at);
          }
          if (!problem.empty()) {
            problems[t] = absl::StrCat(key, ": ", problem);
            break;
          }
        }
      }
    });
  }
  for (std::thread& t : callers) t.join();
  for (const std::string& problem : problems) EXPECT_EQ(problem, "");
  const std::string metrics = ScrapeMetrics(nodes_["n1"]->http_port());
  EXPECT_GT(MetricSum(metrics, "kiq_coalesced_forward_keys_total"),
            MetricSum(metrics, "kiq_coalesced_forwards_total"))
      << metrics;
}

}  // namespace
}  // namespace kiq::testing
