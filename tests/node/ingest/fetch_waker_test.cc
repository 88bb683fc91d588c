#include "node/ingest/fetch_waker.h"

#include <gtest/gtest.h>

namespace kiq::node {
namespace {

TEST(FetchWakerTest, WakesOnceEachTimeTheThresholdIsConsumed) {
  FetchWaker waker(1000);
  EXPECT_FALSE(waker.Consumed(400));
  EXPECT_FALSE(waker.Consumed(599));
  EXPECT_TRUE(waker.Consumed(1));  // 1000 bytes read: wake
  // The count starts again from zero, whatever the record that crossed the threshold overshot.
  EXPECT_FALSE(waker.Consumed(999));
  EXPECT_TRUE(waker.Consumed(1));
  EXPECT_EQ(waker.wakes(), 2);
}

TEST(FetchWakerTest, ARecordLargerThanTheThresholdWakesAtOnce) {
  FetchWaker waker(1000);
  EXPECT_TRUE(waker.Consumed(5000));
  EXPECT_FALSE(waker.Consumed(10));
  EXPECT_EQ(waker.wakes(), 1);
}

TEST(FetchWakerTest, ZeroThresholdNeverWakes) {
  FetchWaker waker(0);
  for (int i = 0; i < 100; ++i) EXPECT_FALSE(waker.Consumed(1 << 20));
  EXPECT_EQ(waker.wakes(), 0);
}

}  // namespace
}  // namespace kiq::node
