#pragma once

#include <functional>
#include <optional>

#include "kiq/v1/query.grpc.pb.h"
#include "router/auth.h"
#include "router/position_waiter.h"
#include "router/query_metrics.h"
#include "router/query_router.h"
#include "router/scan_read_ahead.h"
#include "router/thread_pool.h"

namespace kiq::router {

// The public kiq.v1.QueryService on the gRPC callback API. Every request's field sizes are
// checked first (router/request_limits.h). Point reads run inline in the reaction (a RocksDB
// point lookup costs microseconds) or, when forwarded, asynchronously; scans and counts run on
// `pool` so that no completion thread ever blocks. Requests with a min_position (read your
// writes) hold no worker while they wait: `waiter` watches their local positions (at most
// PositionWaiter's limit of them, RESOURCE_EXHAUSTED past it); a scan's positions at other
// owners are then waited for asynchronously too (AwaitRemotePositions, through `cluster`), and
// only then does the scan run, on `wait_pool`, gathering from peers that no longer wait. So a
// waiting request holds a slot of the waiter, never a worker. Thread-safe; `router`, the pools,
// `waiter` and what `cluster` points to must outlive the server.
class QueryServiceImpl final : public kiq::v1::QueryService::CallbackService {
 public:
  // `metrics` is optional; without `cluster` (table and peers) remote positions are waited for
  // by the scan itself, on its worker. `auth` (optional) checks each call's token or peer
  // credentials first (Authorizer::AuthorizeClient).
  QueryServiceImpl(const QueryRouter& router, ThreadPool& pool, ThreadPool& wait_pool,
                   PositionWaiter& waiter, QueryMetrics* metrics = nullptr,
                   ClusterView cluster = {}, const Authorizer* auth = nullptr)
      : router_(router),
        pool_(pool),
        wait_pool_(wait_pool),
        waiter_(waiter),
        metrics_(metrics),
        cluster_(std::move(cluster)),
        auth_(auth) {}

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context,
                                const kiq::v1::GetRequest* request,
                                kiq::v1::GetResponse* response) override;
  // Asynchronous like a forwarded Get: local partitions read inline, one forward per owner.
  grpc::ServerUnaryReactor* GetMany(grpc::CallbackServerContext* context,
                                    const kiq::v1::GetManyRequest* request,
                                    kiq::v1::GetManyResponse* response) override;
  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context,
                                  const kiq::v1::RangeRequest* request,
                                  kiq::v1::ScanResponse* response) override;
  grpc::ServerUnaryReactor* All(grpc::CallbackServerContext* context,
                                const kiq::v1::AllRequest* request,
                                kiq::v1::ScanResponse* response) override;
  grpc::ServerUnaryReactor* Count(grpc::CallbackServerContext* context,
                                  const kiq::v1::CountRequest* request,
                                  kiq::v1::CountResponse* response) override;
  grpc::ServerUnaryReactor* WindowFetch(grpc::CallbackServerContext* context,
                                        const kiq::v1::WindowFetchRequest* request,
                                        kiq::v1::WindowFetchResponse* response) override;
  // Range as a stream of pages, read from the owners in batches of several pages (one scatter
  // per batch), each batch read on a worker while the one before is being sent (one batch of
  // look-ahead, so at most two batches are held). Each page has its own deadline (the
  // caller's, capped like every request's), so a long stream is not cut at the cap.
  grpc::ServerWriteReactor<kiq::v1::ScanResponse>* Scan(
      grpc::CallbackServerContext* context, const kiq::v1::RangeRequest* request) override;
  // Streams until the subscription ends (overflow: RESOURCE_EXHAUSTED; a moved partition that
  // cannot resume without a gap: ABORTED; no owner for 60 s: UNAVAILABLE) or the client
  // cancels. Moves that can be followed are followed (router/fan_in.h).
  grpc::ServerWriteReactor<kiq::v1::SubscribeResponse>* Subscribe(
      grpc::CallbackServerContext* context, const kiq::v1::SubscribeRequest* request) override;

  // Get for a caller that is not a gRPC call (the HTTP gateway, on its connection's thread):
  // answers what Get would, with the same checks and metrics, when that needs neither a wait
  // nor a forward (a local point read, or a request refused at once); nullopt otherwise, and
  // the caller then makes the call through gRPC. `credentials` are what the caller presented
  // (a client's, never a peer's).
  std::optional<grpc::Status> GetDirect(const kiq::v1::GetRequest& request,
                                        const CallCredentials& credentials,
                                        kiq::v1::GetResponse* response) const;

 private:
  // The Authorizer's verdict on a call about `store` (OK without one).
  grpc::Status Authorize(const grpc::CallbackServerContext& context, absl::string_view store) const;
  // Records a query's metrics.
  void RecordQuery(absl::string_view method, absl::string_view store, absl::string_view route,
                   absl::StatusCode code, absl::Time started) const;
  // Sends the answer and records the query's metrics.
  template <typename Response>
  void Finish(grpc::ServerUnaryReactor* reactor, absl::StatusOr<Response> result,
              Response* response, absl::string_view method, absl::string_view store,
              absl::string_view route, absl::Time started) const;
  // Runs a scan or count (`read`, on a worker, writing the answer into `response`), after
  // waiting for its local min_position if any.
  template <typename Request, typename Response>
  using ScatterRead = std::function<absl::Status(const Request&, absl::Time,
                                                 const grpc::CallbackServerContext*, Response*)>;
  template <typename Request, typename Response>
  grpc::ServerUnaryReactor* Scatter(grpc::CallbackServerContext* context, const Request* request,
                                    Response* response, absl::string_view method,
                                    ScatterRead<Request, Response> read);

  // All or Range: a request with a page token (a client paging through) and no min_position
  // is answered from the pages read ahead (read_ahead_) if one is kept for it, else it reads
  // kReadAheadPages pages in one scatter, answers the first and keeps the others. Other
  // requests read their page alone.
  template <typename Request>
  grpc::ServerUnaryReactor* PagedScan(grpc::CallbackServerContext* context, const Request* request,
                                      kiq::v1::ScanResponse* response, absl::string_view method);

  // A slot of the waiter for a request that waits for a position (`waits`), else none
  // (nullptr); RESOURCE_EXHAUSTED when the waiter is full.
  absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> AdmitIfWaiting(bool waits) const;
  // Runs `run` on a worker once the local and remote entries of `min_position` (if given) are
  // reached, else `fail` with why not; `store` and `min_position` must outlive the wait. While
  // it waits the request holds a slot of the waiter, never a worker.
  void AfterPositions(grpc::CallbackServerContext* context, const std::string& store,
                      const kiq::v1::Position* min_position, absl::Time deadline,
                      absl::string_view method, std::function<void()> run,
                      std::function<void(absl::Status)> fail);

  const QueryRouter& router_;
  ThreadPool& pool_;
  ThreadPool& wait_pool_;
  PositionWaiter& waiter_;
  QueryMetrics* const metrics_;
  const ClusterView cluster_;
  const Authorizer* const auth_;
  // Pages read ahead of clients paging through All and Range.
  mutable ScanReadAhead read_ahead_;
};

// The caller's deadline, capped so that a request without one cannot wait forever.
absl::Time RequestDeadline(const grpc::ServerContextBase& context);

}  // namespace kiq::router
