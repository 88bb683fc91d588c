#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>

#include "router/http_server.h"
#include "router/routing_table.h"

namespace kiq::router {

// kiq-router's own health: /readyz (ready once the routing table has a live, ACTIVE owner for
// every partition, so that every store's every key can be answered) and the gauges of its
// /metrics besides the query metrics (kiq_queries_total, kiq_forwarded_calls_total,
// kiq_subscription_moves_total for fan-in): routing-table members, partitions with a live
// ACTIVE owner, partitions in all, seconds since the table last changed, Kafka reachable.
// Thread-safe; `table` and `registry` outlive it.
class RouterProbe {
 public:
  RouterProbe(const RoutingTable& table, int32_t num_partitions,
              std::function<bool()> kafka_connected, prometheus::Registry& registry);

  // 200 {"ready":true,...} or 503 {"ready":false,"reason":"no live node owns partition 3"}.
  HttpServer::Reply Readiness() const;
  // Updates the gauges, then serializes the whole registry (Prometheus text format).
  HttpServer::Reply Metrics() const;

 private:
  const RoutingTable& table_;
  const int32_t num_partitions_;
  const std::function<bool()> kafka_connected_;
  prometheus::Registry& registry_;
  prometheus::Gauge& members_;
  prometheus::Gauge& partitions_owned_;
  prometheus::Gauge& partitions_;
  prometheus::Gauge& table_age_;
  prometheus::Gauge& kafka_connected_gauge_;
};

// {"ready":<ready>,"reason":"<reason>"} with 200 or 503, the reason JSON-escaped.
HttpServer::Reply ReadinessReply(bool ready, absl::string_view reason);

}  // namespace kiq::router
