#pragma once

#include "kiq/v1/query.grpc.pb.h"
#include "router/query_metrics.h"
#include "router/query_router.h"
#include "router/thread_pool.h"

namespace kiq::router {

// The public kiq.v1.QueryService on the gRPC callback API. Point reads run inline in the
// reaction (a RocksDB point lookup costs microseconds); scans, counts and read-your-writes
// waits run on `pool` so that no completion thread ever blocks. Thread-safe; `router` and
// `pool` must outlive the server.
class QueryServiceImpl final : public kiq::v1::QueryService::CallbackService {
 public:
  // `metrics` is optional.
  QueryServiceImpl(const QueryRouter& router, ThreadPool& pool, QueryMetrics* metrics = nullptr)
      : router_(router), pool_(pool), metrics_(metrics) {}

  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* context,
                                const kiq::v1::GetRequest* request,
                                kiq::v1::GetResponse* response) override;
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
  // Streams until the subscription ends (overflow: RESOURCE_EXHAUSTED; a moved partition that
  // cannot resume without a gap: ABORTED; no owner for 60 s: UNAVAILABLE) or the client
  // cancels. Moves that can be followed are followed (router/fan_in.h).
  grpc::ServerWriteReactor<kiq::v1::SubscribeResponse>* Subscribe(
      grpc::CallbackServerContext* context, const kiq::v1::SubscribeRequest* request) override;

 private:
  // Sends the answer and records the query's metrics.
  template <typename Response>
  void Finish(grpc::ServerUnaryReactor* reactor, absl::StatusOr<Response> result,
              Response* response, absl::string_view method, absl::string_view store,
              absl::string_view route, absl::Time started) const;

  const QueryRouter& router_;
  ThreadPool& pool_;
  QueryMetrics* const metrics_;
};

// The caller's deadline, capped so that a request without one cannot wait forever.
absl::Time RequestDeadline(const grpc::ServerContextBase& context);

}  // namespace kiq::router
