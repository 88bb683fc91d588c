#include "router/metadata_service.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "common/topology/partitioner.h"
#include "router/entry.h"

namespace kiq::router {
namespace {

grpc::ServerUnaryReactor* Refuse(grpc::CallbackServerContext* context, grpc::Status status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(std::move(status));
  return reactor;
}

template <typename Response>
grpc::ServerUnaryReactor* FinishWith(grpc::CallbackServerContext* context,
                                     absl::StatusOr<Response> result, Response* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (!result.ok()) {
    reactor->Finish(ToGrpcStatus(result.status()));
  } else {
    *response = std::move(*result);
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

void AddAll(std::vector<kiq::v1::NodeInfo> nodes, kiq::v1::NodesResponse* response) {
  response->mutable_nodes()->Reserve(static_cast<int>(nodes.size()));
  for (kiq::v1::NodeInfo& node : nodes) *response->add_nodes() = std::move(node);
}

}  // namespace

absl::StatusOr<StoreInfo> MetadataServiceImpl::Describe(absl::string_view store) const {
  if (store.empty()) return absl::InvalidArgumentError("store is required");
  return stores_.Describe(store);
}

kiq::v1::NodesResponse MetadataServiceImpl::AnswerAllNodes() const {
  kiq::v1::NodesResponse response;
  AddAll(table_.AllNodes(), &response);
  return response;
}

absl::StatusOr<kiq::v1::NodesResponse> MetadataServiceImpl::AnswerNodesForStore(
    const kiq::v1::NodesForStoreRequest& request) const {
  absl::StatusOr<StoreInfo> info = Describe(request.store());
  if (!info.ok()) return info.status();
  kiq::v1::NodesResponse response;
  AddAll(table_.NodesForStore(request.store()), &response);
  return response;
}

absl::StatusOr<kiq::v1::NodeForKeyResponse> MetadataServiceImpl::AnswerNodeForKey(
    const kiq::v1::NodeForKeyRequest& request) const {
  absl::StatusOr<StoreInfo> info = Describe(request.store());
  if (!info.ok()) return info.status();
  absl::StatusOr<std::string> key = RequestKey(request);
  if (!key.ok()) return key.status();
  if (info->num_partitions <= 0) {
    return absl::UnavailableError(absl::StrCat("node for key store=", request.store(), " key=",
                                               ClipKey(*key), ": partition count not known yet"));
  }
  kiq::v1::NodeForKeyResponse response;
  const int32_t partition = PartitionForKey(info->partitioner, *key, info->num_partitions);
  response.set_partition(partition);
  // No live owner: the owner stays empty (and the state UNSPECIFIED); we do not guess.
  if (std::optional<PartitionOwner> owner = table_.OwnerOf(partition)) {
    *response.mutable_owner() = std::move(owner->node);
    response.set_state(owner->state);
  }
  return response;
}

grpc::ServerUnaryReactor* MetadataServiceImpl::AllNodes(grpc::CallbackServerContext* context,
                                                        const kiq::v1::AllNodesRequest* request,
                                                        kiq::v1::NodesResponse* response) {
  if (auth_ != nullptr) {
    if (grpc::Status s = auth_->AuthorizeClient(*context, ""); !s.ok()) return Refuse(context, s);
  }
  return FinishWith<kiq::v1::NodesResponse>(context, AnswerAllNodes(), response);
}

grpc::ServerUnaryReactor* MetadataServiceImpl::NodesForStore(
    grpc::CallbackServerContext* context, const kiq::v1::NodesForStoreRequest* request,
    kiq::v1::NodesResponse* response) {
  if (auth_ != nullptr) {
    if (grpc::Status s = auth_->AuthorizeClient(*context, request->store()); !s.ok()) {
      return Refuse(context, s);
    }
  }
  return FinishWith(context, AnswerNodesForStore(*request), response);
}

grpc::ServerUnaryReactor* MetadataServiceImpl::NodeForKey(grpc::CallbackServerContext* context,
                                                          const kiq::v1::NodeForKeyRequest* request,
                                                          kiq::v1::NodeForKeyResponse* response) {
  if (auth_ != nullptr) {
    if (grpc::Status s = auth_->AuthorizeClient(*context, request->store()); !s.ok()) {
      return Refuse(context, s);
    }
  }
  return FinishWith(context, AnswerNodeForKey(*request), response);
}

}  // namespace kiq::router
