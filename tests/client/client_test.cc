#include "client/client.h"

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/client/fake_server.h"
#include "tests/testing/status_matchers.h"

namespace kiq::client {
namespace {

using ::kiq::testing::StatusIs;
using ::testing::ElementsAre;

std::vector<std::string> NodeIds(const kiq::v1::NodesResponse& response) {
  std::vector<std::string> ids;
  for (const kiq::v1::NodeInfo& node : response.nodes()) ids.push_back(node.node_id());
  return ids;
}

std::vector<std::string> Keys(const kiq::v1::ScanResponse& page) {
  std::vector<std::string> keys;
  for (const kiq::v1::Entry& e : page.entries()) {
    keys.push_back(e.key_bytes().empty() ? e.key() : e.key_bytes());
  }
  return keys;
}

TEST(FromGrpcStatusTest, OkStaysOk) {
  EXPECT_OK(FromGrpcStatus(grpc::Status::OK, "get store=s key=\"k\""));
}

TEST(FromGrpcStatusTest, KeepsEveryCodeAndPrefixesWhatWeWereDoing) {
  for (int code = 1; code <= 16; ++code) {
    const absl::Status status =
        FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(code), "boom"), "count store=s");
    EXPECT_EQ(static_cast<int>(status.code()), code);
    EXPECT_EQ(status.message(), "count store=s: boom");
  }
}

TEST(FromGrpcStatusTest, EmptyServerMessageLeavesJustWhatWeWereDoing) {
  const absl::Status status =
      FromGrpcStatus(grpc::Status(grpc::StatusCode::UNAVAILABLE, ""), "all store=s");
  EXPECT_EQ(status, absl::UnavailableError("all store=s"));
}

TEST(FromGrpcStatusTest, CodesOutsideTheCanonicalRangeAreUnknown) {
  const absl::Status status =
      // 20: a code a newer server could send (still inside the enum's range of values).
      FromGrpcStatus(grpc::Status(static_cast<grpc::StatusCode>(20), "odd"), "x");
  EXPECT_EQ(status.code(), absl::StatusCode::kUnknown);
}

TEST(DescribeTest, NamesTheCallStoreAndClippedEscapedKey) {
  EXPECT_EQ(DescribeGet("orders", "a"), "get store=orders key=\"a\"");
  EXPECT_EQ(DescribeGet("orders", "\xff"), "get store=orders key=\"\\xff\"");
  EXPECT_EQ(DescribeRange("orders", "a", ""), "range store=orders from=\"a\" to=\"\"");
  EXPECT_EQ(DescribeAll("orders"), "all store=orders");
  EXPECT_EQ(DescribeCount("orders"), "count store=orders");
  EXPECT_EQ(DescribeAllNodes(), "metadata");
  EXPECT_EQ(DescribeNodesForStore("orders"), "metadata store=orders");
  EXPECT_EQ(DescribeNodeForKey("orders", "a\xff"), "metadata store=orders key=\"a\\xff\"");
}

TEST(ConnectTest, RejectsAnEmptyTarget) {
  EXPECT_THAT(Client::Connect(""), StatusIs(absl::StatusCode::kInvalidArgument, "empty target"));
}

TEST(ConnectTest, RejectsANonPositiveTimeout) {
  ClientOptions options;
  options.timeout = absl::ZeroDuration();
  EXPECT_THAT(Client::Connect("localhost:1", options),
              StatusIs(absl::StatusCode::kInvalidArgument, "timeout must be > 0"));
}

TEST(ConnectTest, RejectsTlsFilesItCannotRead) {
  ClientOptions options;
  options.tls.enabled = true;
  options.tls.ca_file = "/nonexistent/ca.crt";
  EXPECT_THAT(Client::Connect("localhost:1", options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "connect to localhost:1: --tls-ca-file: cannot read /nonexistent/ca.crt"));
}

class ClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.started());
    absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(server_.target());
    ASSERT_OK(client);
    client_ = *std::move(client);
  }

  FakeServer server_;
  std::unique_ptr<Client> client_;
};

TEST_F(ClientTest, GetSendsUtf8KeyAsKey) {
  absl::StatusOr<kiq::v1::GetResponse> response = client_->Get("orders", "b");
  ASSERT_OK(response);
  EXPECT_TRUE(response->found());
  EXPECT_EQ(response->entry().value(), "plain text");
  EXPECT_EQ(response->entry().partition(), 1);
  ASSERT_EQ(server_.service().get_requests().size(), 1u);
  EXPECT_EQ(server_.service().get_requests()[0].key_kind_case(), kiq::v1::GetRequest::kKey);
}

TEST_F(ClientTest, GetSendsNonUtf8KeyAsKeyBytes) {
  absl::StatusOr<kiq::v1::GetResponse> response = client_->Get("bin", "\xff\x01");
  ASSERT_OK(response);
  EXPECT_TRUE(response->found());
  EXPECT_EQ(response->entry().value(), "v1");
  ASSERT_EQ(server_.service().get_requests().size(), 1u);
  const kiq::v1::GetRequest request = server_.service().get_requests()[0];
  EXPECT_EQ(request.key_kind_case(), kiq::v1::GetRequest::kKeyBytes);
  EXPECT_EQ(request.key_bytes(), "\xff\x01");
}

TEST_F(ClientTest, GetOfAMissingKeyIsNotFoundFalseNotAnError) {
  absl::StatusOr<kiq::v1::GetResponse> response = client_->Get("orders", "zzz");
  ASSERT_OK(response);
  EXPECT_FALSE(response->found());
}

TEST_F(ClientTest, GetOfAnUnknownStoreIsNotFoundNamingTheCall) {
  absl::StatusOr<kiq::v1::GetResponse> response = client_->Get("nope", "a");
  EXPECT_EQ(response.status(),
            absl::NotFoundError("get store=nope key=\"a\": unknown store \"nope\""));
}

TEST_F(ClientTest, RangeSendsBoundsAsTextOrBytes) {
  absl::StatusOr<kiq::v1::ScanResponse> page = client_->Range("orders", "b", "\xff", 10);
  ASSERT_OK(page);
  EXPECT_THAT(Keys(*page), ElementsAre("b", "c", "d", "e"));
  ASSERT_EQ(server_.service().range_requests().size(), 1u);
  const kiq::v1::RangeRequest request = server_.service().range_requests()[0];
  EXPECT_EQ(request.from(), "b");
  EXPECT_EQ(request.from_bytes(), "");
  EXPECT_EQ(request.to(), "");
  EXPECT_EQ(request.to_bytes(), "\xff");
  EXPECT_EQ(request.page_size(), 10);
}

TEST_F(ClientTest, AllReturnsOnePageAndItsToken) {
  absl::StatusOr<kiq::v1::ScanResponse> page = client_->All("orders");
  ASSERT_OK(page);
  EXPECT_THAT(Keys(*page), ElementsAre("a", "b"));
  EXPECT_FALSE(page->next_page_token().empty());
}

TEST_F(ClientTest, CountOfAnUnknownStoreIsNotFound) {
  EXPECT_EQ(client_->Count("nope").status(),
            absl::NotFoundError("count store=nope: unknown store \"nope\""));
  absl::StatusOr<kiq::v1::CountResponse> count = client_->Count("orders");
  ASSERT_OK(count);
  EXPECT_EQ(count->count(), 5);
}

TEST_F(ClientTest, AllNodesReturnsEveryNodeWithItsPartitionsAndLease) {
  absl::StatusOr<kiq::v1::NodesResponse> response = client_->AllNodes();
  ASSERT_OK(response);
  EXPECT_THAT(NodeIds(*response), ElementsAre("n1", "n2", "n3"));
  const kiq::v1::NodeInfo& n1 = response->nodes(0);
  EXPECT_EQ(n1.host(), "10.0.0.1");
  EXPECT_EQ(n1.port(), 7070);
  EXPECT_THAT(n1.stores(), ElementsAre("order_count", "customers"));
  ASSERT_EQ(n1.partitions_size(), 3);
  EXPECT_EQ(n1.partitions(2).partition(), 4);
  EXPECT_EQ(n1.partitions(2).state(), kiq::v1::PARTITION_STATE_RESTORING);
  EXPECT_EQ(n1.lease_expiry_ms(), FakeMetadataService::kFakeNowMs + 30'000);
}

TEST_F(ClientTest, NodesForStoreReturnsOnlyTheNodesHostingIt) {
  absl::StatusOr<kiq::v1::NodesResponse> response = client_->NodesForStore("customers");
  ASSERT_OK(response);
  EXPECT_THAT(NodeIds(*response), ElementsAre("n1", "n3"));
  ASSERT_EQ(server_.metadata_service().nodes_for_store_requests().size(), 1u);
  EXPECT_EQ(server_.metadata_service().nodes_for_store_requests()[0].store(), "customers");

  response = client_->NodesForStore("lonely");
  ASSERT_OK(response);
  EXPECT_EQ(response->nodes_size(), 0);
}

TEST_F(ClientTest, NodesForStoreOfAnUnknownStoreIsNotFoundNamingTheCall) {
  EXPECT_EQ(client_->NodesForStore("nope").status(),
            absl::NotFoundError("metadata store=nope: unknown store \"nope\""));
}

TEST_F(ClientTest, NodeForKeySendsUtf8KeyAsKey) {
  absl::StatusOr<kiq::v1::NodeForKeyResponse> response =
      client_->NodeForKey("order_count", "alice");
  ASSERT_OK(response);
  EXPECT_EQ(response->partition(), 3);
  EXPECT_EQ(response->owner().node_id(), "n2");
  EXPECT_EQ(response->owner().host(), "kiq-1.kiq");
  EXPECT_EQ(response->state(), kiq::v1::PARTITION_STATE_ACTIVE);
  ASSERT_EQ(server_.metadata_service().node_for_key_requests().size(), 1u);
  const kiq::v1::NodeForKeyRequest request = server_.metadata_service().node_for_key_requests()[0];
  EXPECT_EQ(request.store(), "order_count");
  EXPECT_EQ(request.key_kind_case(), kiq::v1::NodeForKeyRequest::kKey);
  EXPECT_EQ(request.key(), "alice");
}

TEST_F(ClientTest, NodeForKeySendsNonUtf8KeyAsKeyBytes) {
  absl::StatusOr<kiq::v1::NodeForKeyResponse> response =
      client_->NodeForKey("order_count", "\xff\x01");
  ASSERT_OK(response);
  EXPECT_EQ(response->partition(), 5);
  EXPECT_EQ(response->owner().node_id(), "n2");
  EXPECT_EQ(response->state(), kiq::v1::PARTITION_STATE_FAILED);
  ASSERT_EQ(server_.metadata_service().node_for_key_requests().size(), 1u);
  const kiq::v1::NodeForKeyRequest request = server_.metadata_service().node_for_key_requests()[0];
  EXPECT_EQ(request.key_kind_case(), kiq::v1::NodeForKeyRequest::kKeyBytes);
  EXPECT_EQ(request.key_bytes(), "\xff\x01");
}

TEST_F(ClientTest, NodeForKeyWithNoLiveOwnerIsAnEmptyOwnerNotAnError) {
  absl::StatusOr<kiq::v1::NodeForKeyResponse> response =
      client_->NodeForKey("order_count", "carol");
  ASSERT_OK(response);
  EXPECT_EQ(response->partition(), 6);
  EXPECT_EQ(response->owner().node_id(), "");
}

TEST_F(ClientTest, NodeForKeyOfAnUnknownStoreIsNotFoundNamingTheCall) {
  EXPECT_EQ(client_->NodeForKey("nope", "a").status(),
            absl::NotFoundError("metadata store=nope key=\"a\": unknown store \"nope\""));
}

TEST_F(ClientTest, MetadataCallsHaveTheDeadlineToo) {
  ClientOptions options;
  options.timeout = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(server_.target(), options);
  ASSERT_OK(client);
  const absl::Time start = absl::Now();
  EXPECT_THAT((*client)->NodesForStore("slow"),
              StatusIs(absl::StatusCode::kDeadlineExceeded, "metadata store=slow"));
  EXPECT_THAT((*client)->NodeForKey("slow", "a"),
              StatusIs(absl::StatusCode::kDeadlineExceeded, "metadata store=slow key=\"a\""));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST(ClientWithoutMetadataServiceTest, MetadataCallsAreUnimplemented) {
  FakeServer server(FakeServer::Services::kQueryOnly);
  ASSERT_TRUE(server.started());
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(server.target());
  ASSERT_OK(client);
  EXPECT_THAT((*client)->AllNodes(), StatusIs(absl::StatusCode::kUnimplemented, "metadata"));
  EXPECT_OK((*client)->Count("orders"));  // The query API is still there.
}

TEST_F(ClientTest, ForEachAllPageFollowsEveryPage) {
  std::vector<std::vector<std::string>> pages;
  absl::StatusOr<std::string> next =
      client_->ForEachAllPage("orders", ScanOptions(), [&](const kiq::v1::ScanResponse& page) {
        pages.push_back(Keys(page));
        return true;
      });
  ASSERT_OK(next);
  EXPECT_EQ(*next, "");
  EXPECT_THAT(pages, ElementsAre(ElementsAre("a", "b"), ElementsAre("c", "d"), ElementsAre("e")));
}

TEST_F(ClientTest, ForEachAllPageStopsAtTheLimitWithAnExactResumeToken) {
  ScanOptions options;
  options.page_size = 2;
  options.limit = 3;
  std::vector<std::string> keys;
  const auto collect = [&](const kiq::v1::ScanResponse& page) {
    for (const std::string& k : Keys(page)) keys.push_back(k);
    return true;
  };
  absl::StatusOr<std::string> next = client_->ForEachAllPage("orders", options, collect);
  ASSERT_OK(next);
  EXPECT_THAT(keys, ElementsAre("a", "b", "c"));
  ASSERT_FALSE(next->empty());
  // The last request asked only for what was still wanted.
  std::vector<int32_t> page_sizes;
  for (const kiq::v1::AllRequest& r : server_.service().all_requests()) {
    page_sizes.push_back(r.page_size());
  }
  EXPECT_THAT(page_sizes, ElementsAre(2, 1));

  keys.clear();
  ScanOptions resume;
  resume.page_token = *next;
  next = client_->ForEachAllPage("orders", resume, collect);
  ASSERT_OK(next);
  EXPECT_EQ(*next, "");
  EXPECT_THAT(keys, ElementsAre("d", "e"));
}

TEST_F(ClientTest, ForEachAllPageWithALimitPastTheEndReturnsNoToken) {
  ScanOptions options;
  options.limit = 100;
  int entries = 0;
  absl::StatusOr<std::string> next =
      client_->ForEachAllPage("orders", options, [&](const kiq::v1::ScanResponse& page) {
        entries += page.entries_size();
        return true;
      });
  ASSERT_OK(next);
  EXPECT_EQ(*next, "");
  EXPECT_EQ(entries, 5);
}

TEST_F(ClientTest, ForEachRangePageStopsWhenTheCallbackSaysSo) {
  int pages = 0;
  absl::StatusOr<std::string> next = client_->ForEachRangePage("orders", "a", "d", ScanOptions(),
                                                               [&](const kiq::v1::ScanResponse&) {
                                                                 ++pages;
                                                                 return false;
                                                               });
  ASSERT_OK(next);
  EXPECT_EQ(pages, 1);
  EXPECT_FALSE(next->empty());
}

TEST_F(ClientTest, ForEachPageReportsTheFailingCall) {
  absl::StatusOr<std::string> next = client_->ForEachRangePage(
      "nope", "a", "b", ScanOptions(), [](const kiq::v1::ScanResponse&) { return true; });
  EXPECT_EQ(next.status(),
            absl::NotFoundError("range store=nope from=\"a\" to=\"b\": unknown store \"nope\""));
}

TEST_F(ClientTest, ForEachPageRefusesToLoopOnARepeatedToken) {
  absl::StatusOr<std::string> next = client_->ForEachAllPage(
      "loop", ScanOptions(), [](const kiq::v1::ScanResponse&) { return true; });
  EXPECT_THAT(next, StatusIs(absl::StatusCode::kInternal, "all store=loop: "));
  EXPECT_THAT(next, StatusIs(absl::StatusCode::kInternal, "loop-token"));
}

TEST_F(ClientTest, ForEachPageRejectsNegativeOptions) {
  ScanOptions options;
  options.limit = -1;
  EXPECT_EQ(
      client_->ForEachAllPage("orders", options, [](const kiq::v1::ScanResponse&) { return true; })
          .status()
          .code(),
      absl::StatusCode::kInvalidArgument);
}

TEST_F(ClientTest, TimeoutIsDeadlineExceeded) {
  ClientOptions options;
  options.timeout = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(server_.target(), options);
  ASSERT_OK(client);
  const absl::Time start = absl::Now();
  absl::StatusOr<kiq::v1::GetResponse> response = (*client)->Get("slow", "a");
  EXPECT_THAT(response, StatusIs(absl::StatusCode::kDeadlineExceeded, "get store=slow key=\"a\""));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
}

TEST_F(ClientTest, UnreachableServerIsUnavailable) {
  const std::string target = server_.target();
  server_.Shutdown();
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Connect(target);
  ASSERT_OK(client);
  EXPECT_THAT((*client)->Count("orders"),
              StatusIs(absl::StatusCode::kUnavailable, "count store=orders"));
}

TEST_F(ClientTest, IsSafeToShareBetweenThreads) {
  std::vector<std::thread> threads;
  std::vector<int> found(8, 0);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        absl::StatusOr<kiq::v1::GetResponse> r = client_->Get("orders", i % 2 ? "a" : "zzz");
        if (r.ok() && r->found()) ++found[t];
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  for (int n : found) EXPECT_EQ(n, 10);
}

}  // namespace
}  // namespace kiq::client
