#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiq::node {

// Where the standby replicas of a partition live. Every node computes the same answer from the
// same members: the `replicas` nodes other than the owner, starting with the one a range split
// of the partitions over those nodes (ordered by node id) gives the partition to, then the
// next ones in that order. So the replicas of one owner's partitions spread evenly over the
// other nodes (each of which can then take its share over warm), and with two nodes the
// survivor always holds the dead node's partitions warm.
//
// `live` are the node ids of the live members (any order; the owner among them or not);
// the answer has min(replicas, |live without owner|) ids.
std::vector<std::string> StandbyNodes(int32_t partition, int32_t num_partitions,
                                      const std::string& owner, std::vector<std::string> live,
                                      int32_t replicas);

}  // namespace kiq::node
