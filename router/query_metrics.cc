#include "router/query_metrics.h"

#include "absl/strings/str_cat.h"

namespace kiq::router {
namespace {

// 100 µs .. ~3.3 s, doubling: the range between a local point read and a deadline.
prometheus::Histogram::BucketBoundaries LatencyBuckets() {
  prometheus::Histogram::BucketBoundaries bounds;
  for (double b = 0.0001; b < 4; b *= 2) bounds.push_back(b);
  return bounds;
}

}  // namespace

QueryMetrics::QueryMetrics(prometheus::Registry& registry)
    : queries_(prometheus::BuildCounter()
                   .Name("kiq_queries_total")
                   .Help("Queries answered, by method, store, route and gRPC code.")
                   .Register(registry)),
      latency_(prometheus::BuildHistogram()
                   .Name("kiq_query_duration_seconds")
                   .Help("Query latency, by method and route.")
                   .Register(registry)),
      peer_calls_(prometheus::BuildCounter()
                      .Name("kiq_forwarded_calls_total")
                      .Help("Calls to peers (forwarded Get, partition scans), by peer and outcome.")
                      .Register(registry)),
      coalesced_calls_(prometheus::BuildCounter()
                           .Name("kiq_coalesced_forwards_total")
                           .Help("Coalesced forwards: GetMany calls to a peer that carried "
                                 "concurrent forwarded Gets, by peer.")
                           .Register(registry)),
      coalesced_keys_(prometheus::BuildCounter()
                          .Name("kiq_coalesced_forward_keys_total")
                          .Help("Forwarded Gets carried by coalesced forwards, by peer (divided "
                                "by kiq_coalesced_forwards_total: keys per call).")
                          .Register(registry)),
      subscription_moves_(prometheus::BuildCounter()
                              .Name("kiq_subscription_moves_total")
                              .Help("Subscriptions that followed partitions to a new owner (the "
                                    "source of some partitions ended and they were placed "
                                    "again), by store.")
                              .Register(registry)),
      standby_reads_(prometheus::BuildCounter()
                         .Name("kiq_standby_reads_total")
                         .Help("Partition reads this node answered from a standby replica "
                               "(stale reads: allow_stale), by store.")
                         .Register(registry)) {}

void QueryMetrics::RecordQuery(absl::string_view method, absl::string_view store,
                               absl::string_view route, absl::string_view code,
                               absl::Duration latency) {
  const std::string latency_key = absl::StrCat(method, absl::string_view("\0", 1), route);
  const std::string counter_key = absl::StrCat(latency_key, absl::string_view("\0", 1), store,
                                               absl::string_view("\0", 1), code);
  prometheus::Counter* counter;
  prometheus::Histogram* histogram;
  {
    absl::MutexLock lock(&mu_);
    prometheus::Counter*& c = query_counters_[counter_key];
    if (c == nullptr) {
      c = &queries_.Add({{"method", std::string(method)},
                         {"store", std::string(store)},
                         {"route", std::string(route)},
                         {"code", std::string(code)}});
    }
    counter = c;
    prometheus::Histogram*& h = latency_histograms_[latency_key];
    if (h == nullptr) {
      h = &latency_.Add({{"method", std::string(method)}, {"route", std::string(route)}},
                        LatencyBuckets());
    }
    histogram = h;
  }
  counter->Increment();
  histogram->Observe(absl::ToDoubleSeconds(latency));
}

void QueryMetrics::RecordPeerCall(absl::string_view peer, absl::string_view outcome) {
  peer_calls_.Add({{"peer", std::string(peer)}, {"outcome", std::string(outcome)}}).Increment();
}

void QueryMetrics::RecordCoalescedForward(absl::string_view peer, int64_t keys) {
  coalesced_calls_.Add({{"peer", std::string(peer)}}).Increment();
  coalesced_keys_.Add({{"peer", std::string(peer)}}).Increment(static_cast<double>(keys));
}

void QueryMetrics::StandbyRead(absl::string_view store) {
  standby_reads_.Add({{"store", std::string(store)}}).Increment();
}

void QueryMetrics::RecordSubscriptionMove(absl::string_view store) {
  subscription_moves_.Add({{"store", std::string(store)}}).Increment();
}

}  // namespace kiq::router
