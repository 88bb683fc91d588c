#include "router/query_router.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <limits>
#include <map>
#include <queue>
#include <utility>

#include <google/protobuf/arena.h>
#include <grpcpp/alarm.h>
#include <grpcpp/client_context.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "common/backoff.h"
#include "common/grpc_status.h"
#include "common/status.h"
#include "common/topology/window_key.h"
#include "router/arena_allocator.h"
#include "router/entry.h"
#include "router/page_token.h"
#include "router/peer_service.h"
#include "router/request_limits.h"

namespace kiq::router {
namespace {

// Partition reads answered for partial results do not wait out the whole deadline.
constexpr absl::Duration kPartialRetryBudget = absl::Seconds(1);

// Between attempts at a partition that is moving, restoring or unreachable (the routing table
// usually catches up within a few of these). Capped low: a warm handover makes a partition
// unreadable for well under a second, and a 500 ms cap made the reads waiting on it answer up
// to half a second after it was readable again (an attempt costs a local check or a call that
// fails fast).
constexpr ExponentialBackoff kRoutingBackoff{absl::Milliseconds(20), absl::Milliseconds(100)};

std::optional<std::string> Bound(const std::string& text, const std::string& bytes) {
  if (!bytes.empty()) return bytes;
  if (!text.empty()) return text;
  return std::nullopt;
}

// How many entries a scan page reads from each partition: its expected share of the page
// (keys spread over partitions by hash) plus five standard deviations of a binomial, so
// that a page comes out short (see Scan) about once in a million partition reads; never
// fewer than 16 and never more than the page and one. 1,000 over 6 partitions: 229 each.
size_t ScanLookAhead(int32_t page_size, int32_t num_partitions) {
  const size_t page = static_cast<size_t>(page_size);
  if (num_partitions <= 1) return page + 1;
  const double share = 1.0 / num_partitions;
  const double mean = page * share;
  const double sd = std::sqrt(page * share * (1 - share));
  const auto bound = static_cast<size_t>(std::ceil(mean + 5 * sd)) + 2;
  return std::min(page + 1, std::max<size_t>(bound, 16));
}

absl::StatusOr<int32_t> CheckPageSize(int32_t page_size) {
  if (page_size < 0 || page_size > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("page_size must be between 0 and ", kMaxPageSize, ", got ", page_size));
  }
  return page_size == 0 ? kDefaultPageSize : page_size;
}

// Whether a point read tries a partition again after `status`. Not after PARTITION_FAILED: the
// owner waits for an operator, not for a rebalance, so retrying until the deadline would only
// delay the same answer (a replica is still tried first when stale reads are allowed). Scans
// keep retrying it (their allow_partial budget reports it as missing).
bool RetryPointReadAfter(const absl::Status& status) {
  return IsRetriableRouting(status) && !IsPartitionFailed(status);
}

// A context for a call to a peer: it inherits the caller's deadline and cancellation when
// there is a caller, and is marked as forwarded.
std::unique_ptr<grpc::ClientContext> PeerContext(absl::Time deadline,
                                                 const grpc::CallbackServerContext* parent,
                                                 Hop hop = Hop::kToOwner) {
  std::unique_ptr<grpc::ClientContext> context =
      parent != nullptr ? grpc::ClientContext::FromCallbackServerContext(*parent)
                        : std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(deadline));
  context->AddMetadata(kForwardedHeader, hop == Hop::kToStandby ? kToStandbyValue : kToOwnerValue);
  return context;
}

}  // namespace

QueryRouter::QueryRouter(const LocalStores& local, ClusterView cluster,
                         ForwardCoalescer::Options coalescing)
    : local_(local),
      cluster_(std::move(cluster)),
      coalescer_(cluster_.peers != nullptr && coalescing.window > 0 && coalescing.max_keys > 0
                     ? std::make_unique<ForwardCoalescer>(
                           *cluster_.peers, cluster_.metrics,
                           [this](absl::string_view node_id, const grpc::Status& status) {
                             RecordPeerCall(node_id, status);
                           },
                           coalescing)
                     : nullptr) {}

Hop HopOf(const grpc::ServerContextBase& context) {
  auto it = context.client_metadata().find(kForwardedHeader);
  if (it == context.client_metadata().end()) return Hop::kClient;
  return absl::string_view(it->second.data(), it->second.size()) == kToStandbyValue
             ? Hop::kToStandby
             : Hop::kToOwner;
}

void QueryRouter::RecordPeerCall(absl::string_view peer, const grpc::Status& status) const {
  if (cluster_.metrics == nullptr) return;
  absl::string_view outcome = "ERROR";
  if (status.ok()) {
    outcome = "OK";
  } else if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
    outcome = "UNAVAILABLE";
  } else if (IsNotOwner(FromGrpcStatus(status, peer))) {
    outcome = "NOT_OWNER";
  }
  cluster_.metrics->RecordPeerCall(peer, outcome);
}

absl::StatusOr<StoreInfo> QueryRouter::DescribeForRequest(absl::string_view store) const {
  if (store.empty()) return absl::InvalidArgumentError("store is required");
  return local_.Describe(store);
}

absl::StatusOr<StoreInfo> QueryRouter::DescribeForPointRead(absl::string_view store) const {
  absl::StatusOr<StoreInfo> info = DescribeForRequest(store);
  if (info.ok() && info->windowed()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store \"", store, "\" is windowed: use WindowFetch to read the windows of a key"));
  }
  return info;
}

bool QueryRouter::Backoff(uint64_t seen_version, int attempt, absl::Time deadline,
                          const grpc::CallbackServerContext* parent) const {
  if (parent != nullptr && parent->IsCancelled()) return false;
  const absl::Duration wait = kRoutingBackoff.Delay(attempt);
  const absl::Time now = absl::Now();
  // Without a cluster nothing can change who owns what: no point in retrying.
  if (cluster_.table == nullptr || now + wait >= deadline) return false;
  cluster_.table->WaitForChange(seen_version, now + wait);
  return true;
}

std::optional<absl::StatusOr<kiq::v1::GetResponse>> QueryRouter::GetIfLocal(
    const kiq::v1::GetRequest& request) const {
  if (request.has_min_position()) return std::nullopt;
  absl::StatusOr<StoreInfo> info = DescribeForPointRead(request.store());
  if (!info.ok()) return info.status();
  absl::StatusOr<std::string> key = RequestKey(request);
  if (!key.ok()) return key.status();
  const PartitionId p(PartitionForKey(info->partitioner, *key, info->num_partitions));
  if (!local_.CheckReadable(request.store(), p).ok()) return std::nullopt;
  absl::StatusOr<kiq::v1::GetResponse> response = LocalGet(request, *info, *key, p, LocalCopy{});
  if (!response.ok()) {
    // As the routed Get words it (NewGet's `doing`).
    return WithContext(response.status(), absl::StrCat("get store=", request.store(), " key=",
                                                       ClipKey(*key), " partition=", p.value()));
  }
  return response;
}

kiq::v1::Position QueryRouter::LocalWaits(absl::string_view store,
                                          const kiq::v1::Position& min_position) const {
  kiq::v1::Position out;
  for (const kiq::v1::PartitionOffset& po : min_position.offsets()) {
    if (local_.CheckReadable(store, PartitionId(po.partition())).ok()) *out.add_offsets() = po;
  }
  return out;
}

absl::Status QueryRouter::ReadCopy(
    const std::string& store, PartitionId p, const LocalCopy& copy, kiq::v1::Position* position,
    google::protobuf::RepeatedPtrField<kiq::v1::StandbyRead>* standby_reads,
    absl::FunctionRef<absl::Status()> read) const {
  if (!copy.standby) return local_.ReadAt(store, p, position, read);
  int64_t lag = 0;
  if (absl::Status s = local_.ReadStandbyAt(store, p, copy.max_lag_records, position, &lag, read);
      !s.ok()) {
    return s;
  }
  *standby_reads->Add() = StandbyReadHere(store, p, lag);
  return absl::OkStatus();
}

kiq::v1::StandbyRead QueryRouter::StandbyReadHere(absl::string_view store, PartitionId p,
                                                  int64_t lag) const {
  kiq::v1::StandbyRead read;
  read.set_partition(p.value());
  read.set_node_id(cluster_.self_node_id);
  read.set_lag_records(lag);
  if (cluster_.metrics != nullptr) cluster_.metrics->StandbyRead(store);
  return read;
}

absl::StatusOr<kiq::v1::GetResponse> QueryRouter::LocalGet(const kiq::v1::GetRequest& request,
                                                           const StoreInfo& info,
                                                           const std::string& key, PartitionId p,
                                                           const LocalCopy& copy) const {
  kiq::v1::GetResponse response;
  // The value and the position it reflects, exactly.
  absl::StatusOr<std::optional<std::string>> value;
  if (absl::Status s = ReadCopy(request.store(), p, copy, response.mutable_position(),
                                response.mutable_standby_reads(),
                                [&] {
                                  value = local_.Get(request.store(), p, key);
                                  return value.status();
                                });
      !s.ok()) {
    return s;
  }
  if (value->has_value()) {
    response.set_found(true);
    *response.mutable_entry() = RenderEntry(info, KeyValue{key, std::move(**value), p});
  }
  return response;
}

// The state of one routed point read: shared by the peer call's and the retry timers'
// callbacks.
template <typename Response>
struct QueryRouter::PointRead {
  std::string store;
  PartitionId partition;
  std::string doing;
  absl::Time deadline;
  Hop hop = Hop::kClient;
  const grpc::CallbackServerContext* parent = nullptr;
  // Stale reads: a standby replica may answer when the owner cannot (allow_stale).
  bool allow_stale = false;
  int64_t max_lag_records = 0;
  // The entries of min_position for this partition: waited for before reading it here.
  kiq::v1::Position wait;
  bool waited = false;
  std::function<absl::StatusOr<Response>(const LocalCopy&)> read_local;
  // Optional: where read_local runs (inline if unset).
  Executor run_local;
  AsyncForward<Response> forward;
  // Optional: a forward to the owner that may share a call with others' (ForwardCoalescer,
  // whose Done says how it ended; a key of a failed shared call is then sent alone).
  std::function<void(const std::string& endpoint, const std::string& node_id, Response*,
                     ForwardCoalescer::Done)>
      coalesce;
  std::function<void(absl::StatusOr<Response>)> done;
  int attempt = 0;
  absl::Status last;
  std::unique_ptr<grpc::ClientContext> context;
  Response response;
  // Alarms are kept until the read ends: one must not be destroyed inside its own callback.
  std::vector<std::unique_ptr<grpc::Alarm>> alarms;
  // A copy of the router's live_reads_ (ReadsAlive counts the reads not yet destroyed).
  std::shared_ptr<const bool> live;
};

// The routing loop of every point read (Get, WindowFetch; synchronous or not): key's partition
// → readable here? read it : forwarded call? refuse : NOT_OWNER? forward to the ACTIVE owner
// from the routing table; anything retriable (restoring, moving, owner unreachable) is tried
// again after a backoff, within the deadline. Never guesses an owner.
template <typename Response>
void QueryRouter::ReadLocal(std::shared_ptr<PointRead<Response>> read) const {
  absl::StatusOr<Response> response = read->read_local(LocalCopy{});
  if (!response.ok()) return read->done(WithContext(response.status(), read->doing));
  read->done(std::move(response));
}

template <typename Response>
bool QueryRouter::TryStandby(std::shared_ptr<PointRead<Response>> read) const {
  const LocalCopy copy{/*standby=*/true, read->max_lag_records};
  // The replica here first: no hop.
  if (absl::StatusOr<Response> here = read->read_local(copy); here.ok()) {
    read->done(std::move(here));
    return true;
  }
  if (cluster_.table == nullptr) return false;
  for (const StandbyReplica& replica : cluster_.table->Standbys(read->partition.value())) {
    if (replica.node.node_id() == cluster_.self_node_id) continue;
    if (read->max_lag_records > 0 && replica.lag_records > read->max_lag_records) continue;
    PeerPool::Peer& peer = cluster_.peers->Get(Endpoint(replica.node));
    read->context = PeerContext(read->deadline, read->parent, Hop::kToStandby);
    read->response.Clear();
    const std::string node_id = replica.node.node_id();
    read->forward(peer, read->context.get(), &read->response,
                  [this, read, node_id](grpc::Status status) {
                    RecordPeerCall(node_id, status);
                    if (status.ok()) return read->done(std::move(read->response));
                    absl::Status s = FromGrpcStatus(
                        status, absl::StrCat("standby replica on node ", node_id));
                    if (!RetryPointReadAfter(s)) return read->done(s);
                    RetryPointRead(read);
                  });
    return true;
  }
  return false;
}

template <typename Response>
void QueryRouter::StepPointRead(std::shared_ptr<PointRead<Response>> read) const {
  const PartitionId p = read->partition;
  if (read->hop == Hop::kToStandby) {
    // The router that forwarded this chose the replica here; it falls back by itself.
    absl::StatusOr<Response> response =
        read->read_local(LocalCopy{/*standby=*/true, read->max_lag_records});
    if (!response.ok()) return read->done(WithContext(response.status(), read->doing));
    return read->done(std::move(response));
  }
  absl::Status readable = local_.CheckReadable(read->store, p);
  if (readable.ok()) {
    // Read your writes: wait for the position first, without a thread when there is a waiter
    // (then step again: the partition may have moved meanwhile).
    if (!read->waited && !read->wait.offsets().empty()) {
      read->waited = true;
      if (cluster_.waiter != nullptr) {
        cluster_.waiter->Wait(read->store, read->wait, read->deadline, read->parent,
                              [this, read](absl::Status s) {
                                if (!s.ok()) return read->done(WithContext(s, read->doing));
                                StepPointRead(read);
                              });
        return;
      }
      absl::Status s = local_.WaitForPosition(read->store, read->wait, read->deadline);
      if (!s.ok()) return read->done(WithContext(s, read->doing));
    }
    if (read->run_local) {
      return read->run_local([this, read] { ReadLocal(read); });
    }
    return ReadLocal(std::move(read));
  }
  // A forwarded call is answered here or refused: it is never forwarded again.
  if (read->hop == Hop::kToOwner || cluster_.table == nullptr) {
    return read->done(WithContext(readable, read->doing));
  }
  read->last = readable;
  if (IsPartitionFailed(readable)) {
    if (read->allow_stale && TryStandby(read)) return;
    return read->done(WithContext(readable, read->doing));
  }
  if (IsNotOwner(readable)) {
    absl::StatusOr<PartitionOwner> owner =
        cluster_.table->ActiveOwner(p.value(), cluster_.self_node_id);
    if (!owner.ok()) {
      read->last = owner.status();
    } else {
      std::string endpoint = Endpoint(owner->node);
      std::string node_id = owner->node.node_id();
      if (read->coalesce) {
        read->response.Clear();
        Response* response = &read->response;
        read->coalesce(endpoint, node_id, response,
                       [this, read, endpoint, node_id](const grpc::Status& status, bool shared) {
                         if (status.ok()) return read->done(std::move(read->response));
                         // The shared call failed, maybe for another key's partition: this key goes
                         // alone.
                         if (shared) return ForwardToOwner(read, endpoint, node_id);
                         ForwardFailed(
                             read,
                             FromGrpcStatus(status, absl::StrCat("forwarded to node ", node_id)));
                       });
        return;
      }
      return ForwardToOwner(std::move(read), endpoint, node_id);
    }
  }
  if (read->allow_stale && TryStandby(read)) return;
  RetryPointRead(std::move(read));
}

template <typename Response>
void QueryRouter::ForwardToOwner(std::shared_ptr<PointRead<Response>> read,
                                 const std::string& endpoint, const std::string& node_id) const {
  PeerPool::Peer& peer = cluster_.peers->Get(endpoint);
  read->context = PeerContext(read->deadline, read->parent);
  read->response.Clear();
  read->forward(
      peer, read->context.get(), &read->response, [this, read, node_id](grpc::Status status) {
        RecordPeerCall(node_id, status);
        if (status.ok()) return read->done(std::move(read->response));
        ForwardFailed(read, FromGrpcStatus(status, absl::StrCat("forwarded to node ", node_id)));
      });
}

template <typename Response>
void QueryRouter::ForwardFailed(std::shared_ptr<PointRead<Response>> read, absl::Status s) const {
  // Errors about the request itself (unknown store, bad key) are final.
  if (!IsRetriableRouting(s)) return read->done(s);
  read->last = s;
  // The owner cannot answer (gone, unreachable, moving, failed): a replica may, if allowed.
  if (read->allow_stale && TryStandby(read)) return;
  if (!RetryPointReadAfter(s)) return read->done(WithContext(s, read->doing));
  RetryPointRead(std::move(read));
}

template <typename Response>
void QueryRouter::RetryPointRead(std::shared_ptr<PointRead<Response>> read) const {
  const absl::Duration wait = kRoutingBackoff.Delay(read->attempt++);
  if ((read->parent != nullptr && read->parent->IsCancelled()) ||
      absl::Now() + wait >= read->deadline) {
    return read->done(WithContext(read->last, read->doing));
  }
  read->alarms.push_back(std::make_unique<grpc::Alarm>());
  grpc::Alarm& alarm = *read->alarms.back();
  // The read owns the alarm, and gRPC keeps the alarm's callback until the alarm is destroyed:
  // a callback holding the read would keep both alive for ever. It hands its reference over
  // when it runs instead.
  auto holder = std::make_shared<std::shared_ptr<PointRead<Response>>>(std::move(read));
  alarm.Set(absl::ToChronoTime(absl::Now() + wait), [this, holder](bool) {
    std::shared_ptr<PointRead<Response>> r = std::move(*holder);
    if (r != nullptr) StepPointRead(std::move(r));
  });
}

template <typename Response>
absl::StatusOr<Response> QueryRouter::AwaitPointRead(
    std::shared_ptr<PointRead<Response>> read) const {
  // Shared with the callback, which may still be returning when this thread wakes up.
  struct Outcome {
    absl::Notification finished;
    absl::StatusOr<Response> result;
  };
  auto outcome = std::make_shared<Outcome>();
  read->done = [outcome](absl::StatusOr<Response> r) {
    outcome->result = std::move(r);
    outcome->finished.Notify();
  };
  StepPointRead(std::move(read));
  outcome->finished.WaitForNotification();
  return std::move(outcome->result);
}

absl::StatusOr<std::shared_ptr<QueryRouter::PointRead<kiq::v1::GetResponse>>> QueryRouter::NewGet(
    const kiq::v1::GetRequest& request, absl::Time deadline, Hop hop,
    const grpc::CallbackServerContext* parent) const {
  absl::StatusOr<StoreInfo> info = DescribeForPointRead(request.store());
  if (!info.ok()) return info.status();
  absl::StatusOr<std::string> key = RequestKey(request);
  if (!key.ok()) return key.status();
  auto read = std::make_shared<PointRead<kiq::v1::GetResponse>>();
  read->live = live_reads_;
  read->store = request.store();
  read->partition = PartitionId(PartitionForKey(info->partitioner, *key, info->num_partitions));
  read->doing = absl::StrCat("get store=", request.store(), " key=", ClipKey(*key),
                             " partition=", read->partition.value());
  read->deadline = deadline;
  read->hop = hop;
  read->parent = parent;
  read->allow_stale = request.allow_stale();
  read->max_lag_records = request.max_lag_records();
  read->wait = PositionFor(request.min_position(), read->partition.value());
  read->read_local = [this, &request, info = *std::move(info), key = *std::move(key),
                      p = read->partition](const LocalCopy& copy) {
    return LocalGet(request, info, key, p, copy);
  };
  read->forward = [&request](PeerPool::Peer& peer, grpc::ClientContext* context,
                             kiq::v1::GetResponse* response,
                             std::function<void(grpc::Status)> done) {
    peer.query->async()->Get(context, &request, response, std::move(done));
  };
  // Coalesced when a forwarded GetMany carries the same: a UTF-8 key (GetMany's keys are
  // strings) and the read options. A read-your-writes wait (min_position) keeps its own call.
  if (coalescer_ != nullptr && hop == Hop::kClient && !request.has_min_position() &&
      request.key_kind_case() == kiq::v1::GetRequest::kKey) {
    read->coalesce = [this, &request, deadline](
                         const std::string& endpoint, const std::string& node_id,
                         kiq::v1::GetResponse* response, ForwardCoalescer::Done done) {
      coalescer_->Forward(endpoint, node_id, request, deadline, response, std::move(done));
    };
  }
  return read;
}

absl::StatusOr<kiq::v1::GetResponse> QueryRouter::Get(
    const kiq::v1::GetRequest& request, absl::Time deadline, Hop hop,
    const grpc::CallbackServerContext* parent) const {
  auto read = NewGet(request, deadline, hop, parent);
  if (!read.ok()) return read.status();
  return AwaitPointRead(*std::move(read));
}

void QueryRouter::GetAsync(const kiq::v1::GetRequest& request, absl::Time deadline, Hop hop,
                           const grpc::CallbackServerContext* parent, GetCallback done) const {
  auto read = NewGet(request, deadline, hop, parent);
  if (!read.ok()) return done(read.status());
  (*read)->done = std::move(done);
  StepPointRead(*std::move(read));
}

// The shared state of one GetMany: every group (the keys of one partition) ends exactly once,
// through FinishGroup; the last one to end answers. Thread-safe (groups end on gRPC threads).
struct QueryRouter::Batch {
  // Constant after construction.
  const kiq::v1::GetManyRequest* request = nullptr;
  StoreInfo info;
  absl::Time deadline;
  Hop hop = Hop::kClient;
  const grpc::CallbackServerContext* parent = nullptr;
  GetManyCallback done;

  absl::Mutex mu;
  size_t pending ABSL_GUARDED_BY(mu) = 0;
  absl::Status failed ABSL_GUARDED_BY(mu);
  kiq::v1::GetManyResponse response ABSL_GUARDED_BY(mu);
};

absl::StatusOr<kiq::v1::GetManyResponse> QueryRouter::LocalGetMany(
    const kiq::v1::GetManyRequest& request, const std::vector<int>* indexes, const StoreInfo& info,
    PartitionId p, const LocalCopy& copy) const {
  const int n = indexes != nullptr ? static_cast<int>(indexes->size()) : request.keys_size();
  auto key = [&](int k) -> const std::string& {
    return request.keys(indexes != nullptr ? (*indexes)[k] : k);
  };
  // Every key of the partition at one position (ReadAt redoes the reads if a batch commits
  // meanwhile), so each result's position is exact.
  std::vector<std::optional<std::string>> values(n);
  kiq::v1::Position position;
  google::protobuf::RepeatedPtrField<kiq::v1::StandbyRead> standby_reads;
  if (absl::Status s = ReadCopy(request.store(), p, copy, &position, &standby_reads,
                                [&]() -> absl::Status {
                                  for (int i = 0; i < n; ++i) {
                                    absl::StatusOr<std::optional<std::string>> value =
                                        local_.Get(request.store(), p, key(i));
                                    if (!value.ok()) return value.status();
                                    values[i] = *std::move(value);
                                  }
                                  return absl::OkStatus();
                                });
      !s.ok()) {
    return s;
  }
  kiq::v1::GetManyResponse response;
  response.mutable_results()->Reserve(n);
  for (int i = 0; i < n; ++i) {
    kiq::v1::GetResponse* result = response.add_results();
    *result->mutable_position() = position;
    *result->mutable_standby_reads() = standby_reads;
    if (values[i].has_value()) {
      result->set_found(true);
      *result->mutable_entry() = RenderEntry(info, KeyValue{key(i), std::move(*values[i]), p});
    } else {
      result->mutable_entry()->set_key(key(i));
      result->mutable_entry()->set_partition(p.value());
    }
  }
  return response;
}

absl::StatusOr<kiq::v1::GetManyResponse> QueryRouter::GetManyHere(
    const kiq::v1::GetManyRequest& request, const StoreInfo& info,
    const std::vector<KeyGroup>& groups) const {
  kiq::v1::GetManyResponse response;
  response.mutable_results()->Reserve(request.keys_size());
  for (int i = 0; i < request.keys_size(); ++i) response.add_results();
  for (const KeyGroup& group : groups) {
    // As the point read loop answers a forwarded call: read here, or refused.
    if (absl::Status s = local_.CheckReadable(request.store(), group.partition); !s.ok()) {
      return WithContext(s, GroupDoing(request, group));
    }
    absl::StatusOr<kiq::v1::GetManyResponse> part =
        LocalGetMany(request, &group.indexes, info, group.partition, LocalCopy{});
    if (!part.ok()) return WithContext(part.status(), GroupDoing(request, group));
    for (size_t k = 0; k < group.indexes.size(); ++k) {
      response.mutable_results(group.indexes[k])->Swap(part->mutable_results(static_cast<int>(k)));
    }
  }
  return response;
}

std::string QueryRouter::GroupDoing(const kiq::v1::GetManyRequest& request, const KeyGroup& group) {
  return absl::StrCat("get-many store=", request.store(), " partition=", group.partition.value(),
                      " keys=", group.indexes.size(),
                      " (first key=", ClipKey(request.keys(group.indexes.front())), ")");
}

void QueryRouter::FinishGroup(Batch& batch, const std::vector<int>& indexes,
                              absl::StatusOr<kiq::v1::GetManyResponse> result) const {
  absl::Status failed;
  kiq::v1::GetManyResponse response;
  {
    absl::MutexLock lock(&batch.mu);
    if (!result.ok()) {
      if (batch.failed.ok()) batch.failed = result.status();
    } else if (result->results_size() != static_cast<int>(indexes.size())) {
      // A peer that answers another number of results than it was asked for is broken.
      if (batch.failed.ok()) {
        batch.failed = absl::InternalError(absl::StrCat("get-many store=", batch.request->store(),
                                                        ": ", result->results_size(),
                                                        " results for ", indexes.size(), " keys"));
      }
    } else {
      for (size_t k = 0; k < indexes.size(); ++k) {
        batch.response.mutable_results(indexes[k])
            ->Swap(result->mutable_results(static_cast<int>(k)));
      }
    }
    if (--batch.pending > 0) return;
    failed = batch.failed;
    response = std::move(batch.response);
  }
  if (!failed.ok()) return batch.done(failed);
  batch.done(std::move(response));
}

std::shared_ptr<QueryRouter::PointRead<kiq::v1::GetManyResponse>> QueryRouter::NewGroupRead(
    const std::shared_ptr<Batch>& batch, const KeyGroup& group) const {
  const kiq::v1::GetManyRequest& request = *batch->request;
  // The keys of this partition only, with the request's read options: what is read here, or
  // forwarded on its own once the batched forward failed.
  auto sub = std::make_shared<kiq::v1::GetManyRequest>();
  sub->set_store(request.store());
  for (int i : group.indexes) sub->add_keys(request.keys(i));
  *sub->mutable_min_position() = PositionFor(request.min_position(), group.partition.value());
  sub->set_allow_stale(request.allow_stale());
  sub->set_max_lag_records(request.max_lag_records());

  auto read = std::make_shared<PointRead<kiq::v1::GetManyResponse>>();
  read->live = live_reads_;
  read->store = request.store();
  read->partition = group.partition;
  read->doing = GroupDoing(request, group);
  read->deadline = batch->deadline;
  read->hop = batch->hop;
  read->parent = batch->parent;
  read->allow_stale = request.allow_stale();
  read->max_lag_records = request.max_lag_records();
  read->wait = sub->min_position();
  read->read_local = [this, batch, sub, p = group.partition](const LocalCopy& copy) {
    return LocalGetMany(*sub, nullptr, batch->info, p, copy);
  };
  read->forward = [sub](PeerPool::Peer& peer, grpc::ClientContext* context,
                        kiq::v1::GetManyResponse* response,
                        std::function<void(grpc::Status)> done) {
    peer.query->async()->GetMany(context, sub.get(), response, std::move(done));
  };
  read->done = [this, batch,
                indexes = group.indexes](absl::StatusOr<kiq::v1::GetManyResponse> result) {
    FinishGroup(*batch, indexes, std::move(result));
  };
  return read;
}

void QueryRouter::GetManyAsync(const kiq::v1::GetManyRequest& request, absl::Time deadline, Hop hop,
                               const grpc::CallbackServerContext* parent,
                               GetManyCallback done) const {
  // Sizes first, before anything looks at the request (router/request_limits.h).
  if (absl::Status s = CheckRequest(request); !s.ok()) return done(s);
  absl::StatusOr<StoreInfo> info = DescribeForPointRead(request.store());
  if (!info.ok()) return done(info.status());

  // Key → partition, grouped in order of first appearance (a duplicate key is read once per
  // position it holds, at the same position).
  std::vector<KeyGroup> groups;
  absl::flat_hash_map<int32_t, size_t> group_of;
  for (int i = 0; i < request.keys_size(); ++i) {
    const int32_t p = PartitionForKey(info->partitioner, request.keys(i), info->num_partitions);
    auto [it, inserted] = group_of.try_emplace(p, groups.size());
    if (inserted) groups.push_back(KeyGroup{PartitionId(p), {}});
    groups[it->second].indexes.push_back(i);
  }
  // A forwarded GetMany (e.g. coalesced Gets) with nothing to wait for is answered here or
  // refused, at once: the point read loop per partition below would give the same answer at
  // a higher cost per partition.
  if (hop == Hop::kToOwner && request.min_position().offsets().empty()) {
    return done(GetManyHere(request, *info, groups));
  }
  auto batch = std::make_shared<Batch>();
  batch->request = &request;
  batch->info = *std::move(info);
  batch->deadline = deadline;
  batch->hop = hop;
  batch->parent = parent;
  batch->done = std::move(done);

  // Partition → owner: the ones another node owns are batched per owner, one forward each.
  // Everything else (local, restoring, no owner known, a call forwarded here) takes the point
  // read loop per partition, which reads it here, waits, retries or refuses.
  struct PeerCall {
    std::string node_id;
    std::vector<KeyGroup> groups;
    std::unique_ptr<grpc::ClientContext> context;
    kiq::v1::GetManyRequest request;
    kiq::v1::GetManyResponse response;
  };
  std::map<std::string, std::shared_ptr<PeerCall>> peer_calls;  // endpoint →
  std::vector<KeyGroup> point_reads;
  for (KeyGroup& group : groups) {
    if (hop == Hop::kClient && cluster_.table != nullptr && cluster_.peers != nullptr &&
        IsNotOwner(local_.CheckReadable(request.store(), group.partition))) {
      absl::StatusOr<PartitionOwner> owner =
          cluster_.table->ActiveOwner(group.partition.value(), cluster_.self_node_id);
      if (owner.ok()) {
        std::shared_ptr<PeerCall>& call = peer_calls[Endpoint(owner->node)];
        if (call == nullptr) call = std::make_shared<PeerCall>();
        call->node_id = owner->node.node_id();
        call->groups.push_back(std::move(group));
        continue;
      }
    }
    point_reads.push_back(std::move(group));
  }
  {
    absl::MutexLock lock(&batch->mu);
    batch->pending = groups.size();
    batch->response.mutable_results()->Reserve(request.keys_size());
    for (int i = 0; i < request.keys_size(); ++i) batch->response.add_results();
  }
  // From here on the last group to end answers, and `request` may then be gone: only locals
  // and `batch` are used below.
  for (auto& entry : peer_calls) {
    const std::string& endpoint = entry.first;
    std::shared_ptr<PeerCall> call = entry.second;  // a name a lambda can capture
    call->request.set_store(request.store());
    for (const KeyGroup& group : call->groups) {
      for (int i : group.indexes) call->request.add_keys(request.keys(i));
    }
    *call->request.mutable_min_position() = request.min_position();
    call->request.set_allow_stale(request.allow_stale());
    call->request.set_max_lag_records(request.max_lag_records());
    call->context = PeerContext(deadline, parent);
    PeerPool::Peer& peer = cluster_.peers->Get(endpoint);
    peer.query->async()->GetMany(
        call->context.get(), &call->request, &call->response,
        [this, batch, call](grpc::Status status) {
          RecordPeerCall(call->node_id, status);
          if (status.ok() && call->response.results_size() == call->request.keys_size()) {
            int next = 0;
            for (const KeyGroup& group : call->groups) {
              kiq::v1::GetManyResponse part;
              for (size_t k = 0; k < group.indexes.size(); ++k) {
                part.add_results()->Swap(call->response.mutable_results(next++));
              }
              FinishGroup(*batch, group.indexes, std::move(part));
            }
            return;
          }
          absl::Status s =
              status.ok()
                  ? absl::InternalError(absl::StrCat("node ", call->node_id, " answered ",
                                                     call->response.results_size(), " results for ",
                                                     call->request.keys_size(), " keys"))
                  : FromGrpcStatus(status, absl::StrCat("forwarded to node ", call->node_id));
          // The owner refused or could not be reached: each of its partitions goes through
          // the point read loop on its own (NOT_OWNER: the one that moved is forwarded to its
          // new owner; the others are retried where the table says).
          for (const KeyGroup& group : call->groups) {
            std::shared_ptr<PointRead<kiq::v1::GetManyResponse>> read = NewGroupRead(batch, group);
            if (!IsRetriableRouting(s)) {
              read->done(WithContext(s, read->doing));
              continue;
            }
            ForwardFailed(std::move(read), s);
          }
        });
  }
  for (const KeyGroup& group : point_reads) StepPointRead(NewGroupRead(batch, group));
}

absl::StatusOr<kiq::v1::GetManyResponse> QueryRouter::GetMany(
    const kiq::v1::GetManyRequest& request, absl::Time deadline, Hop hop,
    const grpc::CallbackServerContext* parent) const {
  struct Outcome {
    absl::Notification finished;
    absl::StatusOr<kiq::v1::GetManyResponse> result;
  };
  auto outcome = std::make_shared<Outcome>();
  GetManyAsync(request, deadline, hop, parent,
               [outcome](absl::StatusOr<kiq::v1::GetManyResponse> r) {
                 outcome->result = std::move(r);
                 outcome->finished.Notify();
               });
  outcome->finished.WaitForNotification();
  return std::move(outcome->result);
}

absl::StatusOr<kiq::v1::WindowFetchResponse> QueryRouter::LocalWindowFetch(
    const kiq::v1::WindowFetchRequest& request, const StoreInfo& info, const std::string& key,
    PartitionId p, const LocalCopy& copy) const {
  kiq::v1::WindowFetchResponse response;
  const int64_t time_to =
      request.time_to() == 0 ? std::numeric_limits<int64_t>::max() : request.time_to();
  // The windows of one key are consecutive and ordered by start: seek to time_from and read
  // pages until a start passes time_to.
  auto read_windows = [&]() -> absl::Status {
    response.clear_entries();
    std::optional<std::string> after;
    if (request.time_from() > std::numeric_limits<int64_t>::min()) {
      after = WindowKey(key, request.time_from() - 1);
    }
    constexpr size_t kPage = 256;
    for (;;) {
      absl::StatusOr<std::vector<KeyValue>> run =
          local_.Scan(request.store(), p, KeyRange{key, key}, after, kPage);
      if (!run.ok()) return run.status();
      for (KeyValue& kv : *run) {
        std::optional<DecodedWindowKey> w = DecodeWindowKey(kv.key);
        if (!w || w->user_key != key) continue;
        if (w->start_ms > time_to) return absl::OkStatus();
        after = kv.key;
        *response.add_entries() = RenderEntry(info, std::move(kv));
      }
      if (run->size() < kPage) return absl::OkStatus();
      after = run->back().key;
    }
  };
  if (absl::Status s = ReadCopy(request.store(), p, copy, response.mutable_position(),
                                response.mutable_standby_reads(), read_windows);
      !s.ok()) {
    return s;
  }
  return response;
}

absl::StatusOr<std::shared_ptr<QueryRouter::PointRead<kiq::v1::WindowFetchResponse>>>
QueryRouter::NewWindowFetch(const kiq::v1::WindowFetchRequest& request, absl::Time deadline,
                            Hop hop, const grpc::CallbackServerContext* parent) const {
  absl::StatusOr<StoreInfo> info = DescribeForRequest(request.store());
  if (!info.ok()) return info.status();
  if (!info->windowed()) {
    return absl::FailedPreconditionError(
        absl::StrCat("store \"", request.store(), "\" is not windowed: use Get"));
  }
  absl::StatusOr<std::string> key = RequestKey(request);
  if (!key.ok()) return key.status();
  if (request.time_to() != 0 && request.time_from() > request.time_to()) {
    return absl::InvalidArgumentError(
        absl::StrCat("time_from ", request.time_from(), " is after time_to ", request.time_to()));
  }
  const PartitionId p(PartitionForKey(info->partitioner, *key, info->num_partitions));
  auto read = std::make_shared<PointRead<kiq::v1::WindowFetchResponse>>();
  read->live = live_reads_;
  read->store = request.store();
  read->partition = p;
  read->doing = absl::StrCat("window-fetch store=", request.store(), " key=", ClipKey(*key),
                             " partition=", p.value());
  read->deadline = deadline;
  read->hop = hop;
  read->parent = parent;
  read->allow_stale = request.allow_stale();
  read->max_lag_records = request.max_lag_records();
  read->wait = PositionFor(request.min_position(), p.value());
  read->read_local = [this, &request, info = *std::move(info), key = *std::move(key),
                      p](const LocalCopy& copy) {
    return LocalWindowFetch(request, info, key, p, copy);
  };
  read->forward = [&request](PeerPool::Peer& peer, grpc::ClientContext* context,
                             kiq::v1::WindowFetchResponse* response,
                             std::function<void(grpc::Status)> done) {
    peer.query->async()->WindowFetch(context, &request, response, std::move(done));
  };
  return read;
}

absl::StatusOr<kiq::v1::WindowFetchResponse> QueryRouter::WindowFetch(
    const kiq::v1::WindowFetchRequest& request, absl::Time deadline, Hop hop,
    const grpc::CallbackServerContext* parent) const {
  auto read = NewWindowFetch(request, deadline, hop, parent);
  if (!read.ok()) return read.status();
  return AwaitPointRead(*std::move(read));
}

void QueryRouter::WindowFetchAsync(const kiq::v1::WindowFetchRequest& request, absl::Time deadline,
                                   Hop hop, const grpc::CallbackServerContext* parent,
                                   Executor run_local, WindowFetchCallback done) const {
  auto read = NewWindowFetch(request, deadline, hop, parent);
  if (!read.ok()) return done(read.status());
  (*read)->run_local = std::move(run_local);
  (*read)->done = std::move(done);
  StepPointRead(*std::move(read));
}

absl::StatusOr<KeyRange> QueryRouter::RangeOf(const kiq::v1::RangeRequest& request) {
  KeyRange range{Bound(request.from(), request.from_bytes()),
                 Bound(request.to(), request.to_bytes())};
  if (range.from && range.to && *range.from > *range.to) {
    return absl::InvalidArgumentError(absl::StrCat("range store=", request.store(), ": from ",
                                                   ClipKey(*range.from), " is after to ",
                                                   ClipKey(*range.to)));
  }
  return range;
}

absl::StatusOr<kiq::v1::ScanResponse> QueryRouter::Range(
    const kiq::v1::RangeRequest& request, absl::Time deadline,
    const grpc::CallbackServerContext* parent) const {
  kiq::v1::ScanResponse response;
  if (absl::Status s = RangeInto(request, deadline, parent, &response); !s.ok()) return s;
  return response;
}

absl::Status QueryRouter::RangeInto(const kiq::v1::RangeRequest& request, absl::Time deadline,
                                    const grpc::CallbackServerContext* parent,
                                    kiq::v1::ScanResponse* response) const {
  absl::StatusOr<KeyRange> range = RangeOf(request);
  if (!range.ok()) return range.status();
  return Scan(request.store(), *range, request.page_size(), 0, request.page_token(),
              request.min_position(), request.allow_partial(),
              StaleReads{request.allow_stale(), request.max_lag_records()}, deadline, parent,
              [response] { return response; });
}

absl::StatusOr<std::vector<kiq::v1::ScanResponse>> QueryRouter::RangePages(
    const kiq::v1::RangeRequest& request, int32_t batch_size, absl::Time deadline,
    const grpc::CallbackServerContext* parent) const {
  absl::StatusOr<KeyRange> range = RangeOf(request);
  if (!range.ok()) return range.status();
  std::deque<kiq::v1::ScanResponse> pages;  // stays put as it grows
  absl::Status s = Scan(request.store(), *range, request.page_size(), batch_size,
                        request.page_token(), request.min_position(), request.allow_partial(),
                        StaleReads{request.allow_stale(), request.max_lag_records()}, deadline,
                        parent, [&pages] { return &pages.emplace_back(); });
  if (!s.ok()) return s;
  return std::vector<kiq::v1::ScanResponse>(std::make_move_iterator(pages.begin()),
                                            std::make_move_iterator(pages.end()));
}

absl::StatusOr<kiq::v1::ScanResponse> QueryRouter::All(
    const kiq::v1::AllRequest& request, absl::Time deadline,
    const grpc::CallbackServerContext* parent) const {
  kiq::v1::ScanResponse response;
  if (absl::Status s = AllInto(request, deadline, parent, &response); !s.ok()) return s;
  return response;
}

absl::Status QueryRouter::AllInto(const kiq::v1::AllRequest& request, absl::Time deadline,
                                  const grpc::CallbackServerContext* parent,
                                  kiq::v1::ScanResponse* response) const {
  return Scan(request.store(), KeyRange{}, request.page_size(), 0, request.page_token(),
              request.min_position(), request.allow_partial(),
              StaleReads{request.allow_stale(), request.max_lag_records()}, deadline, parent,
              [response] { return response; });
}

void QueryRouter::ReadOnce(const StoreInfo& info, const ScanSpec& spec,
                           const std::vector<int32_t>& partitions,
                           const kiq::v1::Position& min_position,
                           const absl::flat_hash_set<int32_t>& owner_failed,
                           absl::Time deadline,
                           const grpc::CallbackServerContext* parent,
                           absl::flat_hash_map<int32_t, PartitionRead>* results,
                           absl::flat_hash_map<int32_t, absl::Status>* errors) const {
  // Partitions held here are read directly; the others are grouped by owner (or, for a stale
  // read whose owner cannot answer, by the node of the freshest standby replica). Every local
  // partition is checked (and waited for) before any is read, so a request whose position is
  // not reached costs no scan.
  // (endpoint, standby) → partitions
  absl::flat_hash_map<std::pair<std::string, bool>, std::vector<int32_t>> remote;
  absl::flat_hash_map<std::string, std::string> node_of;  // endpoint → node id
  std::vector<int32_t> local;
  std::vector<int32_t> local_standby;
  // Places partition i on a standby replica if the request allows it and one serves within
  // the bound (never with a min_position for it: a replica is not waited for); false if not.
  auto to_standby = [&](int32_t i) {
    if (!spec.allow_stale || !PositionFor(min_position, i).offsets().empty()) return false;
    if (local_.CheckStandby(info.name, PartitionId(i), spec.max_lag_records).ok()) {
      local_standby.push_back(i);
      return true;
    }
    if (cluster_.table == nullptr) return false;
    for (const StandbyReplica& replica : cluster_.table->Standbys(i)) {
      if (replica.node.node_id() == cluster_.self_node_id) continue;
      if (spec.max_lag_records > 0 && replica.lag_records > spec.max_lag_records) continue;
      remote[{Endpoint(replica.node), true}].push_back(i);
      node_of[Endpoint(replica.node)] = replica.node.node_id();
      return true;
    }
    return false;
  };
  for (int32_t i : partitions) {
    const PartitionId p(i);
    absl::Status readable = local_.CheckReadable(info.name, p);
    if (readable.ok()) {
      kiq::v1::Position wanted = PositionFor(min_position, i);
      if (!wanted.offsets().empty()) readable = local_.WaitForPosition(info.name, wanted, deadline);
      if (readable.ok()) {
        local.push_back(i);
      } else {
        (*errors)[i] = readable;
      }
      continue;
    }
    if (!IsNotOwner(readable) || cluster_.table == nullptr) {
      // Restoring or failed here (or no cluster to ask).
      if (!IsRetriableRouting(readable) || !to_standby(i)) (*errors)[i] = readable;
      continue;
    }
    absl::StatusOr<PartitionOwner> owner = cluster_.table->ActiveOwner(i, cluster_.self_node_id);
    if (!owner.ok()) {
      if (!to_standby(i)) (*errors)[i] = owner.status();
    } else if (owner_failed.contains(i) && to_standby(i)) {
      // The owner did not answer the last attempt: a replica does.
    } else {
      remote[{Endpoint(owner->node), false}].push_back(i);
      node_of[Endpoint(owner->node)] = owner->node.node_id();
    }
  }
  for (const auto& [i, s] : *errors) {
    if (!IsRetriableRouting(s)) return;  // the whole request fails; read nothing
  }
  // Scatter: one PeerService call per owner, all in flight at once, then the local partitions
  // are read while they travel; gather when all are done.
  struct Call {
    // The scan's answer is parsed onto an arena (its entries' messages and strings allocated
    // in a few blocks, freed at once); the strings are moved out before it goes.
    Call() : arena(ScanArenaOptions()) {}
    google::protobuf::Arena arena;
    std::string endpoint;
    bool standby = false;
    std::vector<int32_t> partitions;
    std::unique_ptr<grpc::ClientContext> context;
    kiq::v1::ScanPartitionsRequest scan;
    kiq::v1::ScanPartitionsResponse& scan_response =
        *google::protobuf::Arena::CreateMessage<kiq::v1::ScanPartitionsResponse>(&arena);
    kiq::v1::CountPartitionsRequest count;
    kiq::v1::CountPartitionsResponse count_response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  absl::Mutex mu;
  size_t pending = remote.size();
  for (auto& [target, parts] : remote) {
    const std::string& endpoint = target.first;
    auto call = std::make_unique<Call>();
    call->endpoint = endpoint;
    call->standby = target.second;
    call->partitions = parts;
    call->context = PeerContext(deadline, parent);
    Call* c = call.get();
    auto done = [&mu, &pending, c](grpc::Status status) {
      absl::MutexLock lock(&mu);
      c->status = std::move(status);
      --pending;
    };
    PeerPool::Peer& peer = cluster_.peers->Get(endpoint);
    if (spec.count_only) {
      c->count.set_store(info.name);
      for (int32_t i : parts) c->count.add_partitions(i);
      *c->count.mutable_min_position() = min_position;
      c->count.set_standby(c->standby);
      c->count.set_max_lag_records(spec.max_lag_records);
      peer.peer->async()->CountPartitions(c->context.get(), &c->count, &c->count_response, done);
    } else {
      c->scan.set_store(info.name);
      for (int32_t i : parts) c->scan.add_partitions(i);
      if (spec.range.from) c->scan.mutable_from()->set_value(*spec.range.from);
      if (spec.range.to) c->scan.mutable_to()->set_value(*spec.range.to);
      if (spec.after) c->scan.mutable_after()->set_value(*spec.after);
      c->scan.set_limit(static_cast<int32_t>(spec.limit));
      *c->scan.mutable_min_position() = min_position;
      c->scan.set_standby(c->standby);
      c->scan.set_max_lag_records(spec.max_lag_records);
      peer.peer->async()->ScanPartitions(c->context.get(), &c->scan, &c->scan_response, done);
    }
    calls.push_back(std::move(call));
  }
  auto read_partition = [&](PartitionId p, PartitionRead& read) -> absl::Status {
    if (spec.count_only) {
      absl::StatusOr<int64_t> n = local_.EntryCount(info.name, p);
      if (!n.ok()) return n.status();
      read.count = *n;
      return absl::OkStatus();
    }
    absl::StatusOr<std::vector<KeyValue>> run =
        local_.Scan(info.name, p, spec.range, spec.after, spec.limit);
    if (!run.ok()) return run.status();
    read.entries = std::move(*run);
    return absl::OkStatus();
  };
  for (int32_t i : local) {
    const PartitionId p(i);
    PartitionRead read;
    absl::Status s =
        local_.ReadAt(info.name, p, &read.position, [&] { return read_partition(p, read); });
    if (!s.ok()) {
      (*errors)[i] = s;
      continue;
    }
    (*results)[i] = std::move(read);
  }
  for (int32_t i : local_standby) {
    const PartitionId p(i);
    PartitionRead read;
    int64_t lag = 0;
    absl::Status s = local_.ReadStandbyAt(info.name, p, spec.max_lag_records, &read.position, &lag,
                                          [&] { return read_partition(p, read); });
    if (!s.ok()) {
      (*errors)[i] = s;
      continue;
    }
    read.standby = StandbyReadHere(info.name, p, lag);
    (*results)[i] = std::move(read);
  }
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](size_t* n) { return *n == 0; }, &pending));
  }
  for (const std::unique_ptr<Call>& c : calls) {
    RecordPeerCall(node_of[c->endpoint], c->status);
    if (!c->status.ok()) {
      absl::Status s = FromGrpcStatus(c->status, absl::StrCat("peer ", c->endpoint));
      for (int32_t i : c->partitions) (*errors)[i] = s;
      continue;
    }
    auto& parts = spec.count_only ? *c->count_response.mutable_partitions()
                                  : *c->scan_response.mutable_partitions();
    for (kiq::v1::PartitionResult& result : parts) {
      if (result.code() != 0) {
        // With its reason: a partition that moved away from that peer since this node's
        // routing table said otherwise is NOT_OWNER, retried at its new owner.
        const auto code = static_cast<absl::StatusCode>(result.code());
        const std::string message = absl::StrCat("peer ", c->endpoint, ": ", result.message());
        (*errors)[result.partition()] = result.reason().empty()
                                            ? absl::Status(code, message)
                                            : ErrorWithReason(code, result.reason(), message);
        continue;
      }
      PartitionRead read;
      read.count = result.count();
      read.position = result.position();
      if (c->standby) {
        read.standby.emplace();
        read.standby->set_partition(result.partition());
        read.standby->set_node_id(node_of[c->endpoint]);
        read.standby->set_lag_records(result.standby_lag_records());
      }
      // The entries' strings are moved out of the response, not copied.
      read.entries.reserve(result.entries_size());
      for (kiq::v1::KeyValueBytes& kv : *result.mutable_entries()) {
        read.entries.push_back(KeyValue{std::move(*kv.mutable_key()),
                                        std::move(*kv.mutable_value()),
                                        PartitionId(result.partition())});
      }
      (*results)[result.partition()] = std::move(read);
    }
  }
}

absl::StatusOr<absl::flat_hash_map<int32_t, QueryRouter::PartitionRead>>
QueryRouter::ReadAllPartitions(const StoreInfo& info, const ScanSpec& spec,
                               const kiq::v1::Position& min_position, bool allow_partial,
                               absl::Time deadline, const grpc::CallbackServerContext* parent,
                               absl::string_view doing, std::vector<int32_t>* missing) const {
  absl::flat_hash_map<int32_t, PartitionRead> results;
  std::vector<int32_t> pending;
  for (int32_t i = 0; i < info.num_partitions; ++i) pending.push_back(i);
  const absl::Time retry_until =
      allow_partial ? std::min(deadline, absl::Now() + kPartialRetryBudget) : deadline;
  // Partitions whose owner did not answer an attempt: the next one may read a replica.
  absl::flat_hash_set<int32_t> owner_failed;
  for (int attempt = 0;; ++attempt) {
    const uint64_t version = cluster_.table ? cluster_.table->version() : 0;
    absl::flat_hash_map<int32_t, absl::Status> errors;
    ReadOnce(info, spec, pending, min_position, owner_failed, deadline, parent, &results, &errors);
    pending.clear();
    for (const auto& [i, s] : errors) {
      if (!IsRetriableRouting(s) && !allow_partial) {
        return WithContext(s, absl::StrCat(doing, " partition=", i));
      }
      pending.push_back(i);
      owner_failed.insert(i);
    }
    // A replica answering at once is the point of a stale read: no backoff before it.
    if (spec.allow_stale && attempt == 0 && !pending.empty()) continue;
    if (pending.empty()) return results;
    std::sort(pending.begin(), pending.end());
    if (!Backoff(version, attempt, retry_until, parent)) {
      if (allow_partial) {
        *missing = pending;
        return results;
      }
      return WithContext(errors[pending.front()],
                         absl::StrCat(doing, " partition=", pending.front()));
    }
  }
}

absl::Status QueryRouter::Scan(const std::string& store, const KeyRange& range,
                               int32_t requested_page_size, int32_t batch_size,
                               const std::string& page_token, const kiq::v1::Position& min_position,
                               bool allow_partial, const StaleReads& stale, absl::Time deadline,
                               const grpc::CallbackServerContext* parent,
                               absl::FunctionRef<kiq::v1::ScanResponse*()> new_page) const {
  absl::StatusOr<StoreInfo> info = DescribeForRequest(store);
  if (!info.ok()) return info.status();
  absl::StatusOr<int32_t> page_size = CheckPageSize(requested_page_size);
  if (!page_size.ok()) return page_size.status();
  const int32_t batch = std::clamp(batch_size, *page_size, std::max(*page_size, kMaxPageSize));
  absl::StatusOr<std::optional<std::string>> after = DecodePageToken(page_token, store, range);
  if (!after.ok()) return after.status();

  // Each partition contributes its first entries after the resume key, a share of the batch
  // with some slack (keys spread evenly over partitions by hash): reading batch + 1 from
  // every partition would read and ship n times the batch. The merge below stops at the last
  // entry of a partition that may have more, so a page can come out shorter than page_size
  // (AIP-158 allows it: the end is the empty next_page_token).
  const size_t look_ahead = ScanLookAhead(batch, info->num_partitions);
  ScanSpec spec{range, *after, look_ahead, false};
  spec.allow_stale = stale.allow;
  spec.max_lag_records = stale.max_lag_records;
  kiq::v1::ScanResponse header;  // what every page of the batch carries besides its entries
  std::vector<int32_t> missing;
  auto reads = ReadAllPartitions(*info, spec, min_position, allow_partial, deadline, parent,
                                 absl::StrCat("scan store=", store), &missing);
  if (!reads.ok()) return reads.status();
  for (int32_t i : missing) header.add_missing_partitions(i);

  std::vector<std::vector<KeyValue>*> runs;
  // Per run: it holds look_ahead entries, so the partition may have more after its last.
  std::vector<bool> truncated;
  size_t read_entries = 0;
  for (int32_t i = 0; i < info->num_partitions; ++i) {
    auto it = reads->find(i);
    if (it == reads->end()) continue;
    header.mutable_position()->MergeFrom(it->second.position);
    if (it->second.standby) *header.add_standby_reads() = *it->second.standby;
    if (!it->second.entries.empty()) {
      runs.push_back(&it->second.entries);
      truncated.push_back(it->second.entries.size() >= look_ahead);
      read_entries += it->second.entries.size();
    }
  }

  const auto start_page = [&] {
    kiq::v1::ScanResponse* page = new_page();
    page->CopyFrom(header);
    page->mutable_entries()->Reserve(
        static_cast<int>(std::min(read_entries, static_cast<size_t>(*page_size))));
    return page;
  };
  kiq::v1::ScanResponse* page = start_page();
  // k-way merge by key byte order: heap of (run, index) ordered by the run's current key.
  using Cursor = std::pair<size_t, size_t>;
  auto greater = [&runs](const Cursor& a, const Cursor& b) {
    return (*runs[a.first])[a.second].key > (*runs[b.first])[b.second].key;
  };
  std::priority_queue<Cursor, std::vector<Cursor>, decltype(greater)> heap(greater);
  for (size_t r = 0; r < runs.size(); ++r) heap.push({r, 0});
  std::string last_key;
  int32_t merged = 0;
  while (!heap.empty()) {
    if (merged == batch) {
      page->set_next_page_token(EncodePageToken(store, range, last_key));
      break;
    }
    if (page->entries_size() == *page_size) {
      // More of the batch follows: this page resumes after its last entry, like Range's.
      page->set_next_page_token(EncodePageToken(store, range, last_key));
      page = start_page();
    }
    auto [r, i] = heap.top();
    heap.pop();
    last_key = (*runs[r])[i].key;
    RenderEntry(*info, std::move((*runs[r])[i]), page->add_entries());
    ++merged;
    if (i + 1 < runs[r]->size()) {
      heap.push({r, i + 1});
    } else if (truncated[r]) {
      // What follows in this partition is unknown and may come before the other runs' heads.
      page->set_next_page_token(EncodePageToken(store, range, last_key));
      break;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<kiq::v1::CountResponse> QueryRouter::Count(
    const kiq::v1::CountRequest& request, absl::Time deadline,
    const grpc::CallbackServerContext* parent) const {
  absl::StatusOr<StoreInfo> info = DescribeForRequest(request.store());
  if (!info.ok()) return info.status();
  ScanSpec spec;
  spec.count_only = true;
  spec.allow_stale = request.allow_stale();
  spec.max_lag_records = request.max_lag_records();
  std::vector<int32_t> missing;
  auto reads =
      ReadAllPartitions(*info, spec, request.min_position(), request.allow_partial(), deadline,
                        parent, absl::StrCat("count store=", request.store()), &missing);
  if (!reads.ok()) return reads.status();
  kiq::v1::CountResponse response;
  for (int32_t i : missing) response.add_missing_partitions(i);
  int64_t total = 0;
  for (int32_t i = 0; i < info->num_partitions; ++i) {
    auto it = reads->find(i);
    if (it == reads->end()) continue;
    response.mutable_position()->MergeFrom(it->second.position);
    if (it->second.standby) *response.add_standby_reads() = *it->second.standby;
    total += it->second.count;
  }
  response.set_count(total);
  return response;
}

absl::StatusOr<std::unique_ptr<Subscription>> QueryRouter::Subscribe(
    const kiq::v1::SubscribeRequest& request, StoreInfo* info) const {
  absl::StatusOr<StoreInfo> described = DescribeForRequest(request.store());
  if (!described.ok()) return described.status();
  if (request.buffer_size() < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("buffer_size must be >= 0 (0 = default), got ", request.buffer_size()));
  }
  SubscribeSpec spec;
  spec.store = request.store();
  switch (request.match_case()) {
    case kiq::v1::SubscribeRequest::kKey:
      spec.match = KeyMatch{KeyMatch::Kind::kKey, request.key()};
      break;
    case kiq::v1::SubscribeRequest::kKeyPrefix:
      spec.match =
          KeyMatch{request.key_prefix().empty() ? KeyMatch::Kind::kAll : KeyMatch::Kind::kPrefix,
                   request.key_prefix()};
      break;
    default:
      spec.match = KeyMatch{KeyMatch::Kind::kAll, ""};
  }
  spec.snapshot = request.from() == kiq::v1::SubscribeRequest::FROM_SNAPSHOT;
  spec.coalesce = request.on_overflow() == kiq::v1::SubscribeRequest::OVERFLOW_COALESCE;
  spec.buffer_size = static_cast<size_t>(request.buffer_size());
  FanInCluster cluster{cluster_.table, cluster_.peers, cluster_.self_node_id, cluster_.metrics};
  if (cluster.peers == nullptr) cluster.table = nullptr;  // nobody to ask: local partitions only
  auto fan_in =
      std::make_shared<FanIn>(local_, std::move(cluster), *described, spec, kSubscribeGiveUp);
  fan_in->set_placer(placer_.get());
  if (fan_in->PlacePending()) placer_->Wake(fan_in);
  // A first placement that ended it (unknown partitions, no cluster): refuse the call itself.
  std::vector<ChangeEvent> none;
  if (absl::Status s = fan_in->Take(0, &none, nullptr); !s.ok()) {
    fan_in->Close(s);
    return s;
  }
  *info = std::move(*described);
  return std::unique_ptr<Subscription>(new FanInSubscription(std::move(fan_in)));
}

}  // namespace kiq::router
