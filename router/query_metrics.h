#pragma once

#include <cstdint>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace kiq::router {

// The query path's metrics: families built once on a registry that outlives this object;
// labels bounded (method, store, route, code, peer, outcome — never a key). Thread-safe
// (prometheus-cpp metrics are).
class QueryMetrics {
 public:
  explicit QueryMetrics(prometheus::Registry& registry);

  // route: "local" (answered from this node's partitions), "forwarded" (from the owner),
  // "scatter" (from the owners of every partition), "batch" (GetMany: from here and from each
  // owner, one forward per owner).
  void RecordQuery(absl::string_view method, absl::string_view store, absl::string_view route,
                   absl::string_view code, absl::Duration latency);
  // outcome: OK, NOT_OWNER, UNAVAILABLE or ERROR.
  void RecordPeerCall(absl::string_view peer, absl::string_view outcome);
  // Forward coalescing (router/forward_coalescer.h): one GetMany to `peer` carrying `keys`
  // (two or more) forwarded Gets.
  void RecordCoalescedForward(absl::string_view peer, int64_t keys);
  // A subscription lost the source of some partitions (they moved) and places them again.
  void RecordSubscriptionMove(absl::string_view store);
  // A partition read answered from a standby replica here.
  void StandbyRead(absl::string_view store);

 private:
  prometheus::Family<prometheus::Counter>& queries_;
  prometheus::Family<prometheus::Histogram>& latency_;
  prometheus::Family<prometheus::Counter>& peer_calls_;
  prometheus::Family<prometheus::Counter>& coalesced_calls_;
  prometheus::Family<prometheus::Counter>& coalesced_keys_;
  prometheus::Family<prometheus::Counter>& subscription_moves_;
  prometheus::Family<prometheus::Counter>& standby_reads_;

  // The metric of each label set, looked up once: prometheus-cpp's Family::Add builds a new
  // metric (for a histogram, its buckets) on every call before finding the existing one,
  // which showed up in Get profiles. Keys join the label values with '\0'.
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, prometheus::Counter*> query_counters_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, prometheus::Histogram*> latency_histograms_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kiq::router
