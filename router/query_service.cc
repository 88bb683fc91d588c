#include "router/query_service.h"

#include "router/grpc_status.h"

namespace kiq::router {
namespace {

constexpr absl::Duration kMaxRequestTime = absl::Seconds(30);

std::string CodeName(absl::StatusCode code) {
  std::string name = absl::StatusCodeToString(code);
  return name.empty() ? "UNKNOWN" : name;
}

}  // namespace

template <typename Response>
void QueryServiceImpl::Finish(grpc::ServerUnaryReactor* reactor, absl::StatusOr<Response> result,
                              Response* response, absl::string_view method,
                              absl::string_view store, absl::string_view route,
                              absl::Time started) const {
  if (metrics_ != nullptr) {
    metrics_->RecordQuery(method, store, route, CodeName(result.status().code()),
                          absl::Now() - started);
  }
  if (!result.ok()) {
    reactor->Finish(ToGrpcStatus(result.status()));
    return;
  }
  *response = std::move(*result);
  reactor->Finish(grpc::Status::OK);
}

absl::Time RequestDeadline(const grpc::ServerContextBase& context) {
  const absl::Time cap = absl::Now() + kMaxRequestTime;
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return cap;
  return std::min(cap, absl::FromChrono(deadline));
}

grpc::ServerUnaryReactor* QueryServiceImpl::Get(grpc::CallbackServerContext* context,
                                                const kiq::v1::GetRequest* request,
                                                kiq::v1::GetResponse* response) {
  const absl::Time started = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline = RequestDeadline(*context);
  const bool forwarded = context->client_metadata().count(kForwardedHeader) > 0;
  // Answered inline when no wait and no forwarding can happen: a local point read, or a
  // forwarded call (answered from here or refused with NOT_OWNER, never forwarded again).
  if ((forwarded && !request->has_min_position()) || router_.IsLocal(*request)) {
    Finish(reactor, router_.Get(*request, deadline, forwarded), response, "Get",
           request->store(), "local", started);
  } else if (!forwarded && !request->has_min_position()) {
    // To the owner without blocking a thread: async forward, retries on a timer.
    router_.GetAsync(*request, deadline, context,
                     [this, reactor, request, response, started](
                         absl::StatusOr<kiq::v1::GetResponse> result) {
                       Finish(reactor, std::move(result), response, "Get", request->store(),
                              "forwarded", started);
                     });
  } else {
    // A read-your-writes wait blocks: on a worker.
    pool_.Schedule([this, context, reactor, request, response, deadline, forwarded, started] {
      Finish(reactor, router_.Get(*request, deadline, forwarded, context), response, "Get",
             request->store(), forwarded ? "local" : "forwarded", started);
    });
  }
  return reactor;
}

grpc::ServerUnaryReactor* QueryServiceImpl::Range(grpc::CallbackServerContext* context,
                                                  const kiq::v1::RangeRequest* request,
                                                  kiq::v1::ScanResponse* response) {
  const absl::Time started = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline = RequestDeadline(*context);
  pool_.Schedule([this, context, reactor, request, response, deadline, started] {
    Finish(reactor, router_.Range(*request, deadline, context), response, "Range", request->store(),
           "scatter", started);
  });
  return reactor;
}

grpc::ServerUnaryReactor* QueryServiceImpl::All(grpc::CallbackServerContext* context,
                                                const kiq::v1::AllRequest* request,
                                                kiq::v1::ScanResponse* response) {
  const absl::Time started = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline = RequestDeadline(*context);
  pool_.Schedule([this, context, reactor, request, response, deadline, started] {
    Finish(reactor, router_.All(*request, deadline, context), response, "All", request->store(),
           "scatter", started);
  });
  return reactor;
}

grpc::ServerUnaryReactor* QueryServiceImpl::Count(grpc::CallbackServerContext* context,
                                                  const kiq::v1::CountRequest* request,
                                                  kiq::v1::CountResponse* response) {
  const absl::Time started = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline = RequestDeadline(*context);
  pool_.Schedule([this, context, reactor, request, response, deadline, started] {
    Finish(reactor, router_.Count(*request, deadline, context), response, "Count", request->store(),
           "scatter", started);
  });
  return reactor;
}

grpc::ServerUnaryReactor* QueryServiceImpl::WindowFetch(
    grpc::CallbackServerContext* context, const kiq::v1::WindowFetchRequest* request,
    kiq::v1::WindowFetchResponse* response) {
  const absl::Time started = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  const absl::Time deadline = RequestDeadline(*context);
  const bool forwarded = context->client_metadata().count(kForwardedHeader) > 0;
  // A range read of one key that may forward or wait: on a worker, like scans.
  pool_.Schedule([this, context, reactor, request, response, deadline, forwarded, started] {
    Finish(reactor, router_.WindowFetch(*request, deadline, forwarded, context), response,
           "WindowFetch", request->store(), forwarded ? "local" : "forwarded", started);
  });
  return reactor;
}

}  // namespace kiq::router
