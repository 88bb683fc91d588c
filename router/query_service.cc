#include "router/query_service.h"

#include <deque>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "router/entry.h"
#include "router/remote_position_wait.h"
#include "router/request_limits.h"
#include "router/subscription_stream.h"

namespace kiq::router {
namespace {

constexpr absl::Duration kMaxRequestTime = absl::Seconds(30);
constexpr char kUnknownStoreLabel[] = "(unknown)";

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

void QueryServiceImpl::RecordQuery(absl::string_view method, absl::string_view store,
                                   absl::string_view route, absl::StatusCode code,
                                   absl::Time started) const {
  if (metrics_ == nullptr) return;
  // Labels stay bounded: a store that is not in the topology is not a label value.
  metrics_->RecordQuery(method, router_.KnowsStore(store) ? store : kUnknownStoreLabel, route,
                        CodeName(code), absl::Now() - started);
}

template <typename Response>
void QueryServiceImpl::Finish(grpc::ServerUnaryReactor* reactor, absl::StatusOr<Response> result,
                              Response* response, absl::string_view method, absl::string_view store,
                              absl::string_view route, absl::Time started) const {
  RecordQuery(method, store, route, result.status().code(), started);
  if (!result.ok()) {
    reactor->Finish(ToGrpcStatus(result.status()));
    return;
  }
  *response = std::move(*result);
  reactor->Finish(grpc::Status::OK);
}

grpc::Status QueryServiceImpl::Authorize(const grpc::CallbackServerContext& context,
                                         absl::string_view store) const {
  return auth_ == nullptr ? grpc::Status::OK : auth_->AuthorizeClient(context, store);
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
  if (grpc::Status s = Authorize(*context, request->store()); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  if (absl::Status s = CheckRequest(*request); !s.ok()) {
    Finish<kiq::v1::GetResponse>(reactor, s, response, "Get", request->store(), "local", started);
    return reactor;
  }
  const absl::Time deadline = RequestDeadline(*context);
  const Hop hop = HopOf(*context);
  const bool forwarded = hop != Hop::kClient;
  // Answered inline when no wait and no forwarding can happen: a local point read, or a
  // forwarded call (answered from here or refused with NOT_OWNER, never forwarded again).
  if ((forwarded && !request->has_min_position()) || router_.IsLocal(*request)) {
    Finish(reactor, router_.Get(*request, deadline, hop), response, "Get", request->store(),
           "local", started);
    return reactor;
  }
  std::shared_ptr<PositionWaiter::Slot> slot;
  if (request->has_min_position()) {
    absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> admitted = waiter_.Admit();
    if (!admitted.ok()) {
      Finish<kiq::v1::GetResponse>(reactor, admitted.status(), response, "Get", request->store(),
                                   forwarded ? "local" : "forwarded", started);
      return reactor;
    }
    slot = *std::move(admitted);
  }
  // To the owner, or waiting for a position, without blocking a thread: async forward, retries
  // on a timer, waits on the waiter.
  router_.GetAsync(*request, deadline, hop, context,
                   [this, reactor, request, response, started, forwarded,
                    slot](absl::StatusOr<kiq::v1::GetResponse> result) {
                     Finish(reactor, std::move(result), response, "Get", request->store(),
                            forwarded ? "local" : "forwarded", started);
                   });
  return reactor;
}

std::optional<grpc::Status> QueryServiceImpl::GetDirect(const kiq::v1::GetRequest& request,
                                                        const CallCredentials& credentials,
                                                        kiq::v1::GetResponse* response) const {
  const absl::Time started = absl::Now();
  if (auth_ != nullptr) {
    if (grpc::Status s = auth_->Check(credentials, request.store()); !s.ok()) return s;
  }
  absl::Status checked = CheckRequest(request);
  // A wait (min_position) or a forward takes the asynchronous path of Get.
  if (checked.ok() && !router_.IsLocal(request)) return std::nullopt;
  absl::StatusOr<kiq::v1::GetResponse> result =
      checked.ok() ? router_.Get(request, absl::Now() + kMaxRequestTime, Hop::kClient)
                   : absl::StatusOr<kiq::v1::GetResponse>(checked);
  RecordQuery("Get", request.store(), "local", result.status().code(), started);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* QueryServiceImpl::GetMany(grpc::CallbackServerContext* context,
                                                    const kiq::v1::GetManyRequest* request,
                                                    kiq::v1::GetManyResponse* response) {
  const absl::Time started = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (grpc::Status s = Authorize(*context, request->store()); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  const Hop hop = HopOf(*context);
  // "batch": keys from this node's partitions and from their owners, one forward per owner.
  const absl::string_view route = hop != Hop::kClient ? "local" : "batch";
  std::shared_ptr<PositionWaiter::Slot> slot;
  if (request->has_min_position()) {
    absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> admitted = waiter_.Admit();
    if (!admitted.ok()) {
      Finish<kiq::v1::GetManyResponse>(reactor, admitted.status(), response, "GetMany",
                                       request->store(), route, started);
      return reactor;
    }
    slot = *std::move(admitted);
  }
  // Limits (CheckRequest) are checked by the router before anything is read.
  router_.GetManyAsync(*request, RequestDeadline(*context), hop, context,
                       [this, reactor, request, response, started, route,
                        slot](absl::StatusOr<kiq::v1::GetManyResponse> result) {
                         Finish(reactor, std::move(result), response, "GetMany", request->store(),
                                route, started);
                       });
  return reactor;
}

template <typename Request, typename Response>
grpc::ServerUnaryReactor* QueryServiceImpl::Scatter(
    grpc::CallbackServerContext* context, const Request* request, Response* response,
    absl::string_view method,
    absl::StatusOr<Response> (QueryRouter::*run)(const Request&, absl::Time,
                                                 const grpc::CallbackServerContext*) const) {
  const absl::Time started = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (grpc::Status s = Authorize(*context, request->store()); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  if (absl::Status s = CheckRequest(*request); !s.ok()) {
    Finish<Response>(reactor, s, response, method, request->store(), "scatter", started);
    return reactor;
  }
  const absl::Time deadline = RequestDeadline(*context);
  auto scan = [this, context, reactor, request, response, deadline, started, method, run] {
    Finish(reactor, (router_.*run)(*request, deadline, context), response, method, request->store(),
           "scatter", started);
  };
  if (!request->has_min_position()) {
    pool_.Schedule(std::move(scan));
    return reactor;
  }
  absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> slot = waiter_.Admit();
  if (!slot.ok()) {
    Finish<Response>(reactor, slot.status(), response, method, request->store(), "scatter",
                     started);
    return reactor;
  }
  waiter_.Wait(
      request->store(), router_.LocalWaits(request->store(), request->min_position()), deadline,
      context,
      [this, reactor, request, response, started, method, deadline, context, scan = std::move(scan),
       slot = *std::move(slot)](absl::Status s) {
        if (!s.ok()) {
          Finish<Response>(
              reactor, WithContext(s, absl::StrCat(method, " store=", ClipKey(request->store()))),
              response, method, request->store(), "scatter", started);
          return;
        }
        // The slot is held until the scan has run: remote waits count as waiters.
        AwaitRemotePositions(cluster_, router_, request->store(), request->min_position(), deadline,
                             context,
                             [this, scan, slot] { wait_pool_.Schedule([scan, slot] { scan(); }); });
      });
  return reactor;
}

grpc::ServerUnaryReactor* QueryServiceImpl::Range(grpc::CallbackServerContext* context,
                                                  const kiq::v1::RangeRequest* request,
                                                  kiq::v1::ScanResponse* response) {
  return Scatter(context, request, response, "Range", &QueryRouter::Range);
}

grpc::ServerUnaryReactor* QueryServiceImpl::All(grpc::CallbackServerContext* context,
                                                const kiq::v1::AllRequest* request,
                                                kiq::v1::ScanResponse* response) {
  return Scatter(context, request, response, "All", &QueryRouter::All);
}

grpc::ServerUnaryReactor* QueryServiceImpl::Count(grpc::CallbackServerContext* context,
                                                  const kiq::v1::CountRequest* request,
                                                  kiq::v1::CountResponse* response) {
  return Scatter(context, request, response, "Count", &QueryRouter::Count);
}

grpc::ServerUnaryReactor* QueryServiceImpl::WindowFetch(grpc::CallbackServerContext* context,
                                                        const kiq::v1::WindowFetchRequest* request,
                                                        kiq::v1::WindowFetchResponse* response) {
  const absl::Time started = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (grpc::Status s = Authorize(*context, request->store()); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  const Hop hop = HopOf(*context);
  const absl::string_view route = hop != Hop::kClient ? "local" : "forwarded";
  if (absl::Status s = CheckRequest(*request); !s.ok()) {
    Finish<kiq::v1::WindowFetchResponse>(reactor, s, response, "WindowFetch", request->store(),
                                         route, started);
    return reactor;
  }
  const absl::Time deadline = RequestDeadline(*context);
  std::shared_ptr<PositionWaiter::Slot> slot;
  if (request->has_min_position()) {
    absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> admitted = waiter_.Admit();
    if (!admitted.ok()) {
      Finish<kiq::v1::WindowFetchResponse>(reactor, admitted.status(), response, "WindowFetch",
                                           request->store(), route, started);
      return reactor;
    }
    slot = *std::move(admitted);
  }
  // A range read of one key: read on a worker, like scans; forwards and waits hold no thread.
  router_.WindowFetchAsync(
      *request, deadline, hop, context,
      [this](std::function<void()> read) { pool_.Schedule(std::move(read)); },
      [this, reactor, request, response, started, route,
       slot](absl::StatusOr<kiq::v1::WindowFetchResponse> result) {
        Finish(reactor, std::move(result), response, "WindowFetch", request->store(), route,
               started);
      });
  return reactor;
}

grpc::ServerWriteReactor<kiq::v1::SubscribeResponse>* QueryServiceImpl::Subscribe(
    grpc::CallbackServerContext* context, const kiq::v1::SubscribeRequest* request) {
  if (grpc::Status s = Authorize(*context, request->store()); !s.ok()) {
    return new RefusedStream<kiq::v1::SubscribeResponse>(s);
  }
  const absl::Time started = absl::Now();
  StoreInfo info;
  absl::Status checked = CheckRequest(*request);
  absl::StatusOr<std::unique_ptr<Subscription>> subscription =
      checked.ok() ? router_.Subscribe(*request, &info)
                   : absl::StatusOr<std::unique_ptr<Subscription>>(checked);
  if (!subscription.ok()) {
    if (metrics_ != nullptr) {
      metrics_->RecordQuery(
          "Subscribe", router_.KnowsStore(request->store()) ? request->store() : kUnknownStoreLabel,
          "fan-in", CodeName(subscription.status().code()), absl::Now() - started);
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
