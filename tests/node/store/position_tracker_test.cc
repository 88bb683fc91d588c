#include "node/store/position_tracker.h"

#include <thread>

#include <gtest/gtest.h>

namespace kiq::node {
namespace {

TEST(PositionTrackerTest, OneCommitBracketMakesTheSequenceChange) {
  PositionTracker positions;
  const uint64_t before = positions.AwaitNoCommit(absl::ZeroDuration());
  EXPECT_FALSE(PositionTracker::Committing(before));
  positions.BeginCommit();
  EXPECT_TRUE(PositionTracker::Committing(positions.CommitSequence()));
  positions.EndCommit();
  const uint64_t after = positions.CommitSequence();
  EXPECT_FALSE(PositionTracker::Committing(after));
  EXPECT_NE(after, before);
}

// Two ingestion threads commit at once: a reader must see a commit under way until both have
// ended, and never the same sequence across either bracket.
TEST(PositionTrackerTest, OverlappingCommitsOfTwoThreadsAreBothSeen) {
  PositionTracker positions;
  const uint64_t idle = positions.CommitSequence();
  positions.BeginCommit();  // thread A
  const uint64_t a_only = positions.CommitSequence();
  positions.BeginCommit();  // thread B
  positions.EndCommit();    // A ends while B commits
  const uint64_t b_only = positions.CommitSequence();
  EXPECT_TRUE(PositionTracker::Committing(a_only));
  EXPECT_TRUE(PositionTracker::Committing(b_only));
  EXPECT_NE(a_only, b_only);
  positions.EndCommit();
  const uint64_t done = positions.CommitSequence();
  EXPECT_FALSE(PositionTracker::Committing(done));
  EXPECT_NE(done, idle);
}

TEST(PositionTrackerTest, AwaitNoCommitWaitsForEveryCommitter) {
  PositionTracker positions;
  positions.BeginCommit();
  positions.BeginCommit();
  std::thread ender([&positions] {
    positions.EndCommit();
    positions.EndCommit();
  });
  const uint64_t seen = positions.AwaitNoCommit(absl::Seconds(30));
  ender.join();
  EXPECT_FALSE(PositionTracker::Committing(seen));
  // A commit that never ends: the wait gives up with the sequence still showing it.
  positions.BeginCommit();
  EXPECT_TRUE(PositionTracker::Committing(positions.AwaitNoCommit(absl::Milliseconds(5))));
  positions.EndCommit();
}

}  // namespace
}  // namespace kiq::node
