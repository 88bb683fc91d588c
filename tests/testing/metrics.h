#pragma once

#include <string>
#include <vector>

namespace kiq::testing {

// The Prometheus text exposition of a node's GET /metrics ("" if it cannot be read).
std::string ScrapeMetrics(int http_port);

// Sums the samples of `name` whose label text contains every string of `labels`
// (e.g. {"store=\"score\""}).
double MetricSum(const std::string& exposition, const std::string& name,
                 const std::vector<std::string>& labels = {});

}  // namespace kiq::testing
