#pragma once

#include "kiq/v1/membership.grpc.pb.h"
#include "router/auth.h"
#include "router/port/local_stores.h"
#include "router/routing_table.h"

namespace kiq::router {

// kiq.v1.MetadataService (Kafka Streams' allMetadata / allMetadataForStore /
// queryMetadataForKey) on the gRPC callback API, answered from the routing table: which live
// nodes there are, which serve a store, and which owns the partition of a key. Stores are
// described by `stores` (names, partition counts, partitioners), so an unknown store is
// NOT_FOUND here exactly as in the QueryService. Every answer is a few lookups in memory, so
// it runs inline in the reaction.
//
// Thread-safe; `table` and `stores` must outlive the server.
class MetadataServiceImpl final : public kiq::v1::MetadataService::CallbackService {
 public:
  // `auth` (optional) checks each call's token (Authorizer::AuthorizeClient).
  MetadataServiceImpl(const RoutingTable& table, const LocalStores& stores,
                      const Authorizer* auth = nullptr)
      : table_(table), stores_(stores), auth_(auth) {}

  grpc::ServerUnaryReactor* AllNodes(grpc::CallbackServerContext* context,
                                     const kiq::v1::AllNodesRequest* request,
                                     kiq::v1::NodesResponse* response) override;
  grpc::ServerUnaryReactor* NodesForStore(grpc::CallbackServerContext* context,
                                          const kiq::v1::NodesForStoreRequest* request,
                                          kiq::v1::NodesResponse* response) override;
  grpc::ServerUnaryReactor* NodeForKey(grpc::CallbackServerContext* context,
                                       const kiq::v1::NodeForKeyRequest* request,
                                       kiq::v1::NodeForKeyResponse* response) override;

  // The answers, without gRPC (the handlers above only wrap these).
  kiq::v1::NodesResponse AnswerAllNodes() const;
  absl::StatusOr<kiq::v1::NodesResponse> AnswerNodesForStore(
      const kiq::v1::NodesForStoreRequest& request) const;
  absl::StatusOr<kiq::v1::NodeForKeyResponse> AnswerNodeForKey(
      const kiq::v1::NodeForKeyRequest& request) const;

 private:
  absl::StatusOr<StoreInfo> Describe(absl::string_view store) const;

  const RoutingTable& table_;
  const LocalStores& stores_;
  const Authorizer* const auth_;
};

}  // namespace kiq::router
