#include "router/query_service.h"

#include <deque>

#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "router/entry.h"
#include "router/subscription_stream.h"

namespace kiq::router {
namespace {

constexpr absl::Duration kMaxRequestTime = absl::Seconds(30);

std::string CodeName(absl::StatusCode code) {
  std::string name = absl::StatusCodeToString(code);
  return name.empty() ? "UNKNOWN" : name;
}

kiq::v1::SubscribeResponse RenderChange(const StoreInfo& info, ChangeEvent change) {
  kiq::v1::SubscribeResponse out;
  out.set_type(kiq::v1::SubscribeResponse::CHANGE);
  out.set_topic(std::move(change.topic));
  out.set_offset(change.offset);
  if (change.old_value) {
    kiq::v1::Entry old =
        RenderEntry(info, KeyValue{change.key, std::move(*change.old_value), change.partition});
    out.set_has_old_value(true);
    out.set_old_value(std::move(*old.mutable_value()));
    if (old.has_json()) *out.mutable_old_json() = std::move(*old.mutable_json());
  }
  if (change.new_value) {
    *out.mutable_entry() = RenderEntry(
        info, KeyValue{std::move(change.key), std::move(*change.new_value), change.partition});
  } else {
    out.set_deleted(true);
    kiq::v1::Entry* entry = out.mutable_entry();
    *entry = RenderEntry(info, KeyValue{std::move(change.key), std::string(), change.partition});
    entry->clear_value();
    entry->clear_json();
  }
  return out;
}

}  // namespace

template <typename Response>
void QueryServiceImpl::Finish(grpc::ServerUnaryReactor* reactor, absl::StatusOr<Response> result,
                              Response* response, absl::string_view method, absl::string_view store,
                              absl::string_view route, absl::Time started) const {
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
    Finish(reactor, router_.Get(*request, deadline, forwarded), response, "Get", request->store(),
           "local", started);
  } else if (!forwarded && !request->has_min_position()) {
    // To the owner without blocking a thread: async forward, retries on a timer.
    router_.GetAsync(
        *request, deadline, context,
        [this, reactor, request, response, started](absl::StatusOr<kiq::v1::GetResponse> result) {
          Finish(reactor, std::move(result), response, "Get", request->store(), "forwarded",
                 started);
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

grpc::ServerUnaryReactor* QueryServiceImpl::WindowFetch(grpc::CallbackServerContext* context,
                                                        const kiq::v1::WindowFetchRequest* request,
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

grpc::ServerWriteReactor<kiq::v1::SubscribeResponse>* QueryServiceImpl::Subscribe(
    grpc::CallbackServerContext* context, const kiq::v1::SubscribeRequest* request) {
  (void)context;
  const absl::Time started = absl::Now();
  StoreInfo info;
  absl::StatusOr<std::unique_ptr<Subscription>> subscription = router_.Subscribe(*request, &info);
  if (!subscription.ok()) {
    if (metrics_ != nullptr) {
      metrics_->RecordQuery("Subscribe", request->store(), "fan-in",
                            CodeName(subscription.status().code()), absl::Now() - started);
    }
    return new RefusedStream<kiq::v1::SubscribeResponse>(ToGrpcStatus(subscription.status()));
  }
  SubscriptionRenderer<kiq::v1::SubscribeResponse> render;
  render.snapshot = [info](KeyValue kv) {
    kiq::v1::SubscribeResponse out;
    out.set_type(kiq::v1::SubscribeResponse::SNAPSHOT);
    *out.mutable_entry() = RenderEntry(info, std::move(kv));
    return out;
  };
  render.snapshot_end = [] {
    kiq::v1::SubscribeResponse out;
    out.set_type(kiq::v1::SubscribeResponse::SNAPSHOT_END);
    return out;
  };
  render.change = [info](ChangeEvent change) { return RenderChange(info, std::move(change)); };
  render.done = [metrics = metrics_, store = info.name, started](const grpc::Status& status) {
    if (metrics == nullptr) return;
    metrics->RecordQuery("Subscribe", store, "fan-in",
                         CodeName(static_cast<absl::StatusCode>(status.error_code())),
                         absl::Now() - started);
  };
  auto* stream = new SubscriptionStream<kiq::v1::SubscribeResponse>(
      std::move(*subscription), request->from() == kiq::v1::SubscribeRequest::FROM_SNAPSHOT,
      std::move(render));
  stream->Start();
  return stream;
}

}  // namespace kiq::router
