#include "node/store/standby_partitions.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/status_matchers.h"

namespace kiq::node {
namespace {

using ::testing::HasSubstr;

TEST(StandbyPartitionsTest, ServedOnlyOnceCaughtUpAndWithinTheBound) {
  StandbyPartitions standby;
  EXPECT_THAT(standby.CheckReadable("s", PartitionId(1), 0).status().message(),
              HasSubstr("no standby replica of partition 1"));
  standby.Add(PartitionId(1));
  EXPECT_THAT(standby.CheckReadable("s", PartitionId(1), 0).status().message(),
              HasSubstr("still being built"));
  standby.MarkServing(PartitionId(1));
  standby.SetLag(PartitionId(1), "s", 40);
  standby.SetLag(PartitionId(1), "t", 3);
  absl::StatusOr<int64_t> lag = standby.CheckReadable("s", PartitionId(1), 0);
  ASSERT_TRUE(lag.ok()) << lag.status();
  EXPECT_EQ(*lag, 40);
  EXPECT_TRUE(absl::IsUnavailable(standby.CheckReadable("s", PartitionId(1), 10).status()));
  EXPECT_EQ(*standby.CheckReadable("t", PartitionId(1), 10), 3);
  // The partition's lag is its worst store's.
  ASSERT_EQ(standby.Snapshot().size(), 1u);
  EXPECT_EQ(standby.Snapshot()[0].lag, 40);
  EXPECT_TRUE(standby.Snapshot()[0].serving);
  standby.Remove(PartitionId(1));
  EXPECT_TRUE(standby.Snapshot().empty());
  EXPECT_TRUE(absl::IsUnavailable(standby.CheckReadable("s", PartitionId(1), 0).status()));
}

}  // namespace
}  // namespace kiq::node
