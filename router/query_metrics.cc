#include "router/query_metrics.h"

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
                      .Register(registry)) {}

void QueryMetrics::RecordQuery(absl::string_view method, absl::string_view store,
                               absl::string_view route, absl::string_view code,
                               absl::Duration latency) {
  queries_
      .Add({{"method", std::string(method)},
            {"store", std::string(store)},
            {"route", std::string(route)},
            {"code", std::string(code)}})
      .Increment();
  static const auto* const kBuckets = new prometheus::Histogram::BucketBoundaries(LatencyBuckets());
  latency_.Add({{"method", std::string(method)}, {"route", std::string(route)}}, *kBuckets)
      .Observe(absl::ToDoubleSeconds(latency));
}

void QueryMetrics::RecordPeerCall(absl::string_view peer, absl::string_view outcome) {
  peer_calls_.Add({{"peer", std::string(peer)}, {"outcome", std::string(outcome)}}).Increment();
}

}  // namespace kiq::router
