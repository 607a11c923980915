#include "estimator.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace kvstream::scheduler {
namespace {

TEST(Estimator, KnowsNothingUntilSeededOrFed) {
  GoodputEstimator e;
  EXPECT_EQ(e.estimate(0).bytes_per_s, 0);
  e.seed(1000);
  const Estimate s = e.estimate(0);
  EXPECT_EQ(s.bytes_per_s, 1000);
  EXPECT_DOUBLE_EQ(s.low_bytes_per_s, 100);  // a seed can be off by 10x
  EXPECT_EQ(s.samples, 0u);
  EXPECT_DOUBLE_EQ(s.bound(100), 100);  // and that does not average out over many transfers
  // A rate someone configured is trusted like one transfer.
  e.seed(1000, GoodputEstimator::Seed::configured);
  EXPECT_DOUBLE_EQ(e.estimate(0).low_bytes_per_s, 700);
  EXPECT_DOUBLE_EQ(e.estimate(0).bound(100), 700);
}

TEST(Estimator, ChargesOverlappingTransfersOnlyTheLinkTimeTheyAdd) {
  GoodputEstimator e;
  // Three 100-byte chunks in flight together; they land 1 s apart: 100 B/s, not 100 / 2 s.
  e.add({0, 1, 100});
  e.add({0.5, 2, 100});
  e.add({1, 3, 100});
  const Estimate s = e.estimate(3);
  EXPECT_DOUBLE_EQ(s.bytes_per_s, 100);
  EXPECT_DOUBLE_EQ(s.low_bytes_per_s, 95);  // the smallest band
  EXPECT_EQ(s.samples, 2u);                 // the first one is left out
  EXPECT_DOUBLE_EQ(s.bound(4), 97.5);       // four more vary half as much as one
}

TEST(Estimator, ForgetsASlowFirstChunkOnceTwoMoreLand) {
  GoodputEstimator e;
  e.add({0, 10, 100});  // paid for connection set-up
  e.add({10, 11, 100});
  EXPECT_DOUBLE_EQ(e.estimate(11).bytes_per_s, 200.0 / 11);  // too little to tell yet
  e.add({11, 12, 100});
  EXPECT_DOUBLE_EQ(e.estimate(12).bytes_per_s, 100);
}

TEST(Estimator, IgnoresAnImplausiblyFastChunkButNotASlowOne) {
  GoodputEstimator e;
  for (int i = 0; i < 5; ++i)
    e.add({double(i), double(i + 1), 100});
  e.add({5, 5.1, 100});  // 1000 B/s: filled a buffer, not the link
  EXPECT_DOUBLE_EQ(e.estimate(6).bytes_per_s, 100);
  e.add({6, 16, 100});  // 10 B/s: the link slowed down; it counts, and the bound follows it
  const Estimate s = e.estimate(16);
  EXPECT_DOUBLE_EQ(s.bytes_per_s, 500.0 / 14);
  EXPECT_DOUBLE_EQ(s.low_bytes_per_s, 5);  // the latest rate, less the widest band
  EXPECT_DOUBLE_EQ(s.slowest_bytes_per_s, 10);
}

TEST(Estimator, KnowsTheSlowestRecentTransferItCounts) {
  GoodputEstimator e;
  EXPECT_EQ(e.estimate(0).slowest_bytes_per_s, 0);
  e.seed(1000);
  EXPECT_EQ(e.estimate(0).slowest_bytes_per_s, 0);  // a seed is no transfer
  e.add({0, 10, 100});                              // the first: left out once two more land
  e.add({10, 11, 100});
  e.add({11, 13, 100});
  EXPECT_DOUBLE_EQ(e.estimate(13).slowest_bytes_per_s, 50);
  for (int i = 0; i < 8; ++i)  // the window moves past it
    e.add({13.0 + i, 14.0 + i, 100});
  EXPECT_DOUBLE_EQ(e.estimate(21).slowest_bytes_per_s, 100);
}

TEST(Estimator, SpreadWidensTheBand) {
  GoodputEstimator e;
  e.add({0, 1, 100});
  e.add({1, 2, 100});
  e.add({2, 4, 100});  // 50 B/s
  e.add({4, 5, 100});  // 100 B/s
  const Estimate s = e.estimate(5);
  // Kept: 100, 50, 100 B/s over 4 s: 75 B/s; deviation sqrt((625+625+625)/3) = 25: a band of 1/3.
  EXPECT_DOUBLE_EQ(s.bytes_per_s, 75);
  EXPECT_NEAR(s.low_bytes_per_s, 50, 1e-9);
}

TEST(Estimator, AStalledTransferPullsTheBoundDown) {
  GoodputEstimator e;
  for (int i = 0; i < 4; ++i)
    e.add({double(i), double(i + 1), 100});
  const std::vector<Outstanding> waiting{{4, 100}};
  EXPECT_DOUBLE_EQ(e.estimate(5, waiting).low_bytes_per_s, 95);  // on time so far
  // 100 bytes not through after 7 s: the link gives at most 100/7 B/s.
  const Estimate s = e.estimate(11, waiting);
  EXPECT_DOUBLE_EQ(s.low_bytes_per_s, 100.0 / 7);
  EXPECT_DOUBLE_EQ(s.bytes_per_s, 100.0 / 7);
}

TEST(Estimator, IgnoresEmptyAndTimelessTransfers) {
  GoodputEstimator e;
  e.add({0, 1, 0});
  e.add({1, 1, 100});
  EXPECT_EQ(e.estimate(1).samples, 0u);
  EXPECT_EQ(e.estimate(1).bytes_per_s, 0);
}

TEST(Estimator, KeepsOnlyTheRecentWindow) {
  GoodputEstimator e(GoodputEstimator::Options{.window = 2});
  e.add({0, 10, 100});  // 10 B/s
  e.add({10, 11, 100});
  e.add({11, 12, 100});
  EXPECT_DOUBLE_EQ(e.estimate(12).bytes_per_s, 100);
}

}  // namespace
}  // namespace kvstream::scheduler
