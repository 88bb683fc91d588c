#include "router/remote_position_wait.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <vector>

#include <grpcpp/client_context.h>

#include "absl/container/flat_hash_set.h"
#include "kiq/v1/peer.grpc.pb.h"
#include "router/peer_pool.h"
#include "router/routing_table.h"

namespace kiq::router {
namespace {

// The calls of one wait, alive until the last answer; then `done`.
struct RemoteWait {
  struct Call {
    std::unique_ptr<grpc::ClientContext> context;
    kiq::v1::CountPartitionsRequest request;
    kiq::v1::CountPartitionsResponse response;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::atomic<size_t> pending{0};
  std::function<void()> done;
};

}  // namespace

void AwaitRemotePositions(const ClusterView& cluster, const QueryRouter& router,
                          const std::string& store, const kiq::v1::Position& min,
                          absl::Time deadline, const grpc::CallbackServerContext* parent,
                          std::function<void()> done) {
  if (cluster.table == nullptr || cluster.peers == nullptr || min.offsets().empty()) {
    done();
    return;
  }
  absl::flat_hash_set<int32_t> local;
  const kiq::v1::Position local_waits = router.LocalWaits(store, min);
  for (const kiq::v1::PartitionOffset& po : local_waits.offsets()) {
    local.insert(po.partition());
  }
  // Owner endpoint → the entries of `min` for its partitions.
  std::map<std::string, kiq::v1::CountPartitionsRequest> by_owner;
  for (const kiq::v1::PartitionOffset& po : min.offsets()) {
    if (local.contains(po.partition())) continue;
    std::optional<PartitionOwner> owner = cluster.table->OwnerOf(po.partition());
    if (!owner || owner->node.node_id() == cluster.self_node_id) continue;
    kiq::v1::CountPartitionsRequest& request = by_owner[Endpoint(owner->node)];
    request.set_store(store);
    if (std::find(request.partitions().begin(), request.partitions().end(), po.partition()) ==
        request.partitions().end()) {
      request.add_partitions(po.partition());
    }
    *request.mutable_min_position()->add_offsets() = po;
  }
  if (by_owner.empty()) {
    done();
    return;
  }
  auto wait = std::make_shared<RemoteWait>();
  wait->done = std::move(done);
  wait->pending.store(by_owner.size());
  for (auto& [endpoint, request] : by_owner) {
    auto call = std::make_unique<RemoteWait::Call>();
    call->context = parent != nullptr ? grpc::ClientContext::FromCallbackServerContext(*parent)
                                      : std::make_unique<grpc::ClientContext>();
    call->context->set_deadline(absl::ToChronoTime(deadline));
    call->context->AddMetadata(kForwardedHeader, "1");
    call->request = std::move(request);
    wait->calls.push_back(std::move(call));
  }
  // Every call is built before the first starts: an answer may come before the loop ends.
  size_t i = 0;
  for (const auto& [endpoint, unused] : by_owner) {
    RemoteWait::Call* call = wait->calls[i++].get();
    cluster.peers->Get(endpoint).peer->async()->CountPartitions(
        call->context.get(), &call->request, &call->response, [wait](grpc::Status) {
          if (wait->pending.fetch_sub(1) == 1) wait->done();
        });
  }
}

}  // namespace kiq::router
