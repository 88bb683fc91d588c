#include "tests/testing/metrics.h"

#include <httplib.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace kiq::testing {

std::string ScrapeMetrics(int http_port) {
  httplib::Client http("127.0.0.1", http_port);
  httplib::Result result = http.Get("/metrics");
  return result && result->status == 200 ? result->body : std::string();
}

double MetricSum(const std::string& exposition, const std::string& name,
                 const std::vector<std::string>& labels) {
  double total = 0;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    if (!absl::StartsWith(line, name) ||
        (line.size() > name.size() && line[name.size()] != '{' && line[name.size()] != ' ')) {
      continue;
    }
    bool match = true;
    for (const std::string& l : labels) match = match && absl::StrContains(line, l);
    if (!match) continue;
    double value = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &value)) total += value;
  }
  return total;
}

}  // namespace kiq::testing
