// TLS and mTLS on a real cluster: three kiq-nodes and a kiq-router whose gRPC and HTTP ports
// serve TLS, require client certificates, and dial each other over mTLS; kiqctl and curl get
// the right answers through a node that owns nothing of the key (so the answer came over a
// peer channel) and through the router; plaintext clients and clients without a certificate
// are refused; a certificate rewritten in place is served without a restart. Certificates are
// made by the openssl command line in the test's directory.
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/security/tls.h"
#include "tests/testing/kafka_fixture.h"
#include "tests/testing/kiq_processes.h"
#include "tests/testing/queries.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_certs.h"

namespace kiq::testing {
namespace {

using ::testing::ContainsRegex;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kPartitions = 6;
constexpr char kCurl[] = "/usr/bin/curl";

class TlsClusterTest : public KafkaFixture {
 protected:
  void SetUp() override {
    StartKafka("tls", OrdersDemoTopics(kPartitions));
    const std::string pki_dir = dir_ + "/pki";
    std::filesystem::create_directories(pki_dir);
    absl::StatusOr<TestPki> pki = MakeTestPki(pki_dir);
    ASSERT_OK(pki);
    pki_ = *std::move(pki);
    // The peers' CA file, shared by every process; a rotation widens it to both CAs.
    peer_ca_ = dir_ + "/peer-ca.crt";
    ASSERT_OK(ReplaceFile(pki_.ca_cert, peer_ca_));
  }

  // The TLS flags of process `id`: its own copy of the server certificate and key (so that a
  // test can rotate one process's), clients verified against CA 1, peers against peer_ca_.
  std::vector<std::string> TlsFlags(const std::string& id) {
    const std::string cert = absl::StrCat(dir_, "/", id, "-tls.crt");
    const std::string key = absl::StrCat(dir_, "/", id, "-tls.key");
    EXPECT_OK(ReplaceFile(pki_.server_cert, cert));
    EXPECT_OK(ReplaceFile(pki_.server_key, key));
    files_[id] = {cert, key};
    return {"--tls-cert-file=" + cert, "--tls-key-file=" + key,
            "--tls-client-ca-file=" + pki_.ca_cert, "--tls-ca-file=" + peer_ca_};
  }

  void StartNode(const std::string& id) {
    auto node = LaunchNode(ExampleTopology("orders"), id, TlsFlags(id));
    ASSERT_OK(node);
    nodes_[id] = std::move(*node);
    clients_[id] = Client(nodes_[id]->target(), pki_.ca_cert, /*with_cert=*/true);
  }

  void StartRouter() {
    auto router = LaunchRouter(ExampleTopology("orders"), TlsFlags("router"));
    ASSERT_OK(router);
    nodes_["router"] = std::move(*router);
    clients_["router"] = Client(nodes_["router"]->target(), pki_.ca_cert, /*with_cert=*/true);
  }

  // A gRPC client trusting `ca`, with CA 1's client certificate if `with_cert`.
  std::shared_ptr<NodeClient> Client(const std::string& target, const std::string& ca,
                                     bool with_cert) {
    security::ClientTls tls;
    tls.enabled = true;
    tls.ca_file = ca;
    if (with_cert) {
      tls.cert_file = pki_.client_cert;
      tls.key_file = pki_.client_key;
    }
    absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
        security::GrpcClientCredentials(tls);
    EXPECT_OK(credentials);
    return std::make_shared<NodeClient>(target, *credentials);
  }

  // Runs `argv` to its end (30 s at most): its exit code and output.
  std::pair<int, std::string> Run(const std::vector<std::string>& argv) {
    const std::string log = absl::StrCat(dir_, "/run-", runs_++, ".out");
    auto process = Process::Start(argv, log);
    EXPECT_OK(process);
    if (!process.ok()) return {-1, ""};
    absl::StatusOr<int> code = (*process)->Wait(absl::Seconds(30));
    EXPECT_OK(code);
    return {code.ok() ? *code : -1, ReadFile(log)};
  }

  std::vector<std::string> Kiqctl(const std::string& id, std::vector<std::string> args) {
    args.insert(args.begin(), {kCtlBin, "--target", nodes_[id]->target()});
    return args;
  }

  // curl of `path` on process `id`'s HTTPS port, trusting `ca`, with CA 1's client
  // certificate if `with_cert`.
  std::vector<std::string> Curl(const std::string& id, const std::string& path,
                                const std::string& ca, bool with_cert) {
    std::vector<std::string> argv = {kCurl, "-sS", "--max-time", "10", "--cacert", ca};
    if (with_cert) {
      argv.insert(argv.end(), {"--cert", pki_.client_cert, "--key", pki_.client_key});
    }
    argv.push_back(absl::StrCat("https://127.0.0.1:", nodes_[id]->http_port(), path));
    return argv;
  }

  // Three nodes owning the 6 partitions between them, and orders of 40 users counted.
  void ClusterWithOrders() {
    for (const char* id : {"n1", "n2", "n3"}) ASSERT_NO_FATAL_FAILURE(StartNode(id));
    ASSERT_TRUE(WaitFor(
        [&] { return clients_["n1"]->SettledOwners({"n1", "n2", "n3"}, kPartitions).has_value(); },
        absl::Seconds(60)))
        << AllLogs();
    std::mt19937 rng(16);
    for (int i = 0; i < 200; ++i) {
      const std::string user = absl::StrCat("user-", rng() % 40);
      ProduceAndTrack("orders", user, "food");
      ++truth_[user];
    }
    for (const char* id : {"n1", "n2", "n3"}) {
      ASSERT_TRUE(WaitFor(
          [&] { return clients_[id]->CaughtUp("order_count", Topic("orders"), produced_); },
          absl::Seconds(60)))
          << id << "\n"
          << AllLogs();
    }
  }

  // A user whose partition `owner` owns, and a node that does not own it.
  std::pair<std::string, std::string> UserOwnedBy(const std::string& owner) {
    for (const auto& [user, count] : truth_) {
      kiq::v1::NodeForKeyResponse response;
      EXPECT_TRUE(clients_["n1"]->NodeForKey("order_count", user, &response).ok());
      if (response.owner().node_id() == owner) return {user, owner == "n1" ? "n2" : "n1"};
    }
    ADD_FAILURE() << owner << " owns no user's partition";
    return {"", ""};
  }

  Entries Truth() const {
    Entries out;
    for (const auto& [user, count] : truth_) out.emplace_back(user, absl::StrCat(count));
    return out;
  }

  std::string AllLogs() {
    std::string out;
    for (auto& [id, node] : nodes_) {
      absl::StrAppend(&out, "---- ", id, "\n", node->process().ReadLog());
    }
    return out;
  }

  TestPki pki_;
  std::string peer_ca_;
  std::map<std::string, std::pair<std::string, std::string>> files_;  // id → (cert, key)
  std::map<std::string, std::unique_ptr<NodeProcess>> nodes_;
  std::map<std::string, std::shared_ptr<NodeClient>> clients_;
  std::map<std::string, int64_t> truth_;
  int runs_ = 0;
};

TEST_F(TlsClusterTest, MtlsClientsGetTheTruthThroughPeersAndTheRouterAndOthersAreRefused) {
  ASSERT_NO_FATAL_FAILURE(ClusterWithOrders());
  ASSERT_NO_FATAL_FAILURE(StartRouter());

  // Every count through every process: a node answers most keys over its mTLS peer channels.
  for (const char* via : {"n1", "n2", "n3", "router"}) {
    ASSERT_TRUE(WaitFor([&] { return clients_[via]->Scan("order_count", 7) == Truth(); },
                        absl::Seconds(30)))
        << via << "\n"
        << AllLogs();
    for (const auto& [user, count] : truth_) {
      kiq::v1::GetResponse response;
      grpc::Status status = clients_[via]->Get("order_count", user, &response);
      ASSERT_TRUE(status.ok()) << via << " " << user << ": " << status.error_message();
      EXPECT_TRUE(response.found());
      EXPECT_EQ(response.entry().value(), absl::StrCat(count)) << via << " " << user;
    }
  }

  // kiqctl and curl through a node that does not own the key, and through the router.
  const std::pair<std::string, std::string> owned = UserOwnedBy("n3");
  const std::string user = owned.first;
  const std::string non_owner = owned.second;
  const std::string count = absl::StrCat(truth_[user]);
  const std::vector<std::string> tls = {"--tls-ca-file", pki_.ca_cert, "--tls-cert-file",
                                        pki_.client_cert, "--tls-key-file", pki_.client_key};
  for (const std::string& via : {non_owner, std::string("router")}) {
    std::vector<std::string> get = Kiqctl(via, {"get", "order_count", user});
    get.insert(get.end(), tls.begin(), tls.end());
    auto [code, out] = Run(get);
    EXPECT_EQ(code, 0) << out;
    EXPECT_THAT(out, HasSubstr(absl::StrCat(user, "  ", count))) << via;

    std::vector<std::string> all = Kiqctl(via, {"--json", "count", "order_count"});
    all.insert(all.end(), tls.begin(), tls.end());
    std::tie(code, out) = Run(all);
    EXPECT_EQ(code, 0) << out;
    EXPECT_THAT(out, HasSubstr(absl::StrCat("\"count\":\"", truth_.size(), "\""))) << via;

    std::tie(code, out) =
        Run(Curl(via, "/v1/stores/order_count/keys/" + user, pki_.ca_cert, /*with_cert=*/true));
    EXPECT_EQ(code, 0) << out;
    EXPECT_THAT(out, HasSubstr("\"found\":true")) << via;
    EXPECT_THAT(out, ContainsRegex(absl::StrCat("\"json\":", count, "[,}]"))) << via;
  }

  // Refused: a plaintext gRPC client, a TLS client without a client certificate, one that does
  // not trust the server's CA; kiqctl without TLS; curl without a client certificate or in
  // plaintext. Nothing of the answers above leaks into their output.
  NodeClient plaintext(nodes_[non_owner]->target());
  kiq::v1::GetResponse response;
  EXPECT_EQ(plaintext.Get("order_count", user, &response).error_code(), grpc::UNAVAILABLE);
  EXPECT_FALSE(Client(nodes_[non_owner]->target(), pki_.ca_cert, /*with_cert=*/false)
                   ->Get("order_count", user, &response)
                   .ok());
  EXPECT_FALSE(Client(nodes_["router"]->target(), pki_.ca2_cert, /*with_cert=*/true)
                   ->Get("order_count", user, &response)
                   .ok());
  auto [code, out] = Run(Kiqctl(non_owner, {"--timeout", "3s", "get", "order_count", user}));
  EXPECT_EQ(code, 3) << out;
  EXPECT_THAT(out, HasSubstr("UNAVAILABLE"));
  std::tie(code, out) =
      Run(Kiqctl("router", {"--timeout", "3s", "--tls-ca-file", pki_.ca_cert, "get",
                            "order_count", user}));
  EXPECT_EQ(code, 3) << out;
  for (const std::string& via : {non_owner, std::string("router")}) {
    std::tie(code, out) =
        Run(Curl(via, "/v1/stores/order_count/keys/" + user, pki_.ca_cert, /*with_cert=*/false));
    EXPECT_NE(code, 0) << out;
    EXPECT_THAT(out, Not(HasSubstr("\"found\"")));
    std::tie(code, out) =
        Run({kCurl, "-sS", "--max-time", "5",
             absl::StrCat("http://127.0.0.1:", nodes_[via]->http_port(),
                          "/v1/stores/order_count/keys/", user)});
    EXPECT_THAT(out, Not(HasSubstr("\"found\""))) << via;
  }
  // The admin port stays plaintext (probes, scrapes).
  std::tie(code, out) = Run({kCurl, "-sS", "--max-time", "5",
                             absl::StrCat("http://127.0.0.1:", nodes_["n1"]->admin_port(),
                                          "/healthz")});
  EXPECT_EQ(code, 0) << out;
}

TEST_F(TlsClusterTest, RewrittenCertificatesAreServedWithoutARestart) {
  ASSERT_NO_FATAL_FAILURE(ClusterWithOrders());
  const std::pair<std::string, std::string> owned = UserOwnedBy("n2");
  // Named copies: C++17 lambdas cannot capture structured bindings.
  const std::string user = owned.first;
  const std::string non_owner = owned.second;
  const pid_t pid = nodes_["n2"]->process().pid();
  std::shared_ptr<NodeClient> new_ca_client =
      Client(nodes_["n2"]->target(), pki_.ca2_cert, /*with_cert=*/true);
  kiq::v1::GetResponse response;
  ASSERT_FALSE(new_ca_client->Get("order_count", user, &response, 3).ok());

  // cert-manager's rotation: peers trust both CAs, then n2's files get CA 2's pair in place.
  ASSERT_OK(ReplaceFile(pki_.ca_bundle, peer_ca_));
  ASSERT_OK(ReplaceFile(pki_.server2_key, files_["n2"].second));
  ASSERT_OK(ReplaceFile(pki_.server2_cert, files_["n2"].first));

  // Within the refresh interval (5 s) and then some: gRPC and HTTPS of n2 answer a client
  // that trusts only CA 2, with the right count.
  const std::string count = absl::StrCat(truth_[user]);
  ASSERT_TRUE(WaitFor(
      [&] {
        // A fresh channel each time: gRPC keeps a failed channel in backoff.
        return Client(nodes_["n2"]->target(), pki_.ca2_cert, /*with_cert=*/true)
                   ->Get("order_count", user, &response, 3)
                   .ok() &&
               response.entry().value() == count;
      },
      absl::Seconds(30)))
      << nodes_["n2"]->process().ReadLog();
  std::pair<int, std::string> curl;
  ASSERT_TRUE(WaitFor(
      [&] {
        curl = Run(Curl("n2", "/v1/stores/order_count/keys/" + user, pki_.ca2_cert,
                        /*with_cert=*/true));
        return curl.first == 0;
      },
      absl::Seconds(30)))
      << curl.second;
  EXPECT_THAT(curl.second, ContainsRegex(absl::StrCat("\"json\":", count, "[,}]")));
  // ... and no longer one that trusts only CA 1.
  EXPECT_NE(Run(Curl("n2", "/v1/stores/order_count/keys/" + user, pki_.ca_cert, true)).first, 0);
  EXPECT_FALSE(Client(nodes_["n2"]->target(), pki_.ca_cert, /*with_cert=*/true)
                   ->Get("order_count", user, &response, 3)
                   .ok());
  // The same process, still answering its peers: a non-owner forwards to n2.
  EXPECT_EQ(nodes_["n2"]->process().pid(), pid);
  EXPECT_TRUE(nodes_["n2"]->process().running());
  ASSERT_TRUE(WaitFor(
      [&] {
        return clients_[non_owner]->Get("order_count", user, &response).ok() &&
               response.entry().value() == count;
      },
      absl::Seconds(30)))
      << AllLogs();
}

}  // namespace
}  // namespace kiq::testing
