#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kiq::node {

// Where the standby replicas of a partition live. Every node computes the same answer from the
// same members: the `replicas` nodes other than the owner, starting with the one the range
// assignor would give the partition to if its owner left (members ordered by node id, as a
// broker orders static members), then the next ones in that order. So when an owner dies, the
// node that gains a partition is usually the one already holding it warm, and the replicas of
// one owner's partitions spread over the others.
//
// `live` are the node ids of the live members (any order; the owner among them or not);
// the answer has min(replicas, |live without owner|) ids.
std::vector<std::string> StandbyNodes(int32_t partition, int32_t num_partitions,
                                      const std::string& owner, std::vector<std::string> live,
                                      int32_t replicas);

}  // namespace kiq::node
