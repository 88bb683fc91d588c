#pragma once

#include "kiq/v1/peer.grpc.pb.h"
#include "router/arena_allocator.h"
#include "router/auth.h"
#include "router/port/local_stores.h"
#include "router/port/subscription.h"
#include "router/position_waiter.h"
#include "router/thread_pool.h"

namespace kiq::router {

// Partition-scoped reads for other nodes' routers: scans and counts of the partitions this
// node holds, each partition answered on its own (a partition that is not ACTIVE here is
// reported with its status code, not as a failure of the call), and the change streams a
// router fans subscriptions in from. Never forwards. Field sizes are checked first
// (router/request_limits.h). Reads run on `pool`, off the completion threads; a request with a
// min_position first waits on `waiter` (optional: without one the wait blocks a worker), so a
// waiting request holds no worker. Thread-safe.
class PeerServiceImpl final : public kiq::v1::PeerService::CallbackService {
 public:
  // `auth` (optional) admits only peers (Authorizer::AuthorizePeer).
  PeerServiceImpl(const LocalStores& local, ThreadPool& pool, PositionWaiter* waiter = nullptr,
                  const Authorizer* auth = nullptr)
      : local_(local), pool_(pool), waiter_(waiter), auth_(auth) {
    SetMessageAllocatorFor_ScanPartitions(&scan_allocator_);
  }

  grpc::ServerUnaryReactor* ScanPartitions(grpc::CallbackServerContext* context,
                                           const kiq::v1::ScanPartitionsRequest* request,
                                           kiq::v1::ScanPartitionsResponse* response) override;
  grpc::ServerUnaryReactor* CountPartitions(grpc::CallbackServerContext* context,
                                            const kiq::v1::CountPartitionsRequest* request,
                                            kiq::v1::CountPartitionsResponse* response) override;
  // Streams the changes of the requested partitions held here (see peer.proto).
  grpc::ServerWriteReactor<kiq::v1::PeerChange>* SubscribePartitions(
      grpc::CallbackServerContext* context,
      const kiq::v1::SubscribePartitionsRequest* request) override;

 private:
  const LocalStores& local_;
  ThreadPool& pool_;
  PositionWaiter* const waiter_;
  const Authorizer* const auth_;
  // A scan's answer (up to thousands of entries) is built on an arena, freed in one go.
  ArenaMessageAllocator<kiq::v1::ScanPartitionsRequest, kiq::v1::ScanPartitionsResponse>
      scan_allocator_;
};

// The entries of `position` for one partition: what a node
// must wait for before answering about those partitions.
kiq::v1::Position PositionFor(const kiq::v1::Position& position, int32_t partition);

// A change as the peer stream carries it, and back.
kiq::v1::PeerChange ToPeerChange(ChangeEvent change);
ChangeEvent FromPeerChange(kiq::v1::PeerChange change);

}  // namespace kiq::router
