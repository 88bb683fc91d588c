#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/server_context.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "kiq/v1/membership.grpc.pb.h"
#include "kiq/v1/membership.pb.h"

// Header-only (the test build compiles only *_test.cc): a kiq.v1.MetadataService describing a
// canned cluster, for the client and kiqctl tests (served by FakeServer, fake_server.h).
namespace kiq::client {

// The canned cluster; leases are relative to kFakeNow, so tests render them with a pinned clock:
//   n1  10.0.0.1:7070       stores order_count,customers  partitions 0, 1, 4 restoring
//                                                         lease kFakeNow + 30s
//   n2  kiq-1.kiq:7070      stores order_count            partitions 3, 2, 5 failed (unsorted)
//                                                         lease kFakeNow + 4.5s
//   n3  ::1 port 7071       stores customers              no partitions; lease expired 2s ago
// Stores: order_count (n1, n2), customers (n1, n3), lonely (no node), slow (every call waits
// until the client gives up); any other store is NOT_FOUND `unknown store "<name>"`.
// NodeForKey: the partition of "alice" is 3, "bob" 4, "\xff\x01" 5, "carol" 6 (unowned), any
// other key's is its length mod 8; the owner is the store's node owning that partition.
// Thread-safe: records requests under a mutex.
class FakeMetadataService final : public kiq::v1::MetadataService::Service {
 public:
  static constexpr int64_t kFakeNowMs = 1'800'000'000'000;  // 2027-01-15T08:00:00Z
  static absl::Time FakeNow() { return absl::FromUnixMillis(kFakeNowMs); }

  FakeMetadataService() {
    kiq::v1::NodeInfo* n1 = AddNode("n1", "10.0.0.1", 7070, kFakeNowMs + 30'000);
    n1->set_http_endpoint("10.0.0.1:8080");
    n1->add_stores("order_count");
    n1->add_stores("customers");
    Own(n1, 0, kiq::v1::PARTITION_STATE_ACTIVE);
    Own(n1, 1, kiq::v1::PARTITION_STATE_ACTIVE);
    Own(n1, 4, kiq::v1::PARTITION_STATE_RESTORING);
    kiq::v1::NodeInfo* n2 = AddNode("n2", "kiq-1.kiq", 7070, kFakeNowMs + 4'500);
    n2->add_stores("order_count");
    Own(n2, 3, kiq::v1::PARTITION_STATE_ACTIVE);
    Own(n2, 2, kiq::v1::PARTITION_STATE_ACTIVE);
    Own(n2, 5, kiq::v1::PARTITION_STATE_FAILED);
    kiq::v1::NodeInfo* n3 = AddNode("n3", "::1", 7071, kFakeNowMs - 2'000);
    n3->add_stores("customers");
    partition_of_key_ = {{"alice", 3}, {"bob", 4}, {"\xff\x01", 5}, {"carol", 6}};
  }

  grpc::Status AllNodes(grpc::ServerContext* context, const kiq::v1::AllNodesRequest* request,
                        kiq::v1::NodesResponse* response) override {
    *response = nodes_;
    return grpc::Status::OK;
  }

  grpc::Status NodesForStore(grpc::ServerContext* context,
                             const kiq::v1::NodesForStoreRequest* request,
                             kiq::v1::NodesResponse* response) override {
    Record(&nodes_for_store_requests_, *request);
    if (grpc::Status s = CheckStore(context, request->store()); !s.ok()) return s;
    for (const kiq::v1::NodeInfo& node : nodes_.nodes()) {
      if (Hosts(node, request->store())) *response->add_nodes() = node;
    }
    return grpc::Status::OK;
  }

  grpc::Status NodeForKey(grpc::ServerContext* context, const kiq::v1::NodeForKeyRequest* request,
                          kiq::v1::NodeForKeyResponse* response) override {
    Record(&node_for_key_requests_, *request);
    if (grpc::Status s = CheckStore(context, request->store()); !s.ok()) return s;
    std::string key;
    switch (request->key_kind_case()) {
      case kiq::v1::NodeForKeyRequest::kKey:
        key = request->key();
        break;
      case kiq::v1::NodeForKeyRequest::kKeyBytes:
        key = request->key_bytes();
        break;
      default:
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "key is required");
    }
    auto it = partition_of_key_.find(key);
    const int32_t partition =
        it != partition_of_key_.end() ? it->second : static_cast<int32_t>(key.size() % 8);
    response->set_partition(partition);
    for (const kiq::v1::NodeInfo& node : nodes_.nodes()) {
      if (!Hosts(node, request->store())) continue;
      for (const kiq::v1::OwnedPartition& owned : node.partitions()) {
        if (owned.partition() != partition) continue;
        *response->mutable_owner() = node;
        response->set_state(owned.state());
        return grpc::Status::OK;
      }
    }
    return grpc::Status::OK;
  }

  std::vector<kiq::v1::NodesForStoreRequest> nodes_for_store_requests() const {
    return Copy(nodes_for_store_requests_);
  }
  std::vector<kiq::v1::NodeForKeyRequest> node_for_key_requests() const {
    return Copy(node_for_key_requests_);
  }

 private:
  kiq::v1::NodeInfo* AddNode(const std::string& id, const std::string& host, int32_t port,
                             int64_t lease_expiry_ms) {
    kiq::v1::NodeInfo* node = nodes_.add_nodes();
    node->set_node_id(id);
    node->set_host(host);
    node->set_port(port);
    node->set_generation(7);
    node->set_lease_expiry_ms(lease_expiry_ms);
    return node;
  }

  static void Own(kiq::v1::NodeInfo* node, int32_t partition, kiq::v1::PartitionState state) {
    kiq::v1::OwnedPartition* owned = node->add_partitions();
    owned->set_partition(partition);
    owned->set_state(state);
    kiq::v1::PartitionOffset* offset = owned->add_offsets();
    offset->set_topic("orders");
    offset->set_partition(partition);
    offset->set_offset(100 + partition);
  }

  static bool Hosts(const kiq::v1::NodeInfo& node, const std::string& store) {
    for (const std::string& s : node.stores()) {
      if (s == store) return true;
    }
    return false;
  }

  static grpc::Status CheckStore(grpc::ServerContext* context, const std::string& store) {
    if (store == "slow") {
      // Wait for the client's deadline rather than sleeping a fixed time: fast and not flaky.
      while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    if (store == "order_count" || store == "customers" || store == "lonely") {
      return grpc::Status::OK;
    }
    return grpc::Status(grpc::StatusCode::NOT_FOUND, absl::StrCat("unknown store \"", store, "\""));
  }

  template <typename T>
  void Record(std::vector<T>* requests, const T& request) {
    std::lock_guard<std::mutex> lock(mu_);
    requests->push_back(request);
  }

  template <typename T>
  std::vector<T> Copy(const std::vector<T>& requests) const {
    std::lock_guard<std::mutex> lock(mu_);
    return requests;
  }

  kiq::v1::NodesResponse nodes_;                     // Constant after construction.
  std::map<std::string, int32_t> partition_of_key_;  // Constant after construction.
  mutable std::mutex mu_;
  std::vector<kiq::v1::NodesForStoreRequest> nodes_for_store_requests_;  // Guarded by mu_.
  std::vector<kiq::v1::NodeForKeyRequest> node_for_key_requests_;        // Guarded by mu_.
};

}  // namespace kiq::client
