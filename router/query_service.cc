#include "router/query_service.h"

#include <deque>

#include "absl/synchronization/mutex.h"
#include "router/entry.h"
#include "router/grpc_status.h"

namespace kiq::router {
namespace {

constexpr absl::Duration kMaxRequestTime = absl::Seconds(30);

std::string CodeName(absl::StatusCode code) {
  std::string name = absl::StatusCodeToString(code);
  return name.empty() ? "UNKNOWN" : name;
}

constexpr size_t kSnapshotPage = 256;
constexpr size_t kTakeBatch = 64;

kiq::v1::SubscribeResponse RenderChange(const StoreInfo& info, ChangeEvent change) {
  kiq::v1::SubscribeResponse out;
  out.set_type(kiq::v1::SubscribeResponse::CHANGE);
  out.set_topic(std::move(change.topic));
  out.set_offset(change.offset);
  if (change.old_value) {
    kiq::v1::Entry old = RenderEntry(info, KeyValue{change.key, std::move(*change.old_value),
                                                    change.partition});
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

// One Subscribe stream: the snapshot pages (if asked), SNAPSHOT_END, then the queued changes,
// one write in flight at a time. Driven by write completions and by the subscription's notify
// (from the ingestion thread: then it only takes already-queued changes, never reads RocksDB).
// A client that stops reading stalls its own writes only; its queue overflows on the node
// and the stream ends with RESOURCE_EXHAUSTED once the pending write completes.
class SubscribeReactor final : public grpc::ServerWriteReactor<kiq::v1::SubscribeResponse> {
 public:
  SubscribeReactor(StoreInfo info, std::unique_ptr<Subscription> subscription, bool snapshot,
                   QueryMetrics* metrics, absl::Time started)
      : info_(std::move(info)),
        subscription_(std::move(subscription)),
        metrics_(metrics),
        started_(started),
        in_snapshot_(snapshot) {}

  void Start() {
    subscription_->SetNotify([this] { Pump(/*from_ingestion=*/true); });
    Pump(false);
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) cancelled_ = true;
    }
    Pump(false);
  }

  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    Pump(false);
  }

  void OnDone() override {
    subscription_->SetNotify(nullptr);
    subscription_.reset();  // unregisters
    delete this;
  }

 private:
  void Pump(bool from_ingestion) {
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&mu_);
      if (writing_ || finished_) return;
      if (cancelled_) {
        finish = grpc::Status(grpc::StatusCode::CANCELLED, "client cancelled the subscription");
      } else if (in_snapshot_) {
        if (from_ingestion) return;  // snapshot reads stay off the ingestion thread
        if (snapshot_.empty() && !snapshot_done_) {
          absl::StatusOr<std::vector<KeyValue>> page =
              subscription_->NextSnapshotPage(kSnapshotPage);
          if (!page.ok()) {
            finish = ToGrpcStatus(page.status());
          } else if (page->empty()) {
            snapshot_done_ = true;
          } else {
            for (KeyValue& kv : *page) snapshot_.push_back(std::move(kv));
          }
        }
        if (!finish) {
          response_.Clear();
          if (!snapshot_.empty()) {
            response_.set_type(kiq::v1::SubscribeResponse::SNAPSHOT);
            *response_.mutable_entry() = RenderEntry(info_, std::move(snapshot_.front()));
            snapshot_.pop_front();
          } else {
            response_.set_type(kiq::v1::SubscribeResponse::SNAPSHOT_END);
            in_snapshot_ = false;
          }
          writing_ = true;
        }
      } else {
        if (changes_.empty() && end_.ok()) {
          std::vector<ChangeEvent> taken;
          end_ = subscription_->Take(kTakeBatch, &taken);
          for (ChangeEvent& c : taken) changes_.push_back(std::move(c));
        }
        if (!changes_.empty()) {
          response_ = RenderChange(info_, std::move(changes_.front()));
          changes_.pop_front();
          writing_ = true;
        } else if (!end_.ok()) {
          finish = ToGrpcStatus(end_);
        } else {
          return;  // idle until notified
        }
      }
      if (finish) {
        finished_ = true;
        code_ = finish->error_code();
      }
    }
    if (finish) {
      if (metrics_ != nullptr) {
        metrics_->RecordQuery("Subscribe", info_.name, "local",
                              CodeName(static_cast<absl::StatusCode>(code_)),
                              absl::Now() - started_);
      }
      Finish(*finish);
      return;
    }
    // Only this path writes, and only with writing_ set: response_ is not touched until
    // OnWriteDone.
    StartWrite(&response_);
  }

  const StoreInfo info_;
  std::unique_ptr<Subscription> subscription_;
  QueryMetrics* const metrics_;
  const absl::Time started_;
  absl::Mutex mu_;
  bool in_snapshot_ ABSL_GUARDED_BY(mu_);
  bool snapshot_done_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<KeyValue> snapshot_ ABSL_GUARDED_BY(mu_);
  std::deque<ChangeEvent> changes_ ABSL_GUARDED_BY(mu_);
  absl::Status end_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  int code_ ABSL_GUARDED_BY(mu_) = 0;
  kiq::v1::SubscribeResponse response_;
};

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

grpc::ServerWriteReactor<kiq::v1::SubscribeResponse>* QueryServiceImpl::Subscribe(
    grpc::CallbackServerContext* context, const kiq::v1::SubscribeRequest* request) {
  (void)context;
  const absl::Time started = absl::Now();
  StoreInfo info;
  absl::StatusOr<std::unique_ptr<Subscription>> subscription = router_.Subscribe(*request, &info);
  if (!subscription.ok()) {
    // A reactor that only reports the error.
    class Refused final : public grpc::ServerWriteReactor<kiq::v1::SubscribeResponse> {
     public:
      explicit Refused(grpc::Status status) { Finish(std::move(status)); }
      void OnDone() override { delete this; }
    };
    if (metrics_ != nullptr) {
      metrics_->RecordQuery("Subscribe", request->store(), "local",
                            CodeName(subscription.status().code()), absl::Now() - started);
    }
    return new Refused(ToGrpcStatus(subscription.status()));
  }
  auto* reactor = new SubscribeReactor(
      std::move(info), std::move(*subscription),
      request->from() == kiq::v1::SubscribeRequest::FROM_SNAPSHOT, metrics_, started);
  reactor->Start();
  return reactor;
}

}  // namespace kiq::router
