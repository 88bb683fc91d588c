#pragma once

#include <functional>
#include <string>

#include <grpcpp/server_context.h>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "kiq/v1/query.pb.h"
#include "router/query_router.h"

namespace kiq::router {

// Read your writes before a scan or count, for the partitions of `min` that other nodes own:
// asks each owner, with the async stub, for a count of its partitions at `min`
// (PeerService.CountPartitions waits for the position on the owner's PositionWaiter, then reads
// the entry counts: cheap), and calls `done` once every owner has answered, or the deadline
// passed, or the caller left — whatever they answered. The scan that follows then finds the
// positions reached and does not wait at a peer, which would hold its worker for the whole
// wait (QueryRouter's scatter is synchronous); an owner that failed or moved is the scan's to
// retry or report, as without this step.
//
// Holds no thread while the owners wait. `done` runs once, on this thread (nothing to wait
// for) or a gRPC callback thread: it must not block. Partitions readable here (LocalWaits), or
// with no live owner, are not asked for. `cluster.table` and `cluster.peers` may be null (no
// cluster: `done` at once); they and `parent` must stay valid until `done` runs.
void AwaitRemotePositions(const ClusterView& cluster, const QueryRouter& router,
                          const std::string& store, const kiq::v1::Position& min,
                          absl::Time deadline, const grpc::CallbackServerContext* parent,
                          std::function<void()> done);

}  // namespace kiq::router
