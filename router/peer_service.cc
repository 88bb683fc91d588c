#include "router/peer_service.h"

#include <optional>
#include <string>

#include "common/grpc_status.h"
#include "common/status.h"
#include "router/port/subscription.h"
#include "router/query_service.h"
#include "router/request_limits.h"
#include "router/subscription_stream.h"

namespace kiq::router {

kiq::v1::Position PositionFor(const kiq::v1::Position& position, int32_t partition) {
  kiq::v1::Position out;
  for (const kiq::v1::PartitionOffset& po : position.offsets()) {
    if (po.partition() == partition) *out.add_offsets() = po;
  }
  return out;
}

namespace {

void SetPartitionError(const absl::Status& s, kiq::v1::PartitionResult* result) {
  result->set_code(static_cast<int32_t>(s.code()));
  result->set_message(std::string(s.message()));
  if (std::optional<std::string> reason = ErrorReason(s)) result->set_reason(*std::move(reason));
}

// Checks and waits for one partition; fills its code/message and returns false if it cannot
// be read here.
bool ReadyPartition(const LocalStores& local, const std::string& store, int32_t p,
                    const kiq::v1::Position& min_position, absl::Time deadline,
                    kiq::v1::PartitionResult* result) {
  result->set_partition(p);
  absl::Status s = local.CheckReadable(store, PartitionId(p));
  if (s.ok()) {
    kiq::v1::Position wanted = PositionFor(min_position, p);
    if (!wanted.offsets().empty()) s = local.WaitForPosition(store, wanted, deadline);
  }
  if (!s.ok()) {
    SetPartitionError(s, result);
    return false;
  }
  return true;
}

// Runs `read` for every requested partition that is ACTIVE here and has reached the request's
// position, on the pool; the others are answered with their status code. The positions of the
// partitions held here are waited for first, on `waiter` when there is one.
template <typename Request, typename Response, typename ReadPartition>
grpc::ServerUnaryReactor* ServePartitions(const LocalStores& local, ThreadPool& pool,
                                          PositionWaiter* waiter,
                                          grpc::CallbackServerContext* context,
                                          const Request* request, Response* response,
                                          ReadPartition read) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  if (absl::Status s = CheckRequest(*request); !s.ok()) {
    reactor->Finish(ToGrpcStatus(s));
    return reactor;
  }
  const absl::Time deadline = RequestDeadline(*context);
  auto serve = [&local, reactor, request, response, deadline, read] {
    if (absl::StatusOr<StoreInfo> info = local.Describe(request->store()); !info.ok()) {
      reactor->Finish(ToGrpcStatus(info.status()));
      return;
    }
    for (int32_t p : request->partitions()) {
      kiq::v1::PartitionResult* result = response->add_partitions();
      // `read` may be redone (ReadAt): each attempt starts from an empty result.
      auto read_partition = [&] {
        result->clear_entries();
        result->clear_count();
        return read(PartitionId(p), result);
      };
      absl::Status s;
      if (request->standby()) {
        // The caller chose the standby replica here (a stale read): no position to wait for.
        result->set_partition(p);
        int64_t lag = 0;
        s = local.ReadStandbyAt(request->store(), PartitionId(p), request->max_lag_records(),
                                result->mutable_position(), &lag, read_partition);
        result->set_standby_lag_records(lag);
      } else {
        if (!ReadyPartition(local, request->store(), p, request->min_position(), deadline,
                            result)) {
          continue;
        }
        s = local.ReadAt(request->store(), PartitionId(p), result->mutable_position(),
                         read_partition);
      }
      if (!s.ok()) SetPartitionError(s, result);
    }
    reactor->Finish(grpc::Status::OK);
  };
  if (waiter == nullptr || request->min_position().offsets().empty()) {
    pool.Schedule(std::move(serve));
    return reactor;
  }
  absl::StatusOr<std::shared_ptr<PositionWaiter::Slot>> slot = waiter->Admit();
  if (!slot.ok()) {
    reactor->Finish(ToGrpcStatus(slot.status()));
    return reactor;
  }
  kiq::v1::Position wait;
  for (int32_t p : request->partitions()) {
    if (!local.CheckReadable(request->store(), PartitionId(p)).ok()) continue;
    wait.MergeFrom(PositionFor(request->min_position(), p));
  }
  // Whatever the wait's outcome, serve answers each partition: those still behind with the
  // DEADLINE_EXCEEDED of a wait whose deadline has passed (it does not block then).
  waiter->Wait(request->store(), std::move(wait), deadline, context,
               [&pool, serve = std::move(serve), slot = *std::move(slot)](absl::Status) {
                 pool.Schedule([serve, slot] { serve(); });
               });
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* PeerServiceImpl::ScanPartitions(
    grpc::CallbackServerContext* context, const kiq::v1::ScanPartitionsRequest* request,
    kiq::v1::ScanPartitionsResponse* response) {
  if (auth_ != nullptr) {
    if (grpc::Status s = auth_->AuthorizePeer(*context); !s.ok()) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(s);
      return reactor;
    }
  }
  KeyRange range;
  if (request->has_from()) range.from = request->from().value();
  if (request->has_to()) range.to = request->to().value();
  std::optional<std::string> after;
  if (request->has_after()) after = request->after().value();
  const size_t limit = static_cast<size_t>(std::max(request->limit(), 1));
  return ServePartitions(
      local_, pool_, waiter_, context, request, response,
      [this, request, range, after, limit](PartitionId p, kiq::v1::PartitionResult* result) {
        absl::StatusOr<std::vector<KeyValue>> run =
            local_.Scan(request->store(), p, range, after, limit);
        if (!run.ok()) return run.status();
        for (KeyValue& kv : *run) {
          kiq::v1::KeyValueBytes* entry = result->add_entries();
          entry->set_key(std::move(kv.key));
          entry->set_value(std::move(kv.value));
        }
        return absl::OkStatus();
      });
}

grpc::ServerUnaryReactor* PeerServiceImpl::CountPartitions(
    grpc::CallbackServerContext* context, const kiq::v1::CountPartitionsRequest* request,
    kiq::v1::CountPartitionsResponse* response) {
  if (auth_ != nullptr) {
    if (grpc::Status s = auth_->AuthorizePeer(*context); !s.ok()) {
      grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
      reactor->Finish(s);
      return reactor;
    }
  }
  return ServePartitions(local_, pool_, waiter_, context, request, response,
                         [this, request](PartitionId p, kiq::v1::PartitionResult* result) {
                           absl::StatusOr<int64_t> n = local_.EntryCount(request->store(), p);
                           if (!n.ok()) return n.status();
                           result->set_count(*n);
                           return absl::OkStatus();
                         });
}

grpc::ServerWriteReactor<kiq::v1::PeerChange>* PeerServiceImpl::SubscribePartitions(
    grpc::CallbackServerContext* context, const kiq::v1::SubscribePartitionsRequest* request) {
  if (auth_ != nullptr) {
    if (grpc::Status s = auth_->AuthorizePeer(*context); !s.ok()) {
      return new RefusedStream<kiq::v1::PeerChange>(s);
    }
  }
  if (absl::Status s = CheckRequest(*request); !s.ok()) {
    return new RefusedStream<kiq::v1::PeerChange>(ToGrpcStatus(s));
  }
  SubscribeSpec spec;
  spec.store = request->store();
  switch (request->match_case()) {
    case kiq::v1::SubscribePartitionsRequest::kKey:
      spec.match = KeyMatch{KeyMatch::Kind::kKey, request->key()};
      break;
    case kiq::v1::SubscribePartitionsRequest::kKeyPrefix:
      spec.match = KeyMatch{KeyMatch::Kind::kPrefix, request->key_prefix()};
      break;
    default:
      break;
  }
  spec.partitions.assign(request->partitions().begin(), request->partitions().end());
  for (const kiq::v1::PartitionOffset& po : request->resume()) {
    spec.resume[po.partition()] = po.offset();
  }
  spec.snapshot = request->snapshot();
  spec.coalesce = request->coalesce();
  spec.buffer_size = static_cast<size_t>(std::max(request->buffer_size(), 0));
  if (spec.partitions.empty()) {
    return new RefusedStream<kiq::v1::PeerChange>(
        grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "SubscribePartitions: no partitions"));
  }
  absl::StatusOr<std::unique_ptr<Subscription>> subscription = local_.Subscribe(spec);
  if (!subscription.ok()) {
    return new RefusedStream<kiq::v1::PeerChange>(ToGrpcStatus(subscription.status()));
  }
  SubscriptionRenderer<kiq::v1::PeerChange> render;
  render.snapshot = [](KeyValue kv) {
    kiq::v1::PeerChange out;
    out.set_type(kiq::v1::PeerChange::SNAPSHOT);
    out.set_partition(kv.partition.value());
    out.set_key(std::move(kv.key));
    out.set_value(std::move(kv.value));
    return out;
  };
  render.snapshot_end = [] {
    kiq::v1::PeerChange out;
    out.set_type(kiq::v1::PeerChange::SNAPSHOT_END);
    return out;
  };
  render.change = [](ChangeEvent change) { return ToPeerChange(std::move(change)); };
  render.progress = [](const Progress& progress) {
    kiq::v1::PeerChange out;
    out.set_type(kiq::v1::PeerChange::PROGRESS);
    for (const auto& [p, next] : progress) {
      kiq::v1::PartitionOffset* po = out.add_progress();
      po->set_partition(p);
      po->set_offset(next);
    }
    return out;
  };
  auto* stream = new SubscriptionStream<kiq::v1::PeerChange>(std::move(*subscription),
                                                             spec.snapshot, std::move(render));
  stream->Start();
  return stream;
}

kiq::v1::PeerChange ToPeerChange(ChangeEvent change) {
  kiq::v1::PeerChange out;
  out.set_type(kiq::v1::PeerChange::CHANGE);
  out.set_partition(change.partition.value());
  out.set_key(std::move(change.key));
  if (change.new_value) {
    out.set_value(std::move(*change.new_value));
  } else {
    out.set_deleted(true);
  }
  if (change.old_value) {
    out.set_has_old_value(true);
    out.set_old_value(std::move(*change.old_value));
  }
  out.set_topic(std::move(change.topic));
  out.set_offset(change.offset);
  return out;
}

ChangeEvent FromPeerChange(kiq::v1::PeerChange change) {
  ChangeEvent out;
  out.partition = PartitionId(change.partition());
  out.key = std::move(*change.mutable_key());
  if (!change.deleted()) out.new_value = std::move(*change.mutable_value());
  if (change.has_old_value()) out.old_value = std::move(*change.mutable_old_value());
  out.topic = std::move(*change.mutable_topic());
  out.offset = change.offset();
  return out;
}

}  // namespace kiq::router
