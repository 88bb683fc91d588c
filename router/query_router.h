#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <grpcpp/server_context.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kiq/v1/query.pb.h"
#include "router/fan_in.h"
#include "router/forward_coalescer.h"
#include "router/peer_pool.h"
#include "router/port/local_stores.h"
#include "router/port/subscription.h"
#include "router/position_waiter.h"
#include "router/query_metrics.h"
#include "router/routing_table.h"

namespace kiq::router {

inline constexpr int32_t kDefaultPageSize = 100;
inline constexpr int32_t kMaxPageSize = 5000;

// The cluster as a router sees it: who owns which partition (from the members topic) and
// channels to the peers. Both optional: without them, only local partitions are answered.
struct ClusterView {
  const RoutingTable* table = nullptr;
  PeerPool* peers = nullptr;
  std::string self_node_id;
  QueryMetrics* metrics = nullptr;  // optional: peer calls by outcome
  // Optional: read-your-writes waits of point reads without a thread. Without it they block
  // the calling thread.
  PositionWaiter* waiter = nullptr;
};

// How a point read reached this router: from a client, forwarded by a router to the owner it
// chose (answered here or refused with NOT_OWNER, never forwarded again), or forwarded to the
// standby replica a router chose for a stale read (answered from the replica here or refused).
enum class Hop { kClient, kToOwner, kToStandby };
// The hop a server call made, from its metadata.
Hop HopOf(const grpc::ServerContextBase& context);

// Answers QueryService requests. Get: key → partition (the store's partitioner) → owner: read
// locally, or forward once to the owner (marked, so it is never forwarded again). Range, All,
// Count: every partition, from its owner (locally or through PeerService), k-way merged by key
// and paginated. When an owner is unknown, restoring, or answers NOT_OWNER, the router waits
// for the routing table to change (or a backoff) and retries within the caller's deadline;
// it never guesses an owner.
//
// Concurrent forwarded Gets to the same owner are coalesced into one forwarded GetMany
// (ForwardCoalescer); a key that call does not answer is forwarded on its own.
//
// Thread-safe (its only mutable state, the coalescer's and the subscription placer's, guards
// itself); the gRPC service runs it inline for local point reads and on a worker pool for the
// rest. Errors are absl::Status values
// naming the store, key (clipped) and partition.
class QueryRouter {
 public:
  // `coalescing`: forwarded Gets to one owner ride shared GetMany calls
  // (router/forward_coalescer.h); window 0 forwards each on its own.
  explicit QueryRouter(const LocalStores& local, ClusterView cluster = {},
                       ForwardCoalescer::Options coalescing = {});

  // Get, answered here and now when that needs no routing: the key's partition is ACTIVE here
  // and the request waits for nothing (no min_position). An unknown store or a request without
  // a key is answered with its error too. nullopt otherwise: the caller then routes it with
  // Get or GetAsync. Cheaper than Get for a local key (no routing state, no callbacks).
  std::optional<absl::StatusOr<kiq::v1::GetResponse>> GetIfLocal(
      const kiq::v1::GetRequest& request) const;

  // `parent`, when given, is the caller's server context: calls to peers inherit its deadline
  // and cancellation, and retries stop when the caller has gone.
  absl::StatusOr<kiq::v1::GetResponse> Get(
      const kiq::v1::GetRequest& request, absl::Time deadline, Hop hop = Hop::kClient,
      const grpc::CallbackServerContext* parent = nullptr) const;
  // Get without blocking the calling thread: forwards with the async stub and retries on a
  // timer; `done` runs once, on a gRPC thread (or the waiter's). With min_position, the wait
  // goes to the cluster's PositionWaiter (required then: without one it blocks). `request` and
  // `parent` must stay valid until `done` runs.
  using GetCallback = std::function<void(absl::StatusOr<kiq::v1::GetResponse>)>;
  void GetAsync(const kiq::v1::GetRequest& request, absl::Time deadline, Hop hop,
                const grpc::CallbackServerContext* parent, GetCallback done) const;

  // Several keys of one store (GetMany): keys grouped by partition, the local partitions read
  // here, and ONE forwarded GetMany (marked kToOwner) per owner with the keys of all its
  // partitions. A partition that such a forward could not read (moved: NOT_OWNER, owner
  // unreachable, restoring) goes through Get's routing loop on its own (the same retries,
  // waits and stale reads, within the deadline). All or nothing: any partition that stays
  // unreadable fails the call with its status, naming store, partition (and node). `done` runs
  // once, after every group has ended; `request` and `parent` must stay valid until then.
  using GetManyCallback = std::function<void(absl::StatusOr<kiq::v1::GetManyResponse>)>;
  void GetManyAsync(const kiq::v1::GetManyRequest& request, absl::Time deadline, Hop hop,
                    const grpc::CallbackServerContext* parent, GetManyCallback done) const;
  // GetManyAsync, blocking the calling thread until it ends.
  absl::StatusOr<kiq::v1::GetManyResponse> GetMany(
      const kiq::v1::GetManyRequest& request, absl::Time deadline, Hop hop = Hop::kClient,
      const grpc::CallbackServerContext* parent = nullptr) const;

  // The windows of one key of a windowed store, routed like Get (locally, or forwarded once
  // to the key's owner, with the same retries). FAILED_PRECONDITION for other stores.
  absl::StatusOr<kiq::v1::WindowFetchResponse> WindowFetch(
      const kiq::v1::WindowFetchRequest& request, absl::Time deadline, Hop hop = Hop::kClient,
      const grpc::CallbackServerContext* parent = nullptr) const;

  // WindowFetch without blocking the calling thread, like GetAsync; the local read (a scan of
  // the key's windows) is handed to `run_local` (e.g. a worker pool).
  using Executor = std::function<void(std::function<void()>)>;
  using WindowFetchCallback = std::function<void(absl::StatusOr<kiq::v1::WindowFetchResponse>)>;
  void WindowFetchAsync(const kiq::v1::WindowFetchRequest& request, absl::Time deadline,
                        Hop hop, const grpc::CallbackServerContext* parent,
                        Executor run_local, WindowFetchCallback done) const;

  // Read your writes before a scan or count: the entries of `min_position` for the partitions
  // of `store` readable here, which the scan would otherwise wait for on its thread (wait for
  // them with a PositionWaiter first).
  kiq::v1::Position LocalWaits(absl::string_view store,
                               const kiq::v1::Position& min_position) const;
  // Whether `store` is a store of the topology (metrics label only known stores).
  bool KnowsStore(absl::string_view store) const { return local_.Describe(store).ok(); }
  // Point reads (Get, GetMany groups, WindowFetch) not yet destroyed: their last callback may
  // still be returning on a gRPC thread after their answer was given (tests wait for 0 before
  // tearing the servers down).
  int ReadsAlive() const { return static_cast<int>(live_reads_.use_count()) - 1; }
  // Forwarded Gets waiting for a coalesced call to their owner (ForwardCoalescer::queued).
  size_t ForwardsQueued() const { return coalescer_ != nullptr ? coalescer_->queued() : 0; }

  absl::StatusOr<kiq::v1::ScanResponse> Range(
      const kiq::v1::RangeRequest& request, absl::Time deadline,
      const grpc::CallbackServerContext* parent = nullptr) const;
  absl::StatusOr<kiq::v1::ScanResponse> All(
      const kiq::v1::AllRequest& request, absl::Time deadline,
      const grpc::CallbackServerContext* parent = nullptr) const;
  // Range and All writing the page into `response`, which may live on an arena (the page's
  // entries are then allocated there: the gRPC service's responses do).
  absl::Status RangeInto(const kiq::v1::RangeRequest& request, absl::Time deadline,
                         const grpc::CallbackServerContext* parent,
                         kiq::v1::ScanResponse* response) const;
  absl::Status AllInto(const kiq::v1::AllRequest& request, absl::Time deadline,
                       const grpc::CallbackServerContext* parent,
                       kiq::v1::ScanResponse* response) const;
  // Range read as one batch of up to `batch_size` entries (at most kMaxPageSize; never fewer
  // than the page), cut into consecutive pages of request.page_size() entries, each as Range
  // would answer it: every page's next_page_token resumes right after its last entry, and only
  // the batch's last page may end the range (empty token). For Scan's stream: one scatter to
  // the owners per batch instead of per page (each partition reads its share of the batch).
  absl::StatusOr<std::vector<kiq::v1::ScanResponse>> RangePages(
      const kiq::v1::RangeRequest& request, int32_t batch_size, absl::Time deadline,
      const grpc::CallbackServerContext* parent = nullptr) const;
  absl::StatusOr<kiq::v1::CountResponse> Count(
      const kiq::v1::CountRequest& request, absl::Time deadline,
      const grpc::CallbackServerContext* parent = nullptr) const;

  // Push query: validates the request and subscribes to every partition of the store, fanned
  // in from this process and from every other owner, following partitions as they move (see
  // router/fan_in.h). `info` receives the store's description, for rendering.
  absl::StatusOr<std::unique_ptr<Subscription>> Subscribe(const kiq::v1::SubscribeRequest& request,
                                                          StoreInfo* info) const;

  // How long a subscription waits for a partition without an ACTIVE owner before it ends.
  static constexpr absl::Duration kSubscribeGiveUp = absl::Seconds(60);

 private:
  // One point read (Get, WindowFetch) through the one routing loop (query_router.cc).
  template <typename Response>
  using AsyncForward = std::function<void(PeerPool::Peer&, grpc::ClientContext*, Response*,
                                          std::function<void(grpc::Status)>)>;
  template <typename Response>
  struct PointRead;
  template <typename Response>
  void StepPointRead(std::shared_ptr<PointRead<Response>> read) const;
  // Forwards `read` on its own to the owner at `endpoint` (node `node_id`).
  template <typename Response>
  void ForwardToOwner(std::shared_ptr<PointRead<Response>> read, const std::string& endpoint,
                      const std::string& node_id) const;
  template <typename Response>
  void RetryPointRead(std::shared_ptr<PointRead<Response>> read) const;
  // After a forward to the owner failed with `s`: final if the request itself is wrong, else
  // a standby replica (allow_stale) or a retry after a backoff.
  template <typename Response>
  void ForwardFailed(std::shared_ptr<PointRead<Response>> read, absl::Status s) const;
  // Runs `read` to its end and returns its answer, blocking the calling thread.
  template <typename Response>
  absl::StatusOr<Response> AwaitPointRead(std::shared_ptr<PointRead<Response>> read) const;
  template <typename Response>
  void ReadLocal(std::shared_ptr<PointRead<Response>> read) const;
  absl::StatusOr<std::shared_ptr<PointRead<kiq::v1::GetResponse>>> NewGet(
      const kiq::v1::GetRequest& request, absl::Time deadline, Hop hop,
      const grpc::CallbackServerContext* parent) const;
  absl::StatusOr<std::shared_ptr<PointRead<kiq::v1::WindowFetchResponse>>> NewWindowFetch(
      const kiq::v1::WindowFetchRequest& request, absl::Time deadline, Hop hop,
      const grpc::CallbackServerContext* parent) const;

  // What one partition contributed to a scan or count.
  struct PartitionRead {
    std::vector<KeyValue> entries;
    int64_t count = 0;
    kiq::v1::Position position;
    std::optional<kiq::v1::StandbyRead> standby;  // read from a standby replica
  };
  struct ScanSpec {
    KeyRange range;
    std::optional<std::string> after;
    size_t limit = 0;
    bool count_only = false;
    // A standby replica may answer a partition whose owner cannot (allow_stale).
    bool allow_stale = false;
    int64_t max_lag_records = 0;
  };
  struct StaleReads {
    bool allow = false;
    int64_t max_lag_records = 0;
  };

  // The pages of one read of up to `batch_size` entries (0: one page), as RangePages; each
  // page is written where `new_page` says (called once per page, before its entries).
  absl::Status Scan(const std::string& store, const KeyRange& range, int32_t page_size,
                    int32_t batch_size, const std::string& page_token,
                    const kiq::v1::Position& min_position, bool allow_partial,
                    const StaleReads& stale, absl::Time deadline,
                    const grpc::CallbackServerContext* parent,
                    absl::FunctionRef<kiq::v1::ScanResponse*()> new_page) const;
  // Range's bounds, checked.
  static absl::StatusOr<KeyRange> RangeOf(const kiq::v1::RangeRequest& request);
  // Reads every partition of `store` from its owner, retrying within the deadline. Partitions
  // that stay unreadable are listed in `missing` if `allow_partial`, else fail the call.
  absl::StatusOr<absl::flat_hash_map<int32_t, PartitionRead>> ReadAllPartitions(
      const StoreInfo& info, const ScanSpec& spec, const kiq::v1::Position& min_position,
      bool allow_partial, absl::Time deadline, const grpc::CallbackServerContext* parent,
      absl::string_view doing, std::vector<int32_t>* missing) const;
  // One attempt at reading `partitions`: results for those read, a status for the others.
  // `owner_failed`: partitions whose owner did not answer an earlier attempt; with
  // spec.allow_stale they go to a standby replica.
  void ReadOnce(const StoreInfo& info, const ScanSpec& spec, const std::vector<int32_t>& partitions,
                const kiq::v1::Position& min_position,
                const absl::flat_hash_set<int32_t>& owner_failed, absl::Time deadline,
                const grpc::CallbackServerContext* parent,
                absl::flat_hash_map<int32_t, PartitionRead>* results,
                absl::flat_hash_map<int32_t, absl::Status>* errors) const;
  // Which copy a local read reads: the owned partition (ReadAt), or for a stale read the
  // standby replica here (ReadStandbyAt; the answer then lists it in standby_reads).
  struct LocalCopy {
    bool standby = false;
    int64_t max_lag_records = 0;
  };
  // GetMany: the shared state of one call, and the keys of one partition (their indexes in
  // the request).
  struct Batch;
  struct KeyGroup {
    PartitionId partition;
    std::vector<int> indexes;
  };
  // The point read (Get's routing loop) of one partition's keys.
  std::shared_ptr<PointRead<kiq::v1::GetManyResponse>> NewGroupRead(
      const std::shared_ptr<Batch>& batch, const KeyGroup& group) const;
  // Records one group's answer (or failure); the last group to end runs the callback.
  void FinishGroup(Batch& batch, const std::vector<int>& indexes,
                   absl::StatusOr<kiq::v1::GetManyResponse> result) const;
  // Reads the keys of `request` at `indexes` (null: all; all of partition `p`) from one copy
  // here, at one position.
  absl::StatusOr<kiq::v1::GetManyResponse> LocalGetMany(const kiq::v1::GetManyRequest& request,
                                                        const std::vector<int>* indexes,
                                                        const StoreInfo& info, PartitionId p,
                                                        const LocalCopy& copy) const;
  // A forwarded GetMany without min_position, answered from here or refused with the first
  // unreadable group's status, as the point read loop would answer it.
  absl::StatusOr<kiq::v1::GetManyResponse> GetManyHere(const kiq::v1::GetManyRequest& request,
                                                       const StoreInfo& info,
                                                       const std::vector<KeyGroup>& groups) const;
  // What a group's reads say they were doing, in their errors.
  static std::string GroupDoing(const kiq::v1::GetManyRequest& request, const KeyGroup& group);

  // Runs `read` on that copy of partition `p` of `store` and records the position it reflects.
  absl::Status ReadCopy(const std::string& store, PartitionId p, const LocalCopy& copy,
                        kiq::v1::Position* position,
                        google::protobuf::RepeatedPtrField<kiq::v1::StandbyRead>* standby_reads,
                        absl::FunctionRef<absl::Status()> read) const;
  // A read of the standby replica of `p` here, as answers list it (and counted).
  kiq::v1::StandbyRead StandbyReadHere(absl::string_view store, PartitionId p, int64_t lag) const;
  // The local reads of point reads; the read-your-writes wait comes before, in StepPointRead.
  absl::StatusOr<kiq::v1::GetResponse> LocalGet(const kiq::v1::GetRequest& request,
                                                const StoreInfo& info, const std::string& key,
                                                PartitionId p, const LocalCopy& copy) const;
  absl::StatusOr<StoreInfo> DescribeForRequest(absl::string_view store) const;
  // For Get: a windowed store is FAILED_PRECONDITION (its keys are read with WindowFetch).
  absl::StatusOr<StoreInfo> DescribeForPointRead(absl::string_view store) const;
  absl::StatusOr<kiq::v1::WindowFetchResponse> LocalWindowFetch(
      const kiq::v1::WindowFetchRequest& request, const StoreInfo& info, const std::string& key,
      PartitionId p, const LocalCopy& copy) const;
  // A stale read of a point read whose owner cannot answer: the standby replica here, else
  // the freshest live one elsewhere within the bound. False if there is none to try.
  template <typename Response>
  bool TryStandby(std::shared_ptr<PointRead<Response>> read) const;
  // Waits for the routing table to change or for a backoff; false if the deadline is too close
  // or the caller has gone.
  bool Backoff(uint64_t seen_version, int attempt, absl::Time deadline,
               const grpc::CallbackServerContext* parent) const;

  void RecordPeerCall(absl::string_view peer, const grpc::Status& status) const;

  const LocalStores& local_;
  const ClusterView cluster_;
  // Places subscriptions' partitions that are waiting for an owner (a thread, on first use).
  const std::unique_ptr<SubscriptionPlacer> placer_ = std::make_unique<SubscriptionPlacer>();
  // Null without peers or with coalescing off.
  const std::unique_ptr<ForwardCoalescer> coalescer_;
  const std::shared_ptr<const bool> live_reads_ = std::make_shared<const bool>(true);
};

}  // namespace kiq::router
