// Which chunk is fetched again at a better level once every chunk is decided, on the toy context
// (100 tokens, 1000 raw bytes a chunk; 800, 400, 200 bytes at levels 0, 1, 2, which lose 0, 1,
// 4).
#include "upgrade.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "toy_context.hpp"

namespace kvstream::scheduler {
namespace {

using testing::toy_context;

UpgradeInput input(const ContextCosts& ctx, const std::vector<Choice>& held, double deadline) {
  UpgradeInput in;
  in.ctx = &ctx;
  in.held = held;
  in.deadline = deadline;
  in.rates.link_bytes_per_s = 100;
  in.overrun = 0;  // predictions taken as they are, but in OverrunsAreAllowedFor
  return in;
}

const Choice L0 = Choice::fetch(0), L1 = Choice::fetch(1), L2 = Choice::fetch(2);

TEST(Upgrade, TheProbeGetsTheBestLevelThatIsReadyInTime) {
  const ContextCosts ctx = toy_context();
  const std::vector<Choice> held{L2, L1, L1};
  // Level 0 of any chunk lands at 8 s, level 1 at 4 s.
  const auto r = choose_upgrade(input(ctx, held, 5));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->chunk, 0u);
  EXPECT_EQ(r->level, 1u);
  EXPECT_DOUBLE_EQ(r->ready, 4);
  // With time for level 0, chunk 0 saves the most (4 against 1 for the others).
  const auto r0 = choose_upgrade(input(ctx, held, 9));
  ASSERT_TRUE(r0.has_value());
  EXPECT_EQ(r0->chunk, 0u);
  EXPECT_EQ(r0->level, 0u);
}

TEST(Upgrade, OverrunsAreAllowedFor) {
  const ContextCosts ctx = toy_context();
  const std::vector<Choice> held{L2, L1, L1};
  // Level 1 of chunk 0, asked at 1 s, lands at 5 s: by 7 s if it takes half as long again.
  UpgradeInput in = input(ctx, held, 6.9);
  in.now = 1;
  in.overrun = 0.5;
  EXPECT_FALSE(choose_upgrade(in).has_value());
  in.deadline = 7;
  const auto r = choose_upgrade(in);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->level, 1u);
  EXPECT_DOUBLE_EQ(r->ready, 5);
  // Level 0 lands at 9 s, by 13 with the overrun.
  in.deadline = 12.9;
  EXPECT_EQ(choose_upgrade(in)->level, 1u);
  in.deadline = 13;
  EXPECT_EQ(choose_upgrade(in)->level, 0u);
  // The default overrun is the fetch's.
  EXPECT_DOUBLE_EQ(UpgradeInput{}.overrun, kUpgradeOverrun);
}

TEST(Upgrade, NothingWhenNoUpgradeIsReadyInTime) {
  const ContextCosts ctx = toy_context();
  const std::vector<Choice> held{L2, L1, L1};
  EXPECT_FALSE(choose_upgrade(input(ctx, held, 3.9)).has_value());
  // The link is busy with what is in flight until 2 s: level 1 would land at 6 s.
  UpgradeInput in = input(ctx, held, 5);
  in.link_free = 2;
  EXPECT_FALSE(choose_upgrade(in).has_value());
  in.now = 1.5;
  in.link_free = 0;  // free since before now: the transfer starts now
  EXPECT_FALSE(choose_upgrade(in).has_value());
  in.now = 0;
  in.rates.chunk_overhead_s = 1.5;
  EXPECT_FALSE(choose_upgrade(in).has_value());
}

TEST(Upgrade, DecodingCountsAfterTheLandingAndAfterTheDecoderIsFree) {
  const ContextCosts ctx = toy_context();
  const std::vector<Choice> held{L2, L1, L1};
  UpgradeInput in = input(ctx, held, 5.9);
  in.rates.decode_bytes_per_s = 500;  // 2 s a chunk: level 1 lands at 4 s, is ready at 6 s
  EXPECT_FALSE(choose_upgrade(in).has_value());
  in.deadline = 6;
  ASSERT_TRUE(choose_upgrade(in).has_value());
  EXPECT_DOUBLE_EQ(choose_upgrade(in)->ready, 6);
  in.decode_free = 5;  // the decoder is busy past the landing
  EXPECT_FALSE(choose_upgrade(in).has_value());
  in.deadline = 7;
  ASSERT_TRUE(choose_upgrade(in).has_value());
  EXPECT_DOUBLE_EQ(choose_upgrade(in)->ready, 7);
}

TEST(Upgrade, EachLevelDecodesAtItsOwnSpeed) {
  const ContextCosts ctx = toy_context();
  const std::vector<Choice> held{L2, L1, L1};
  // Level 0 of chunk 0 lands at 8 s and, decoding in 1 s, is ready by 9.
  UpgradeInput in = input(ctx, held, 9);
  in.rates.decode_bytes_per_s = 1000;
  ASSERT_TRUE(choose_upgrade(in).has_value());
  EXPECT_EQ(choose_upgrade(in)->level, 0u);
  // Decoding level 0 takes 4 s: only level 1 (ready at 5 s) is in time.
  in.rates.level_decode_bytes_per_s = {250};
  const auto r = choose_upgrade(in);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->chunk, 0u);
  EXPECT_EQ(r->level, 1u);
  EXPECT_DOUBLE_EQ(r->ready, 5);
}

TEST(Upgrade, NoChunkBeforeARecomputeIsFetchedAgain) {
  const ContextCosts ctx = toy_context();
  const std::vector<Choice> held{L2, Choice::recomputed(), L1};
  const auto r = choose_upgrade(input(ctx, held, 9));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->chunk, 2u);
  EXPECT_EQ(r->level, 0u);
  const std::vector<Choice> tail{L2, L2, Choice::recomputed()};
  EXPECT_FALSE(choose_upgrade(input(ctx, tail, 9)).has_value());
}

TEST(Upgrade, TiesGoToTheEarlierChunkAndNothingBeatsTheBestLevel) {
  const ContextCosts ctx = toy_context();
  const std::vector<Choice> same{L1, L1, L1};
  const auto r = choose_upgrade(input(ctx, same, 9));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->chunk, 0u);
  const std::vector<Choice> best{L0, L0, L0};
  EXPECT_FALSE(choose_upgrade(input(ctx, best, 100)).has_value());
}

TEST(Upgrade, NothingWithoutARateOrWithAHeldListOfAnotherLength) {
  const ContextCosts ctx = toy_context();
  const std::vector<Choice> held{L2, L1, L1};
  UpgradeInput in = input(ctx, held, 100);
  in.rates.link_bytes_per_s = 0;
  EXPECT_FALSE(choose_upgrade(in).has_value());
  const std::vector<Choice> short_list{L2, L1};
  EXPECT_FALSE(choose_upgrade(input(ctx, short_list, 100)).has_value());
}

TEST(Upgrade, IsPlannedAtTheSlowestRecentTransferWhenItIsBelowTheBound) {
  GoodputEstimator g;
  for (int i = 0; i < 4; ++i)  // 100 B/s, one at 50 B/s
    g.add({double(i), double(i + 1), i == 2 ? 50u : 100u});
  const Estimate e = g.estimate(4);
  EXPECT_DOUBLE_EQ(upgrade_rate(e), 50);
  GoodputEstimator steady;
  for (int i = 0; i < 4; ++i)
    steady.add({double(i), double(i + 1), 100});
  const Estimate s = steady.estimate(4);
  EXPECT_DOUBLE_EQ(upgrade_rate(s), s.bound(1));  // 95: the bound's band below the slowest
}

}  // namespace
}  // namespace kvstream::scheduler
