#include "router/metadata_service.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/topology/partitioner.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kiq/v1/membership.grpc.pb.h"
#include "router/port/local_stores.h"
#include "router/routing_table.h"

namespace kiq::router {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr int32_t kPartitions = 6;

// Describes stores; this service reads nothing else of a LocalStores.
class FakeLocalStores : public LocalStores {
 public:
  void AddStore(const std::string& name, int32_t partitions, PartitionerKind partitioner) {
    StoreInfo info;
    info.name = name;
    info.kind = "table";
    info.num_partitions = partitions;
    info.partitioner = partitioner;
    stores_[name] = info;
  }

  absl::StatusOr<StoreInfo> Describe(absl::string_view store) const override {
    auto it = stores_.find(std::string(store));
    if (it == stores_.end()) {
      return absl::NotFoundError(absl::StrCat("unknown store \"", store, "\""));
    }
    return it->second;
  }
  std::vector<StoreInfo> ListStores() const override {
    std::vector<StoreInfo> all;
    for (const auto& [name, info] : stores_) all.push_back(info);
    return all;
  }
  absl::Status CheckReadable(absl::string_view, PartitionId) const override {
    return absl::UnimplementedError("not used");
  }
  absl::StatusOr<std::optional<std::string>> Get(absl::string_view, PartitionId,
                                                 absl::string_view) const override {
    return absl::UnimplementedError("not used");
  }
  absl::StatusOr<std::vector<KeyValue>> Scan(absl::string_view, PartitionId, const KeyRange&,
                                             const std::optional<std::string>&,
                                             size_t) const override {
    return absl::UnimplementedError("not used");
  }
  absl::StatusOr<int64_t> EntryCount(absl::string_view, PartitionId) const override {
    return absl::UnimplementedError("not used");
  }
  void AppendPosition(absl::string_view, PartitionId, kiq::v1::Position*) const override {}
  absl::Status WaitForPosition(absl::string_view, const kiq::v1::Position&,
                               absl::Time) const override {
    return absl::OkStatus();
  }

 private:
  std::map<std::string, StoreInfo> stores_;
};

std::vector<std::string> Ids(const kiq::v1::NodesResponse& response) {
  std::vector<std::string> ids;
  for (const auto& n : response.nodes()) ids.push_back(n.node_id());
  return ids;
}

class MetadataServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    stores_.AddStore("orders", kPartitions, PartitionerKind::kMurmur2);
    stores_.AddStore("events", kPartitions, PartitionerKind::kConsistent);
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    stub_ = kiq::v1::MetadataService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  // A live node (lease an hour ahead) owning `partitions` in `state`.
  void AddNode(const std::string& id, std::vector<int32_t> partitions,
               std::vector<std::string> stores = {"orders", "events"},
               kiq::v1::PartitionState state = kiq::v1::PARTITION_STATE_ACTIVE,
               absl::Duration lease = absl::Hours(1)) {
    kiq::v1::MemberRecord r;
    r.set_node_id(id);
    r.set_grpc_endpoint(absl::StrCat(id, ".svc:7070"));
    for (const auto& s : stores) r.add_stores(s);
    for (int32_t p : partitions) {
      auto* owned = r.add_partitions();
      owned->set_partition(p);
      owned->set_state(state);
    }
    r.set_generation(1);
    r.set_written_at_ms(absl::ToUnixMillis(absl::Now()));
    r.set_lease_expiry_ms(absl::ToUnixMillis(absl::Now() + lease));
    table_.Apply(r);
  }

  std::unique_ptr<grpc::ClientContext> Context() {
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return context;
  }

  grpc::Status NodesForStore(const std::string& store, kiq::v1::NodesResponse* response) {
    kiq::v1::NodesForStoreRequest request;
    request.set_store(store);
    return stub_->NodesForStore(Context().get(), request, response);
  }

  grpc::Status NodeForKey(const kiq::v1::NodeForKeyRequest& request,
                          kiq::v1::NodeForKeyResponse* response) {
    return stub_->NodeForKey(Context().get(), request, response);
  }

  static kiq::v1::NodeForKeyRequest KeyRequest(const std::string& store, const std::string& key) {
    kiq::v1::NodeForKeyRequest request;
    request.set_store(store);
    request.set_key(key);
    return request;
  }

  FakeLocalStores stores_;
  RoutingTable table_;
  MetadataServiceImpl service_{table_, stores_};
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<kiq::v1::MetadataService::Stub> stub_;
};

TEST_F(MetadataServiceTest, AllNodesEmpty) {
  kiq::v1::NodesResponse response;
  grpc::Status status = stub_->AllNodes(Context().get(), kiq::v1::AllNodesRequest(), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(response.nodes(), IsEmpty());
}

TEST_F(MetadataServiceTest, AllNodesListsLiveNodesById) {
  AddNode("n2", {1, 3});
  AddNode("n1", {0, 2});
  AddNode("gone", {4}, {"orders"}, kiq::v1::PARTITION_STATE_ACTIVE, -absl::Seconds(1));
  kiq::v1::NodesResponse response;
  grpc::Status status = stub_->AllNodes(Context().get(), kiq::v1::AllNodesRequest(), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_THAT(Ids(response), ElementsAre("n1", "n2"));
  const kiq::v1::NodeInfo& n1 = response.nodes(0);
  EXPECT_EQ(n1.host(), "n1.svc");
  EXPECT_EQ(n1.port(), 7070);
  EXPECT_THAT(n1.stores(), ElementsAre("orders", "events"));
  ASSERT_EQ(n1.partitions_size(), 2);
  EXPECT_EQ(n1.partitions(1).partition(), 2);
}

TEST_F(MetadataServiceTest, NodesForStoreFilters) {
  AddNode("n1", {0}, {"orders"});
  AddNode("n2", {1}, {"events"});
  AddNode("n3", {2}, {"orders", "events"});
  kiq::v1::NodesResponse response;
  ASSERT_TRUE(NodesForStore("orders", &response).ok());
  EXPECT_THAT(Ids(response), ElementsAre("n1", "n3"));
  response.Clear();
  ASSERT_TRUE(NodesForStore("events", &response).ok());
  EXPECT_THAT(Ids(response), ElementsAre("n2", "n3"));
}

TEST_F(MetadataServiceTest, NodesForStoreUnknownStoreIsNotFound) {
  AddNode("n1", {0}, {"orders", "nope"});  // a node's list does not make a store known
  kiq::v1::NodesResponse response;
  grpc::Status status = NodesForStore("nope", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("nope"));
}

TEST_F(MetadataServiceTest, NodesForStoreEmptyStoreIsInvalid) {
  kiq::v1::NodesResponse response;
  grpc::Status status = NodesForStore("", &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("store"));
}

TEST_F(MetadataServiceTest, NodeForKeyFindsOwnerAndState) {
  const int32_t p = PartitionForKey(PartitionerKind::kMurmur2, "alice", kPartitions);
  std::vector<int32_t> mine;
  std::vector<int32_t> others;
  for (int32_t i = 0; i < kPartitions; ++i) (i == p ? mine : others).push_back(i);
  AddNode("owner", mine, {"orders"}, kiq::v1::PARTITION_STATE_RESTORING);
  AddNode("other", others);

  kiq::v1::NodeForKeyResponse response;
  grpc::Status status = NodeForKey(KeyRequest("orders", "alice"), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.partition(), p);
  EXPECT_EQ(response.owner().node_id(), "owner");
  EXPECT_EQ(response.owner().host(), "owner.svc");
  EXPECT_EQ(response.owner().port(), 7070);
  EXPECT_EQ(response.state(), kiq::v1::PARTITION_STATE_RESTORING);
}

TEST_F(MetadataServiceTest, NodeForKeyUsesTheStorePartitioner) {
  // Find a key that the two partitioners place differently, so the test can tell them apart.
  std::string key;
  for (int i = 0; key.empty(); ++i) {
    const std::string k = absl::StrCat("key-", i);
    if (PartitionForKey(PartitionerKind::kMurmur2, k, kPartitions) !=
        PartitionForKey(PartitionerKind::kConsistent, k, kPartitions)) {
      key = k;
    }
  }
  kiq::v1::NodeForKeyResponse response;
  ASSERT_TRUE(NodeForKey(KeyRequest("events", key), &response).ok());
  EXPECT_EQ(response.partition(), PartitionForKey(PartitionerKind::kConsistent, key, kPartitions));
  ASSERT_TRUE(NodeForKey(KeyRequest("orders", key), &response).ok());
  EXPECT_EQ(response.partition(), PartitionForKey(PartitionerKind::kMurmur2, key, kPartitions));
}

TEST_F(MetadataServiceTest, NodeForKeyBytes) {
  const std::string key("\xff\x00\x01", 3);
  const int32_t p = PartitionForKey(PartitionerKind::kMurmur2, key, kPartitions);
  AddNode("n1", {p});
  kiq::v1::NodeForKeyRequest request;
  request.set_store("orders");
  request.set_key_bytes(key);
  kiq::v1::NodeForKeyResponse response;
  ASSERT_TRUE(NodeForKey(request, &response).ok());
  EXPECT_EQ(response.partition(), p);
  EXPECT_EQ(response.owner().node_id(), "n1");
  EXPECT_EQ(response.state(), kiq::v1::PARTITION_STATE_ACTIVE);
}

TEST_F(MetadataServiceTest, NodeForKeyWithoutLiveOwnerLeavesOwnerEmpty) {
  const int32_t p = PartitionForKey(PartitionerKind::kMurmur2, "bob", kPartitions);
  AddNode("expired", {p}, {"orders"}, kiq::v1::PARTITION_STATE_ACTIVE, -absl::Seconds(1));
  kiq::v1::NodeForKeyResponse response;
  grpc::Status status = NodeForKey(KeyRequest("orders", "bob"), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.partition(), p);
  EXPECT_FALSE(response.has_owner());
  EXPECT_EQ(response.owner().node_id(), "");
  EXPECT_EQ(response.state(), kiq::v1::PARTITION_STATE_UNSPECIFIED);
}

TEST_F(MetadataServiceTest, NodeForKeyErrors) {
  kiq::v1::NodeForKeyResponse response;
  grpc::Status status = NodeForKey(KeyRequest("nope", "alice"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("nope"));

  status = NodeForKey(KeyRequest("", "alice"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  kiq::v1::NodeForKeyRequest no_key;
  no_key.set_store("orders");
  status = NodeForKey(no_key, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("key"));
}

TEST_F(MetadataServiceTest, AnswersFollowTheTable) {
  const int32_t p = PartitionForKey(PartitionerKind::kMurmur2, "carol", kPartitions);
  AddNode("n1", {p});
  kiq::v1::NodeForKeyResponse response;
  ASSERT_TRUE(NodeForKey(KeyRequest("orders", "carol"), &response).ok());
  EXPECT_EQ(response.owner().node_id(), "n1");
  table_.Remove("n1");
  response.Clear();
  ASSERT_TRUE(NodeForKey(KeyRequest("orders", "carol"), &response).ok());
  EXPECT_EQ(response.owner().node_id(), "");
}

}  // namespace
}  // namespace kiq::router
