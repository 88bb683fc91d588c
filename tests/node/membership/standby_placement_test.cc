#include "node/membership/standby_placement.h"

#include <map>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace kiq::node {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(StandbyPlacementTest, NeverTheOwnerAndAtMostTheOtherNodes) {
  const std::vector<std::string> live = {"n3", "n1", "n2"};
  for (int32_t p = 0; p < 6; ++p) {
    for (const std::string& owner : live) {
      const std::vector<std::string> one = StandbyNodes(p, 6, owner, live, 1);
      ASSERT_EQ(one.size(), 1u);
      EXPECT_NE(one[0], owner);
      const std::vector<std::string> all = StandbyNodes(p, 6, owner, live, 3);
      EXPECT_EQ(all.size(), 2u);  // only two nodes are not the owner
      EXPECT_NE(all[0], all[1]);
      for (const std::string& n : all) EXPECT_NE(n, owner);
    }
  }
  EXPECT_THAT(StandbyNodes(0, 6, "n1", {"n1"}, 1), IsEmpty());
  EXPECT_THAT(StandbyNodes(0, 6, "n1", live, 0), IsEmpty());
  EXPECT_THAT(StandbyNodes(6, 6, "n1", live, 1), IsEmpty());
}

// The first replica is given by a range split over the other nodes: without n1, n2 holds
// partitions 0-2 and n3 3-5 (ordered by id).
TEST(StandbyPlacementTest, TheFirstReplicaFollowsARangeSplitOverTheOtherNodes) {
  const std::vector<std::string> live = {"n1", "n2", "n3"};
  EXPECT_THAT(StandbyNodes(0, 6, "n1", live, 1), ElementsAre("n2"));
  EXPECT_THAT(StandbyNodes(2, 6, "n1", live, 1), ElementsAre("n2"));
  EXPECT_THAT(StandbyNodes(3, 6, "n1", live, 1), ElementsAre("n3"));
  EXPECT_THAT(StandbyNodes(5, 6, "n1", live, 2), ElementsAre("n3", "n2"));
  // 7 partitions over 2 members: 4 and 3.
  EXPECT_THAT(StandbyNodes(3, 7, "n2", live, 1), ElementsAre("n1"));
  EXPECT_THAT(StandbyNodes(4, 7, "n2", live, 1), ElementsAre("n3"));
}

TEST(StandbyPlacementTest, ReplicasOfOneOwnerSpreadOverTheOthers) {
  const std::vector<std::string> live = {"a", "b", "c", "d"};
  std::map<std::string, int> per_node;
  for (int32_t p = 0; p < 12; ++p) {
    for (const std::string& n : StandbyNodes(p, 12, "a", live, 1)) ++per_node[n];
  }
  EXPECT_EQ(per_node["b"], 4);
  EXPECT_EQ(per_node["c"], 4);
  EXPECT_EQ(per_node["d"], 4);
}

TEST(StandbyPlacementTest, EveryNodeComputesTheSameAnswer) {
  EXPECT_EQ(StandbyNodes(4, 6, "n2", {"n3", "n2", "n1", "n1"}, 2),
            StandbyNodes(4, 6, "n2", {"n1", "n2", "n3"}, 2));
}

}  // namespace
}  // namespace kiq::node
