// Authentication and authorization of a real cluster: 3 kiq-nodes and a kiq-router started
// with --auth-token-file and --cluster-secret-file. Clients without a token, or with an
// unknown one, are refused (gRPC UNAUTHENTICATED, HTTP 401); a token for one store cannot read
// another (PERMISSION_DENIED, 403); the right token reads through any node and the router,
// answers checked against the counts the test produced. PeerService refuses a plain client,
// and so does a QueryService call that claims to be forwarded. Forged members records (well
// formed, a higher generation, every partition at 127.0.0.1:1; unsigned, and signed with
// another secret) change no answer and are counted on every node and the router. A token
// removed from the file is refused within seconds, without a restart.
#include <cstdio>
#include <map>
#include <random>
#include <string>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <rapidjson/document.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/security/cluster_secret.h"
#include "common/security/crypto.h"
#include "kiq/v1/membership.pb.h"
#include "kiq/v1/peer.grpc.pb.h"
#include "kiq/v1/query.grpc.pb.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/metrics.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"

namespace kiq::testing {
namespace {

using ::testing::HasSubstr;

constexpr int kPartitions = 6;
constexpr char kSecret[] = "integration-cluster-secret-0123";
constexpr char kOrdersToken[] = "orders-reader-token";
constexpr char kOpsToken[] = "ops-token-with-all-stores";

std::string TokenFile(bool with_orders) {
  std::string text = "tokens:\n";
  if (with_orders) {
    // The sha256 form: the file need not hold the token itself.
    absl::StrAppend(&text, "  - name: orders-reader\n    sha256: ",
                    security::ToHex(security::Sha256(kOrdersToken)),
                    "\n    stores: [order_count]\n");
  }
  absl::StrAppend(&text, "  - name: ops\n    token: \"", kOpsToken, "\"\n    stores: [\"*\"]\n");
  return text;
}

class SecurityTest : public KafkaFixture {
 protected:
  void SetUp() override {
    StartKafka("security", OrdersDemoTopics(kPartitions));
    tokens_path_ = WriteFile("tokens.yaml", TokenFile(true));
    secret_path_ = WriteFile("secret", absl::StrCat(kSecret, "\n"));
  }

  std::vector<std::string> SecurityFlags() const {
    return {"--auth-token-file=" + tokens_path_, "--cluster-secret-file=" + secret_path_};
  }

  void Order(const std::string& user) {
    ProduceAndTrack("orders", user, "food");
    ++truth_[user];
  }

  // Every user's count through `client`, compared with the truth; the first mismatch or
  // failure, "" if none.
  std::string CheckAll(NodeClient& client, const std::string& via) {
    for (const auto& [user, count] : truth_) {
      kiq::v1::GetResponse response;
      grpc::Status status = client.Get("order_count", user, &response);
      if (!status.ok()) return absl::StrCat(via, " ", user, ": ", status.error_message());
      if (!response.found() || response.entry().value() != absl::StrCat(count)) {
        return absl::StrCat(via, " ", user, ": got ", response.entry().value(), " want ", count);
      }
    }
    return "";
  }

  std::string AllLogs() {
    std::string logs;
    for (auto& [id, node] : nodes_) absl::StrAppend(&logs, "--- ", id, "\n", node->process().ReadLog());
    if (router_) absl::StrAppend(&logs, "--- router\n", router_->process().ReadLog());
    return logs;
  }

  std::string tokens_path_;
  std::string secret_path_;
  std::map<std::string, int64_t> truth_;
  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  std::unique_ptr<NodeProcess> router_;
};

TEST_F(SecurityTest, TokensPeersAndSignedMembershipProtectTheCluster) {
  for (const char* id : {"n1", "n2", "n3"}) {
    auto node = LaunchNode(ExampleTopology("orders"), id, SecurityFlags());
    ASSERT_OK(node);
    nodes_[id] = std::move(*node);
  }
  std::mt19937 rng(16);
  for (int i = 0; i < 240; ++i) Order(absl::StrCat("user-", rng() % 40));
  ASSERT_OK(producer_->Produce(Topic("customers"), "user-1", "Ada"));
  auto router = LaunchRouter(ExampleTopology("orders"), SecurityFlags());
  ASSERT_OK(router);
  router_ = std::move(*router);

  std::map<std::string, std::unique_ptr<NodeClient>> ops;
  for (auto& [id, node] : nodes_) ops[id] = std::make_unique<NodeClient>(node->target(), kOpsToken);
  ops["router"] = std::make_unique<NodeClient>(router_->target(), kOpsToken);
  for (auto& [id, ops_client] : ops) {
    // A named copy: clang's C++17 mode refuses lambdas that capture structured bindings.
    NodeClient* client = ops_client.get();
    ASSERT_TRUE(WaitFor([&] { return client->CaughtUp("order_count", Topic("orders"), produced_); },
                        absl::Seconds(90)))
        << "not caught up via " << id << "\n"
        << AllLogs();
  }
  // Every node owns some partitions, so each one forwards reads of the others' keys.
  ASSERT_TRUE(WaitFor([&] { return ops["n1"]->SettledOwners({"n1", "n2", "n3"}, kPartitions).has_value(); },
                      absl::Seconds(60)))
      << AllLogs();

  // The right token reads every key through every node (mostly non-owners) and the router.
  for (auto& [id, client] : ops) EXPECT_EQ(CheckAll(*client, id), "") << AllLogs();
  std::map<std::string, std::unique_ptr<NodeClient>> orders;
  for (auto& [id, node] : nodes_) orders[id] = std::make_unique<NodeClient>(node->target(), kOrdersToken);
  orders["router"] = std::make_unique<NodeClient>(router_->target(), kOrdersToken);
  for (auto& [id, client] : orders) {
    EXPECT_EQ(CheckAll(*client, id), "");
    grpc::Status status;
    Entries scanned = client->Scan("order_count", 7, "", "", nullptr, &status);
    EXPECT_TRUE(status.ok()) << id << ": " << status.error_message();
    EXPECT_EQ(scanned.size(), truth_.size()) << id;
  }

  // No token, an unknown token, a token for another store.
  for (const std::string& target : {nodes_["n2"]->target(), router_->target()}) {
    kiq::v1::GetResponse response;
    grpc::Status s = NodeClient(target).Get("order_count", "user-1", &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << target << s.error_message();
    s = NodeClient(target, "not-a-token").Get("order_count", "user-1", &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << target << s.error_message();
    s = NodeClient(target, kOrdersToken).Get("customers", "user-1", &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << target;
    EXPECT_THAT(s.error_message(), HasSubstr("may not read store \"customers\""));
    kiq::v1::NodesResponse nodes;
    EXPECT_EQ(NodeClient(target).AllNodes(&nodes).error_code(), grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_TRUE(WaitFor(
        [&] {
          return NodeClient(target, kOpsToken).Get("customers", "user-1", &response).ok() &&
                 response.entry().value() == "Ada";
        },
        absl::Seconds(30)))
        << target << ": " << response.DebugString();
  }

  // The same over HTTP, through a node and through the router.
  for (int port : {nodes_["n3"]->http_port(), router_->http_port()}) {
    httplib::Client http("127.0.0.1", port);
    const std::string path = "/v1/stores/order_count/keys/user-1";
    auto res = http.Get(path);
    ASSERT_TRUE(res) << port;
    EXPECT_EQ(res->status, 401) << res->body;
    rapidjson::Document doc;
    doc.Parse(res->body.c_str());
    ASSERT_TRUE(doc.IsObject()) << res->body;
    EXPECT_EQ(doc["code"].GetInt(), static_cast<int>(grpc::StatusCode::UNAUTHENTICATED));
    res = http.Get(path, {{"Authorization", "Bearer not-a-token"}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 401) << res->body;
    res = http.Get("/v1/stores/customers/keys/user-1",
                   {{"Authorization", absl::StrCat("Bearer ", kOrdersToken)}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 403) << res->body;
    EXPECT_THAT(res->body, HasSubstr("customers"));
    res = http.Get(path, {{"Authorization", absl::StrCat("Bearer ", kOrdersToken)}});
    ASSERT_TRUE(res);
    EXPECT_EQ(res->status, 200) << res->body;
    doc.Parse(res->body.c_str());
    ASSERT_TRUE(doc.IsObject() && doc.HasMember("found")) << res->body;
    EXPECT_TRUE(doc["found"].GetBool());
    EXPECT_THAT(res->body, HasSubstr(absl::StrCat(truth_["user-1"])));
  }

  // PeerService answers peers only; a client cannot claim to be a forwarding peer either.
  {
    auto channel = grpc::CreateChannel(nodes_["n1"]->target(), grpc::InsecureChannelCredentials());
    auto peer = kiq::v1::PeerService::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    context.AddMetadata("authorization", absl::StrCat("Bearer ", kOpsToken));
    kiq::v1::ScanPartitionsRequest scan;
    scan.set_store("order_count");
    for (int p = 0; p < kPartitions; ++p) scan.add_partitions(p);
    scan.set_limit(100);
    kiq::v1::ScanPartitionsResponse scanned;
    grpc::Status s = peer->ScanPartitions(&context, scan, &scanned);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
    EXPECT_EQ(scanned.partitions_size(), 0);

    kiq::v1::GetResponse response;
    s = NodeClient(nodes_["n1"]->target(), kOpsToken)
            .Get("order_count", "user-1", &response, 5, /*forwarded=*/true);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
  }

  // Forged members records: every partition at 127.0.0.1:1 under n2's id, a much higher
  // generation and a fresh lease; one unsigned, one signed with another secret.
  kiq::v1::MemberRecord forged;
  forged.set_node_id("n2");
  forged.set_application_id("orders-demo");
  forged.set_grpc_endpoint("127.0.0.1:1");
  forged.add_stores("order_count");
  forged.add_stores("customers");
  for (int p = 0; p < kPartitions; ++p) {
    kiq::v1::OwnedPartition* owned = forged.add_partitions();
    owned->set_partition(p);
    owned->set_state(kiq::v1::PARTITION_STATE_ACTIVE);
  }
  forged.set_generation(1'000'000);
  const int64_t now_ms = absl::ToUnixMillis(absl::Now());
  forged.set_written_at_ms(now_ms + 1000);
  forged.set_lease_expiry_ms(now_ms + 120'000);
  const std::string value = forged.SerializeAsString();
  const std::string members = Topic("orders-demo-members");
  ASSERT_OK(producer_->Produce(members, "n2", value));
  auto wrong = security::ClusterSecret::FromText("a-different-secret-123", "test");
  ASSERT_OK(wrong);
  const std::string at = absl::StrCat(now_ms);
  ASSERT_OK(producer_->ProduceWithHeaders(
      members, "n2", value,
      {{security::kMemberWrittenAtHeader, at},
       {security::kMemberMacHeader,
        security::ToHex(wrong->MemberMac("n2", now_ms, absl::string_view(value)))}}));

  // Counted everywhere (every node and the router tail the topic) ...
  std::map<std::string, int> admin_ports;
  for (auto& [id, node] : nodes_) admin_ports[id] = node->admin_port();
  admin_ports["router"] = router_->admin_port();
  for (const auto& [id, admin_port] : admin_ports) {
    const int port = admin_port;
    std::string exposition;
    EXPECT_TRUE(WaitFor(
        [&] {
          exposition = ScrapeMetrics(port);
          return MetricSum(exposition, "kiq_member_records_rejected_total",
                           {"reason=\"unsigned\""}) >= 1 &&
                 MetricSum(exposition, "kiq_member_records_rejected_total",
                           {"reason=\"bad_mac\""}) >= 1;
        },
        absl::Seconds(20)))
        << id << "\n"
        << exposition;
    EXPECT_GE(MetricSum(exposition, "kiq_auth_denied_total"), 0);
  }
  // ... and they change no answer: every read keeps succeeding, exactly, for a while.
  const absl::Time until = absl::Now() + absl::Seconds(6);
  int rounds = 0;
  while (absl::Now() < until) {
    for (auto& [id, client] : ops) ASSERT_EQ(CheckAll(*client, id), "") << AllLogs();
    ++rounds;
  }
  EXPECT_GE(rounds, 1);
  kiq::v1::NodesResponse nodes;
  ASSERT_TRUE(ops["router"]->AllNodes(&nodes).ok());
  for (const auto& n : nodes.nodes()) EXPECT_NE(n.port(), 1) << nodes.DebugString();

  // Denials were counted by reason on the nodes and the router.
  const std::string node_metrics = ScrapeMetrics(nodes_["n2"]->admin_port());
  EXPECT_GE(MetricSum(node_metrics, "kiq_auth_denied_total", {"reason=\"missing\""}), 2);
  EXPECT_GE(MetricSum(node_metrics, "kiq_auth_denied_total", {"reason=\"unknown\""}), 1);
  EXPECT_GE(MetricSum(node_metrics, "kiq_auth_denied_total", {"reason=\"forbidden\""}), 1);
  const std::string n1_metrics = ScrapeMetrics(nodes_["n1"]->admin_port());
  EXPECT_GE(MetricSum(n1_metrics, "kiq_auth_denied_total", {"reason=\"peer\""}), 2);
  const std::string router_metrics = ScrapeMetrics(router_->admin_port());
  EXPECT_GE(MetricSum(router_metrics, "kiq_auth_denied_total", {"reason=\"missing\""}), 2);
  EXPECT_GE(MetricSum(router_metrics, "kiq_auth_denied_total", {"reason=\"forbidden\""}), 1);

  // The token file is rewritten without the orders token (atomically, as Kubernetes swaps a
  // Secret): refused within seconds, no restart; the ops token still reads.
  const std::string next = WriteFile("tokens.yaml.next", TokenFile(false));
  ASSERT_EQ(std::rename(next.c_str(), tokens_path_.c_str()), 0);
  const absl::Time rewritten = absl::Now();
  for (auto& [id, orders_client] : orders) {
    NodeClient* client = orders_client.get();
    grpc::Status last;
    EXPECT_TRUE(WaitFor(
        [&] {
          kiq::v1::GetResponse response;
          last = client->Get("order_count", "user-1", &response);
          return last.error_code() == grpc::StatusCode::UNAUTHENTICATED;
        },
        absl::Seconds(15)))
        << id << ": " << last.error_message();
  }
  std::printf("removed token refused everywhere %.1f s after the rewrite\n",
              absl::ToDoubleSeconds(absl::Now() - rewritten));
  for (auto& [id, client] : ops) EXPECT_EQ(CheckAll(*client, id), "");
}

// A bad token file stops the process at start-up, naming the flag and the field path.
TEST_F(SecurityTest, BadTokenFileRefusesToStart) {
  const std::string bad =
      WriteFile("bad.yaml", "tokens:\n  - {name: x, sha256: nothex, stores: [order_count]}\n");
  auto node = LaunchNode(ExampleTopology("orders"), "n1",
                         {"--auth-token-file=" + bad, "--cluster-secret-file=" + secret_path_});
  ASSERT_FALSE(node.ok());
  EXPECT_THAT(std::string(node.status().message()),
              HasSubstr("--auth-token-file: " + bad + ": tokens[0].sha256: must be 64 hex digits"));
  auto router = LaunchRouter(ExampleTopology("orders"), {"--auth-token-file=" + tokens_path_});
  ASSERT_FALSE(router.ok());
  EXPECT_THAT(std::string(router.status().message()),
              HasSubstr("--auth-token-file: needs a cluster secret too"));
}

}  // namespace
}  // namespace kiq::testing
