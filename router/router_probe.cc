#include "router/router_probe.h"

#include <prometheus/text_serializer.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"

namespace kiq::router {

namespace {

prometheus::Gauge& NewGauge(prometheus::Registry& registry, const std::string& name,
                            const std::string& help) {
  return prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

}  // namespace

HttpServer::Reply ReadinessReply(bool ready, absl::string_view reason) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> writer(out);
  writer.StartObject();
  writer.Key("ready");
  writer.Bool(ready);
  writer.Key("reason");
  writer.String(reason.data(), static_cast<rapidjson::SizeType>(reason.size()));
  writer.EndObject();
  return {ready ? 200 : 503, absl::StrCat(out.GetString(), "\n"), "application/json"};
}

RouterProbe::RouterProbe(const RoutingTable& table, int32_t num_partitions,
                         std::function<bool()> kafka_connected, prometheus::Registry& registry)
    : table_(table),
      num_partitions_(num_partitions),
      kafka_connected_(std::move(kafka_connected)),
      registry_(registry),
      members_(NewGauge(registry, "kiq_members", "Live nodes in the routing table.")),
      partitions_owned_(NewGauge(registry, "kiq_routing_table_partitions_owned",
                                 "Partitions with a live ACTIVE owner in the routing table.")),
      partitions_(NewGauge(registry, "kiq_routing_table_partitions",
                           "Partitions of the topology (every store has this many).")),
      table_age_(NewGauge(registry, "kiq_routing_table_age_seconds",
                          "Seconds since the routing table last changed (a lease renewal is a "
                          "change: nodes renew every 3 s).")),
      kafka_connected_gauge_(NewGauge(registry, "kiq_kafka_connected",
                                      "1 while a broker answers on the members topic.")) {
  partitions_.Set(num_partitions_);
}

HttpServer::Reply RouterProbe::Readiness() const {
  std::vector<std::string> missing;
  for (int32_t p = 0; p < num_partitions_; ++p) {
    // No node id is this router's: any live ACTIVE owner will do.
    absl::StatusOr<PartitionOwner> owner = table_.ActiveOwner(p, "");
    if (!owner.ok()) missing.emplace_back(owner.status().message());
  }
  if (!missing.empty()) {
    if (missing.size() > 8) {
      const size_t more = missing.size() - 8;
      missing.resize(8);
      missing.push_back(absl::StrCat("and ", more, " more"));
    }
    return ReadinessReply(false, absl::StrJoin(missing, "; "));
  }
  if (!kafka_connected_()) return ReadinessReply(true, "the members topic is unreadable");
  return ReadinessReply(true, "ready");
}

HttpServer::Reply RouterProbe::Metrics() const {
  members_.Set(static_cast<double>(table_.AllNodes().size()));
  int owned = 0;
  for (int32_t p = 0; p < num_partitions_; ++p) {
    if (table_.ActiveOwner(p, "").ok()) ++owned;
  }
  partitions_owned_.Set(owned);
  const absl::Time changed = table_.changed_at();
  table_age_.Set(changed == absl::InfinitePast() ? -1
                                                 : absl::ToDoubleSeconds(absl::Now() - changed));
  kafka_connected_gauge_.Set(kafka_connected_() ? 1 : 0);
  return {200, prometheus::TextSerializer().Serialize(registry_.Collect()),
          "text/plain; version=0.0.4; charset=utf-8"};
}

}  // namespace kiq::router
