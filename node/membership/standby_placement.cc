#include "node/membership/standby_placement.h"

#include <algorithm>

namespace kiq::node {

std::vector<std::string> StandbyNodes(int32_t partition, int32_t num_partitions,
                                      const std::string& owner, std::vector<std::string> live,
                                      int32_t replicas) {
  std::sort(live.begin(), live.end());
  live.erase(std::unique(live.begin(), live.end()), live.end());
  live.erase(std::remove(live.begin(), live.end(), owner), live.end());
  std::vector<std::string> out;
  const int32_t members = static_cast<int32_t>(live.size());
  if (members == 0 || replicas <= 0 || partition < 0 || partition >= num_partitions) return out;
  // A range split: member k gets a contiguous run of per (+1 for the first extra ones).
  const int32_t per = num_partitions / members;
  const int32_t extra = num_partitions % members;
  int32_t first = 0;
  for (int32_t k = 0, start = 0; k < members; ++k) {
    const int32_t count = per + (k < extra ? 1 : 0);
    if (partition < start + count) {
      first = k;
      break;
    }
    start += count;
  }
  for (int32_t i = 0; i < std::min(replicas, members); ++i) {
    out.push_back(live[(first + i) % members]);
  }
  return out;
}

}  // namespace kiq::node
