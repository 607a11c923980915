#include "decode_speed.hpp"

#include <gtest/gtest.h>

namespace kvstream::scheduler {
namespace {

TEST(DecodeSpeed, PriorsUntilADecodeIsTimed) {
  const DecodeSpeed d(3, 1000, {250});
  EXPECT_DOUBLE_EQ(d.rate(0), 250);
  EXPECT_DOUBLE_EQ(d.rate(1), 1000);  // no prior of its own: the fallback
  EXPECT_DOUBLE_EQ(d.rate(2, /*slowest=*/true), 1000);
  Rates r;
  d.fill(r);
  EXPECT_EQ(r.level_decode_bytes_per_s, (std::vector<double>{250, 1000, 1000}));
  EXPECT_DOUBLE_EQ(r.decode_bytes_per_s, 750);
}

TEST(DecodeSpeed, EveryTimedDecodeScalesEveryPrior) {
  DecodeSpeed d(3, 1000, {250});
  d.add(1, 1000, 2.0);  // half its prior: the machine is busier than when the priors were taken
  EXPECT_DOUBLE_EQ(d.rate(1), 500);
  EXPECT_DOUBLE_EQ(d.rate(2), 500);
  EXPECT_DOUBLE_EQ(d.rate(0), 125);
  d.add(1, 1000, 1.0);  // a running mean of the ratio: 0.7 of the old, 0.3 of the new
  EXPECT_DOUBLE_EQ(d.rate(1), 650);
  EXPECT_DOUBLE_EQ(d.rate(0), 250 * 0.65);
  EXPECT_DOUBLE_EQ(d.rate(0, /*slowest=*/true), 125);
  EXPECT_DOUBLE_EQ(d.rate(1, /*slowest=*/true), 500);
  d.add(0, 250, 1.0);  // level 0 at its prior: the ratio moves to 0.7 * 0.65 + 0.3
  EXPECT_DOUBLE_EQ(d.rate(0), 250 * (0.7 * 0.65 + 0.3));
  EXPECT_DOUBLE_EQ(d.rate(2), 1000 * (0.7 * 0.65 + 0.3));
}

TEST(DecodeSpeed, ALevelWithoutAPriorOfItsOwnUsesItsTimedDecodes) {
  DecodeSpeed d(2, 1000);  // one speed for every level, as `kvstream fetch --decode-gbps G`
  d.add(1, 1000, 1.0);
  d.add(0, 400, 1.0);
  EXPECT_DOUBLE_EQ(d.rate(0), 400);
  EXPECT_DOUBLE_EQ(d.rate(1), 1000);
  // With priors per level, their shape holds and the pooled ratio scales them.
  DecodeSpeed e(2, 0, {400, 1000});
  e.add(1, 500, 1.0);
  EXPECT_DOUBLE_EQ(e.rate(0), 200);
}

// A verbatim level 0 is a copy: ten times the lossy levels' prior. A slow copy (cold caches)
// must not make the planner think the decoder slowed down, nor a busy decoder the copy.
TEST(DecodeSpeed, ACopyLevelNeitherMovesNorFollowsTheDecodersRatio) {
  DecodeSpeed d(3, 0, {10000, 1000, 1000});
  d.add(0, 1000, 0.5);  // the copy at a fifth of its prior
  EXPECT_DOUBLE_EQ(d.rate(1), 1000);
  EXPECT_DOUBLE_EQ(d.rate(0), 2000);  // its own timed speed
  d.add(1, 1000, 2.0);                // the decoder at half its prior
  EXPECT_DOUBLE_EQ(d.rate(2), 500);
  EXPECT_DOUBLE_EQ(d.rate(0), 2000);
  DecodeSpeed fresh(3, 0, {10000, 1000, 1000});
  fresh.add(1, 1000, 2.0);
  EXPECT_DOUBLE_EQ(fresh.rate(0), 10000);  // untimed: its prior, unscaled
  // Four times the slowest prior is still a decoder (split16's level 0 beside fast lossy ones).
  DecodeSpeed close(2, 0, {4000, 1000});
  close.add(1, 1000, 2.0);
  EXPECT_DOUBLE_EQ(close.rate(0), 2000);
}

TEST(DecodeSpeed, WithoutPriorsDecodingIsFreeUntilTimed) {
  DecodeSpeed d(2, 0);
  EXPECT_EQ(d.rate(0), 0);
  Rates r;
  d.fill(r);
  EXPECT_EQ(r.decode_s({1, 1000, {10, 10}}, 1), 0);
  d.add(0, 1000, 0);  // no duration: ignored
  d.add(7, 1000, 1);  // no such level: ignored
  EXPECT_EQ(d.rate(1), 0);
  d.add(0, 1000, 0.5);
  EXPECT_DOUBLE_EQ(d.rate(0), 2000);
  EXPECT_DOUBLE_EQ(d.rate(1), 2000);  // what the timed levels showed
  d.fill(r);
  EXPECT_DOUBLE_EQ(r.decode_s({1, 1000, {10, 10}}, 1), 0.5);
}

}  // namespace
}  // namespace kvstream::scheduler
