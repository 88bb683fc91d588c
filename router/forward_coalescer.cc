#include "router/forward_coalescer.h"

#include <algorithm>
#include <memory>
#include <utility>

#include <grpcpp/client_context.h>

#include "absl/time/clock.h"

namespace kiq::router {
namespace {

// Key bytes of one coalesced call: well under gRPC's 4 MiB default message size, so that a
// batch of large keys is cut short instead of refused (a refused batch still ends well: its
// keys are forwarded alone, but slower).
constexpr size_t kMaxKeyBytesPerCall = 1 << 20;
// A key queues behind calls whose deadline is at most this much later than its own:
// concurrent callers' deadlines differ by the microseconds between their sends, and a strict
// comparison sent every key that a server thread happened to take in out of order alone.
// At worst a key whose owner hangs answers DEADLINE_EXCEEDED this much late.
constexpr absl::Duration kDeadlineSlack = absl::Milliseconds(100);

}  // namespace

void ForwardCoalescer::Forward(const std::string& endpoint, const std::string& node_id,
                               const kiq::v1::GetRequest& request, absl::Time deadline,
                               kiq::v1::GetResponse* response, Done done) {
  LaneKey key{endpoint, request.store(), request.allow_stale(), request.max_lag_records()};
  std::vector<Waiter> now;
  bool taken = true;
  {
    absl::MutexLock lock(&mu_);
    Lane& lane = lanes_[key];
    lane.node_id = node_id;
    if (lane.outstanding < options_.window && lane.queue.empty()) {
      ++lane.outstanding;
      lane.latest_deadline = std::max(lane.latest_deadline, deadline);
      now.push_back(Waiter{request.key(), deadline, response, std::move(done)});
    } else if (deadline + kDeadlineSlack < lane.latest_deadline) {
      // Queued, it could wait past its deadline for calls that may take until theirs.
      taken = false;
    } else {
      lane.queue.push_back(Waiter{request.key(), deadline, response, std::move(done)});
      // A full queue leaves without waiting for a call to return (beyond the window).
      if (static_cast<int>(lane.queue.size()) >= options_.max_keys) now = TakeBatch(lane);
    }
  }
  if (!taken) return done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "not coalesced"), true);
  if (!now.empty()) Send(key, node_id, std::move(now));
}

std::vector<ForwardCoalescer::Waiter> ForwardCoalescer::TakeBatch(Lane& lane) {
  std::vector<Waiter> batch;
  if (lane.queue.empty()) return batch;
  size_t n = 0;
  size_t bytes = 0;
  while (n < lane.queue.size() && static_cast<int>(n) < options_.max_keys &&
         (n == 0 || bytes + lane.queue[n].key.size() <= kMaxKeyBytesPerCall)) {
    bytes += lane.queue[n].key.size();
    ++n;
  }
  batch.reserve(n);
  std::move(lane.queue.begin(), lane.queue.begin() + n, std::back_inserter(batch));
  lane.queue.erase(lane.queue.begin(), lane.queue.begin() + n);
  ++lane.outstanding;
  for (const Waiter& w : batch) lane.latest_deadline = std::max(lane.latest_deadline, w.deadline);
  return batch;
}

void ForwardCoalescer::Send(const LaneKey& key, const std::string& node_id,
                            std::vector<Waiter> waiters) {
  struct Call {
    LaneKey key;
    std::string node_id;
    std::vector<Waiter> waiters;
    grpc::ClientContext context;
    kiq::v1::GetManyRequest request;
    kiq::v1::GetManyResponse response;
    // A key alone goes as a Get: the owner answers it inline, cheaper than a GetMany of one.
    kiq::v1::GetRequest get;
    kiq::v1::GetResponse get_response;
  };
  auto call = std::make_shared<Call>();
  call->key = key;
  call->node_id = node_id;
  call->waiters = std::move(waiters);
  absl::Time deadline = absl::InfiniteFuture();
  call->request.set_store(std::get<1>(key));
  call->request.set_allow_stale(std::get<2>(key));
  call->request.set_max_lag_records(std::get<3>(key));
  call->request.mutable_keys()->Reserve(static_cast<int>(call->waiters.size()));
  for (const Waiter& w : call->waiters) {
    call->request.add_keys(w.key);
    deadline = std::min(deadline, w.deadline);
  }
  // No caller's context as parent: one caller's cancellation must not cancel the others.
  call->context.set_deadline(absl::ToChronoTime(deadline));
  call->context.AddMetadata(kForwardedHeader, kToOwnerValue);
  if (metrics_ != nullptr && call->waiters.size() > 1) {
    metrics_->RecordCoalescedForward(node_id, static_cast<int64_t>(call->waiters.size()));
  }
  PeerPool::Peer& peer = peers_.Get(std::get<0>(key));
  auto ended = [this, call](grpc::Status status) {
    if (observer_) observer_(call->node_id, status);
    // The next queued keys leave first: they have waited the longest.
    std::vector<Waiter> next;
    {
      absl::MutexLock lock(&mu_);
      auto it = lanes_.find(call->key);
      Lane& lane = it->second;
      --lane.outstanding;
      if (lane.outstanding == 0) lane.latest_deadline = absl::InfinitePast();
      if (lane.outstanding < options_.window) next = TakeBatch(lane);
      // Idle lanes go: their keys include max_lag_records, which callers choose freely.
      if (lane.outstanding == 0 && lane.queue.empty()) lanes_.erase(it);
    }
    if (!next.empty()) Send(call->key, call->node_id, std::move(next));
    if (call->waiters.size() == 1) {
      Waiter& w = call->waiters.front();
      if (status.ok()) w.response->Swap(&call->get_response);
      return w.done(status, /*shared=*/false);
    }
    if (status.ok() && call->response.results_size() != static_cast<int>(call->waiters.size())) {
      status = grpc::Status(grpc::StatusCode::INTERNAL, "a GetMany answer of another size");
    }
    const bool answered = status.ok();
    for (size_t i = 0; i < call->waiters.size(); ++i) {
      Waiter& w = call->waiters[i];
      if (answered) {
        kiq::v1::GetResponse* result = call->response.mutable_results(static_cast<int>(i));
        // GetMany names a missing key in its entry; Get answers it without one.
        if (!result->found()) result->clear_entry();
        w.response->Swap(result);
      }
      w.done(status, /*shared=*/true);
    }
  };
  if (call->waiters.size() == 1) {
    call->get.set_store(call->request.store());
    call->get.set_key(call->request.keys(0));
    call->get.set_allow_stale(call->request.allow_stale());
    call->get.set_max_lag_records(call->request.max_lag_records());
    peer.query->async()->Get(&call->context, &call->get, &call->get_response, std::move(ended));
    return;
  }
  peer.query->async()->GetMany(&call->context, &call->request, &call->response, std::move(ended));
}

}  // namespace kiq::router
