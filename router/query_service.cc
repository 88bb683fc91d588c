#include "router/query_service.h"

#include <algorithm>
#include <deque>
#include <functional>
#include <optional>
#include <string>

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
  if (hop != Hop::kToStandby) {
    if (std::optional<absl::StatusOr<kiq::v1::GetResponse>> here = router_.GetIfLocal(*request)) {
      Finish(reactor, *std::move(here), response, "Get", request->store(), "local", started);
      return reactor;
    }
  }
  if (forwarded && !request->has_min_position()) {
    Finish(reactor, router_.Get(*request, deadline, hop), response, "Get", request->store(),
           "local", started);
    return reactor;
  }
  absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> admitted =
      AdmitIfWaiting(request->has_min_position());
  if (!admitted.ok()) {
    Finish<kiq::v1::GetResponse>(reactor, admitted.status(), response, "Get", request->store(),
                                 forwarded ? "local" : "forwarded", started);
    return reactor;
  }
  std::shared_ptr<PositionWaiter::Slot> slot = *std::move(admitted);
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
  std::optional<absl::StatusOr<kiq::v1::GetResponse>> here;
  if (checked.ok()) {
    here = router_.GetIfLocal(request);
    // A wait (min_position) or a forward takes the asynchronous path of Get.
    if (!here) return std::nullopt;
  } else {
    here = checked;
  }
  absl::StatusOr<kiq::v1::GetResponse>& result = *here;
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
  absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> admitted =
      AdmitIfWaiting(request->has_min_position());
  if (!admitted.ok()) {
    Finish<kiq::v1::GetManyResponse>(reactor, admitted.status(), response, "GetMany",
                                     request->store(), route, started);
    return reactor;
  }
  std::shared_ptr<PositionWaiter::Slot> slot = *std::move(admitted);
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
grpc::ServerUnaryReactor* QueryServiceImpl::Scatter(grpc::CallbackServerContext* context,
                                                    const Request* request, Response* response,
                                                    absl::string_view method,
                                                    ScatterRead<Request, Response> read) {
  const absl::Time started = absl::Now();
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (grpc::Status s = Authorize(*context, request->store()); !s.ok()) {
    reactor->Finish(s);
    return reactor;
  }
  auto finish = [this, reactor, request, started, method](const absl::Status& s) {
    RecordQuery(method, request->store(), "scatter", s.code(), started);
    reactor->Finish(s.ok() ? grpc::Status::OK : ToGrpcStatus(s));
  };
  if (absl::Status s = CheckRequest(*request); !s.ok()) {
    finish(s);
    return reactor;
  }
  const absl::Time deadline = RequestDeadline(*context);
  AfterPositions(
      context, request->store(), request->has_min_position() ? &request->min_position() : nullptr,
      deadline, method,
      [context, request, response, deadline, read = std::move(read), finish] {
        finish(read(*request, deadline, context, response));
      },
      finish);
  return reactor;
}

absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> QueryServiceImpl::AdmitIfWaiting(
    bool waits) const {
  if (!waits) return std::shared_ptr<PositionWaiter::Slot>();
  return waiter_.Admit();
}

void QueryServiceImpl::AfterPositions(grpc::CallbackServerContext* context,
                                      const std::string& store,
                                      const kiq::v1::Position* min_position, absl::Time deadline,
                                      absl::string_view method, std::function<void()> run,
                                      std::function<void(absl::Status)> fail) {
  if (min_position == nullptr) {
    pool_.Schedule(std::move(run));
    return;
  }
  absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> slot = waiter_.Admit();
  if (!slot.ok()) return fail(slot.status());
  waiter_.Wait(
      store, router_.LocalWaits(store, *min_position), deadline, context,
      [this, context, &store, min_position, deadline, method = std::string(method),
       run = std::move(run), fail = std::move(fail), slot = *std::move(slot)](absl::Status s) {
        if (!s.ok()) return fail(WithContext(s, absl::StrCat(method, " store=", ClipKey(store))));
        // The slot is held until `run` has run: remote waits count as waiters.
        AwaitRemotePositions(cluster_, router_, store, *min_position, deadline, context,
                             [this, run, slot] { wait_pool_.Schedule([run, slot] { run(); }); });
      });
}

namespace {

// Pages a paged scan reads in one scatter once its client is paging through (this one and the
// ones after it), at most kMaxPageSize entries.
constexpr int32_t kReadAheadPages = 5;

// All as the Range without bounds it is (the same pages and page tokens).
kiq::v1::RangeRequest AsRange(const kiq::v1::AllRequest& all) {
  kiq::v1::RangeRequest range;
  range.set_store(all.store());
  range.set_page_size(all.page_size());
  range.set_page_token(all.page_token());
  if (all.has_min_position()) *range.mutable_min_position() = all.min_position();
  range.set_allow_partial(all.allow_partial());
  range.set_allow_stale(all.allow_stale());
  range.set_max_lag_records(all.max_lag_records());
  return range;
}
const kiq::v1::RangeRequest& AsRange(const kiq::v1::RangeRequest& range) { return range; }

}  // namespace

template <typename Request>
grpc::ServerUnaryReactor* QueryServiceImpl::PagedScan(grpc::CallbackServerContext* context,
                                                      const Request* request,
                                                      kiq::v1::ScanResponse* response,
                                                      absl::string_view method) {
  const bool pages_through = !request->page_token().empty() && !request->has_min_position();
  if (pages_through && Authorize(*context, request->store()).ok() && CheckRequest(*request).ok()) {
    const absl::Time started = absl::Now();
    std::optional<kiq::v1::ScanResponse> page =
        read_ahead_.Take(ScanReadAhead::KeyOf(method, context->peer(), *request));
    if (page) {
      // Answered from memory, in the reaction: no scatter, no worker.
      response->Swap(&*page);
      RecordQuery(method, request->store(), "read_ahead", absl::StatusCode::kOk, started);
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
  }
  return Scatter<Request, kiq::v1::ScanResponse>(
      context, request, response, method,
      [this, method = std::string(method), peer = context->peer()](
          const Request& r, absl::Time deadline, const grpc::CallbackServerContext* c,
          kiq::v1::ScanResponse* out) -> absl::Status {
        const kiq::v1::RangeRequest& range = AsRange(r);
        if (r.page_token().empty() || r.has_min_position()) {
          // A first page (many clients read only that one), or one that waits for a position.
          return router_.RangeInto(range, deadline, c, out);
        }
        const int32_t page_size = r.page_size() == 0 ? kDefaultPageSize : r.page_size();
        const int32_t batch = static_cast<int32_t>(
            std::min<int64_t>(kMaxPageSize, int64_t{page_size} * kReadAheadPages));
        absl::StatusOr<std::vector<kiq::v1::ScanResponse>> pages =
            router_.RangePages(range, batch, deadline, c);
        if (!pages.ok()) return pages.status();
        out->Swap(&pages->front());
        std::vector<std::pair<std::string, kiq::v1::ScanResponse>> ahead;
        Request next = r;
        std::string token = out->next_page_token();
        for (size_t i = 1; i < pages->size(); ++i) {
          next.set_page_token(token);
          token = (*pages)[i].next_page_token();
          ahead.emplace_back(ScanReadAhead::KeyOf(method, peer, next), std::move((*pages)[i]));
        }
        if (!ahead.empty()) read_ahead_.Put(std::move(ahead));
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* QueryServiceImpl::Range(grpc::CallbackServerContext* context,
                                                  const kiq::v1::RangeRequest* request,
                                                  kiq::v1::ScanResponse* response) {
  return PagedScan(context, request, response, "Range");
}

grpc::ServerUnaryReactor* QueryServiceImpl::All(grpc::CallbackServerContext* context,
                                                const kiq::v1::AllRequest* request,
                                                kiq::v1::ScanResponse* response) {
  return PagedScan(context, request, response, "All");
}

grpc::ServerUnaryReactor* QueryServiceImpl::Count(grpc::CallbackServerContext* context,
                                                  const kiq::v1::CountRequest* request,
                                                  kiq::v1::CountResponse* response) {
  return Scatter<kiq::v1::CountRequest, kiq::v1::CountResponse>(
      context, request, response, "Count",
      [this](const kiq::v1::CountRequest& r, absl::Time deadline,
             const grpc::CallbackServerContext* c, kiq::v1::CountResponse* out) {
        absl::StatusOr<kiq::v1::CountResponse> count = router_.Count(r, deadline, c);
        if (!count.ok()) return count.status();
        *out = *std::move(count);
        return absl::OkStatus();
      });
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
  absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> admitted =
      AdmitIfWaiting(request->has_min_position());
  if (!admitted.ok()) {
    Finish<kiq::v1::WindowFetchResponse>(reactor, admitted.status(), response, "WindowFetch",
                                         request->store(), route, started);
    return reactor;
  }
  std::shared_ptr<PositionWaiter::Slot> slot = *std::move(admitted);
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

namespace {

// Entries per message of a Scan stream without a page_size.
constexpr int32_t kDefaultStreamPageSize = 1000;
// Entries a Scan stream reads from the owners at once (one scatter per batch, cut into
// pages): per-scatter costs (a call per owner, an iterator per partition, the look-ahead's
// slack) are paid once per 5,000 entries instead of once per page.
constexpr int32_t kStreamBatchSize = kMaxPageSize;

// Scan's stream: the pages of Range, read kStreamBatchSize entries at a time (one scatter per
// batch, QueryRouter::RangePages), each batch read on a worker while the one before it is being
// written. Every write and the Finish are decided under mu_ and started after it is released
// (a reaction may run inline). A page read uses the call's context, which lives until OnDone:
// so Finish waits for the read in flight (the client gone, it ends promptly: the context is
// cancelled), and OnDone never comes while one runs.
class ScanStream final : public grpc::ServerWriteReactor<kiq::v1::ScanResponse> {
 public:
  using Done = std::function<void(absl::StatusCode)>;
  ScanStream(const QueryRouter& router, ThreadPool& pool, grpc::CallbackServerContext* context,
             kiq::v1::RangeRequest request, Done done)
      : router_(router),
        pool_(pool),
        context_(context),
        request_(std::move(request)),
        done_(std::move(done)) {
    if (request_.page_size() == 0) request_.set_page_size(kDefaultStreamPageSize);
  }

  const kiq::v1::RangeRequest& request() const { return request_; }

  // Reads the first page on the calling thread (a worker) and goes on from there.
  void Start() {
    {
      absl::MutexLock lock(&mu_);
      reading_ = true;
    }
    ReadPage(request_.page_token());
  }
  // The stream ends before its first page.
  void Refuse(const absl::Status& status) { End(ToGrpcStatus(status)); }

  void OnWriteDone(bool ok) override {
    Action action;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        // The client has gone: a read in flight ends with the context's cancellation.
        action = FinishLocked(grpc::Status(grpc::StatusCode::CANCELLED, "the client has gone"));
      } else if (last_) {
        action = FinishLocked(grpc::Status::OK);
      } else if (!batch_.empty() || next_) {
        action = SendLocked();
      }
    }
    Act(std::move(action));
  }

  void OnDone() override { delete this; }

 private:
  // What to start once mu_ is released.
  struct Action {
    kiq::v1::ScanResponse* write = nullptr;
    std::optional<std::string> read_after;  // page token of the next page to read
    std::optional<grpc::Status> finish;
  };

  void ReadPage(std::string token) {
    kiq::v1::RangeRequest page = request_;
    page.set_page_token(std::move(token));
    // Reached before the first page (AfterPositions); positions only move forward.
    if (page.page_token() != request_.page_token()) page.clear_min_position();
    absl::StatusOr<std::vector<kiq::v1::ScanResponse>> result =
        router_.RangePages(page, kStreamBatchSize, RequestDeadline(*context_), context_);
    Action action;
    {
      absl::MutexLock lock(&mu_);
      reading_ = false;
      if (deferred_finish_) {
        action = FinishLocked(*std::move(deferred_finish_));
      } else if (!finished_) {
        next_ = std::move(result);
        if (!writing_) action = SendLocked();
      }
    }
    Act(std::move(action));
  }

  Action SendLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Action action;
    if (batch_.empty()) {
      // The batch read ahead becomes the one being written, and the next is read meanwhile.
      absl::StatusOr<std::vector<kiq::v1::ScanResponse>> next = *std::move(next_);
      next_.reset();
      if (!next.ok()) return FinishLocked(ToGrpcStatus(next.status()));
      batch_.assign(std::make_move_iterator(next->begin()), std::make_move_iterator(next->end()));
      const std::string& token = batch_.back().next_page_token();
      if (!token.empty()) {
        reading_ = true;
        action.read_after = token;
      }
    }
    current_ = std::move(batch_.front());
    batch_.pop_front();
    writing_ = true;
    action.write = &current_;
    if (current_.next_page_token().empty()) last_ = true;
    return action;
  }

  Action FinishLocked(grpc::Status status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    Action action;
    if (finished_) return action;
    if (reading_) {
      // The read in flight uses the context: the stream finishes when it returns.
      if (!deferred_finish_) deferred_finish_ = std::move(status);
      return action;
    }
    finished_ = true;
    action.finish = std::move(status);
    return action;
  }

  void Act(Action action) {
    if (action.write != nullptr) StartWrite(action.write);
    if (action.read_after) {
      pool_.Schedule([this, token = *std::move(action.read_after)] { ReadPage(token); });
    }
    if (action.finish) End(*std::move(action.finish));
  }

  void End(grpc::Status status) {
    if (done_) done_(static_cast<absl::StatusCode>(status.error_code()));
    Finish(std::move(status));
  }

  const QueryRouter& router_;
  ThreadPool& pool_;
  grpc::CallbackServerContext* const context_;
  kiq::v1::RangeRequest request_;
  const Done done_;

  absl::Mutex mu_;
  bool reading_ ABSL_GUARDED_BY(mu_) = false;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool last_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  // A Finish decided while a page read was in flight; made when the read returns.
  std::optional<grpc::Status> deferred_finish_ ABSL_GUARDED_BY(mu_);
  // The batch read and not yet written (its pages); the rest of the batch being written; the
  // page being written. So at most two batches are held.
  std::optional<absl::StatusOr<std::vector<kiq::v1::ScanResponse>>> next_ ABSL_GUARDED_BY(mu_);
  std::deque<kiq::v1::ScanResponse> batch_ ABSL_GUARDED_BY(mu_);
  kiq::v1::ScanResponse current_;
};

}  // namespace

grpc::ServerWriteReactor<kiq::v1::ScanResponse>* QueryServiceImpl::Scan(
    grpc::CallbackServerContext* context, const kiq::v1::RangeRequest* request) {
  if (grpc::Status s = Authorize(*context, request->store()); !s.ok()) {
    return new RefusedStream<kiq::v1::ScanResponse>(s);
  }
  const absl::Time started = absl::Now();
  auto* stream = new ScanStream(router_, pool_, context, *request,
                                [this, store = request->store(), started](absl::StatusCode code) {
                                  RecordQuery("Scan", store, "scatter", code, started);
                                });
  if (absl::Status s = CheckRequest(*request); !s.ok()) {
    stream->Refuse(s);
    return stream;
  }
  const kiq::v1::RangeRequest& own = stream->request();
  AfterPositions(
      context, own.store(), own.has_min_position() ? &own.min_position() : nullptr,
      RequestDeadline(*context), "Scan", [stream] { stream->Start(); },
      [stream](absl::Status s) { stream->Refuse(s); });
  return stream;
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
