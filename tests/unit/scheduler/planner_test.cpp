#include "planner.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "toy_context.hpp"

namespace kvstream::scheduler {
namespace {

using testing::toy_context;

const Choice R = Choice::recomputed();
const Choice L0 = Choice::fetch(0), L1 = Choice::fetch(1), L2 = Choice::fetch(2);

TEST(Costs, CheckNamesTheInconsistentChunk) {
  ContextCosts ctx = toy_context();
  EXPECT_TRUE(ctx.check().is_ok());
  ctx.chunks[1].level_bytes.pop_back();
  const Status s = ctx.check();
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("chunk 1"), std::string::npos) << s.message();
  ctx = toy_context();
  ctx.level_loss[2] = -1;
  EXPECT_EQ(ctx.check().code(), Errc::invalid_argument);
}

TEST(Costs, FetchedChunksWaitForTheLinkAndDecodeInOrder) {
  const ContextCosts ctx = toy_context();
  const Rates rates{100, 1000, 100, 0, {}};  // 8 s for an L0 chunk on the link, 1 s to decode
  const std::vector<Choice> plan{L0, L0, L0};
  // Links land at 8, 16, 24; each decode follows its landing.
  EXPECT_DOUBLE_EQ(finish_time(ctx, rates, {0, 0}, 0, plan), 25);
  EXPECT_DOUBLE_EQ(plan_loss(ctx, 0, plan), 0);
}

TEST(Costs, ARecomputedHeadOverlapsTheFetchedRest) {
  const ContextCosts ctx = toy_context();
  const Rates rates{100, 1000, 100, 0, {}};
  const std::vector<Choice> plan{R, L1, L2};
  // Recompute 0..1 s; chunk 1 lands at 4, decoded by 5; chunk 2 lands at 6, decoded by 7.
  EXPECT_DOUBLE_EQ(finish_time(ctx, rates, {0, 0}, 0, plan), 7);
  EXPECT_DOUBLE_EQ(plan_loss(ctx, 0, plan), 5.0 / 3);
  // A per-request overhead adds to each fetched chunk's link time.
  EXPECT_DOUBLE_EQ(finish_time(ctx, {100, 1000, 100, 0.5, {}}, {0, 0}, 0, plan), 8);
}

PlanInput input(const ContextCosts& ctx, Rates rates, double deadline) {
  PlanInput in;
  in.ctx = &ctx;
  in.rates = rates;
  in.deadline = deadline;
  return in;
}

TEST(Planner, SpendsTheWholeBudgetOnEvenUpgrades) {
  const ContextCosts ctx = toy_context();
  // 1200 bytes fit in 12 s: every chunk goes 200 -> 400 bytes (3 loss saved per 200 bytes)
  // before any goes to 800 (1 per 400).
  const Plan p = plan_rest(input(ctx, {100, 0, 0, 0, {}}, 12));
  EXPECT_EQ(p.choices, (std::vector<Choice>{L1, L1, L1}));
  EXPECT_TRUE(p.meets_deadline);
  EXPECT_DOUBLE_EQ(p.finish, 12);
  EXPECT_DOUBLE_EQ(p.loss, 1);
}

TEST(Planner, MixesLevelsWhenTheBudgetFallsBetweenThem) {
  const ContextCosts ctx = toy_context();
  // 1000 bytes: two chunks at L1, one left at L2: the first, so that the chunks asked later
  // can give their upgrades back if the link slows down.
  const Plan p = plan_rest(input(ctx, {100, 0, 0, 0, {}}, 10));
  EXPECT_EQ(p.choices, (std::vector<Choice>{L2, L1, L1}));
  EXPECT_DOUBLE_EQ(p.finish, 10);
  EXPECT_DOUBLE_EQ(p.loss, 2);
}

TEST(Planner, WhenNothingFitsTakesTheFastestPlan) {
  const ContextCosts ctx = toy_context();
  const Plan p = plan_rest(input(ctx, {100, 0, 0, 0, {}}, 5));  // the smallest plan needs 6 s
  EXPECT_FALSE(p.meets_deadline);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L2, L2, L2}));
  EXPECT_DOUBLE_EQ(p.finish, 6);
}

TEST(Planner, RecomputesAHeadWhileTheLinkCarriesTheRest) {
  const ContextCosts ctx = toy_context();
  // Recompute takes 2 s a chunk, the link 2 s for an L2 chunk: all-fetch needs 6 s, all-recompute
  // 6 s. Recomputing chunks 0-1 (until 4 s) while chunk 2 comes at L1 (4 s) loses only 1/3;
  // recomputing only chunk 0 leaves 4 s of link for chunks 1 and 2, so both stay at L2 (8/3).
  const Plan p = plan_rest(input(ctx, {100, 0, 50, 0, {}}, 5));
  EXPECT_EQ(p.choices, (std::vector<Choice>{R, R, L1}));
  EXPECT_TRUE(p.meets_deadline);
  EXPECT_DOUBLE_EQ(p.finish, 4);
  EXPECT_DOUBLE_EQ(p.loss, 1.0 / 3);
}

TEST(Planner, RecomputesEverythingWhenThatIsBothFastEnoughAndLossless) {
  const ContextCosts ctx = toy_context();
  const Plan p = plan_rest(input(ctx, {100, 0, 100, 0, {}}, 5));  // 3 s of recompute
  EXPECT_EQ(p.choices, (std::vector<Choice>{R, R, R}));
  EXPECT_DOUBLE_EQ(p.loss, 0);
}

TEST(Planner, RecomputesTheTailWhenTheLinkCollapsesMidContext) {
  const ContextCosts ctx = toy_context();
  // Chunk 0 is ready at L0; chunk 1 is in flight at L0 and the link is now 10 B/s: it still
  // needs 80 s. Recompute (2 s a chunk) of chunk 2 after it beats fetching chunk 2 (20 s more).
  const std::vector<Choice> committed{L0};
  PlanInput in = input(ctx, {10, 0, 50, 0, {}}, 100);
  in.first = 1;
  in.committed = committed;
  const Plan p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{R}));
  EXPECT_DOUBLE_EQ(p.finish, 82);
  EXPECT_DOUBLE_EQ(p.loss, 0);
}

TEST(Planner, ReadyChunksAmongTheCommittedCostNothing) {
  const ContextCosts ctx = toy_context();
  // Chunk 0 is still being recomputed (8 s a chunk), chunk 1 behind it has landed: only chunk 2
  // is left for the link, and 12 s leave room for L0 (recomputing it would end at 16 s).
  const std::vector<Choice> committed{R, Choice::done()};
  PlanInput in = input(ctx, {100, 0, 12.5, 0, {}}, 12);
  in.committed = committed;
  in.done_loss = 1.0 / 3;  // chunk 1 came at L1
  const Plan p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L0}));
  EXPECT_DOUBLE_EQ(p.finish, 8);
  EXPECT_DOUBLE_EQ(p.loss, 1.0 / 3);
}

TEST(Planner, TheEnginesRunningRecomputeIsCountedOnce) {
  const ContextCosts ctx = toy_context();
  // Chunk 0's recompute (2 s a chunk) is running and ends at 1 s: recomputing chunks 1 and 2
  // after it ends at 5 s, in time and lossless. Counting chunk 0's 2 s again would miss.
  const std::vector<Choice> committed{Choice::done()};
  PlanInput in = input(ctx, {100, 0, 50, 0, {}}, 5);
  in.lanes = {0, 0, 1};
  in.committed = committed;
  const Plan p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{R, R}));
  EXPECT_DOUBLE_EQ(p.finish, 5);
  EXPECT_DOUBLE_EQ(p.loss, 0);
}

TEST(Planner, CommittedChunksUseTheirLaneTimeFirst) {
  const ContextCosts ctx = toy_context();
  // Chunk 0 committed at L0 takes 8 of the 12 s: chunks 1 and 2 share 400 bytes.
  const std::vector<Choice> committed{L0};
  PlanInput in = input(ctx, {100, 0, 0, 0, {}}, 12);
  in.committed = committed;
  const Plan p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L2, L2}));
  EXPECT_DOUBLE_EQ(p.finish, 12);
  EXPECT_DOUBLE_EQ(p.loss, 8.0 / 3);
}

TEST(Planner, SkipsLevelsThatCostMoreBytesForNoLessLoss) {
  ContextCosts ctx = toy_context();
  ctx.level_loss = {0, 4, 4};  // L1 is L2's loss at twice its size: never worth it
  const Plan p = plan_rest(input(ctx, {100, 0, 0, 0, {}}, 12));
  // 1200 bytes: one chunk to L0 (800) + two at L2 (400) = 1200.
  EXPECT_EQ(p.choices, (std::vector<Choice>{L2, L2, L0}));
  EXPECT_DOUBLE_EQ(p.loss, 8.0 / 3);
}

TEST(Planner, PlansLongContextsQuickly) {
  // 2000 chunks: the split points are sampled, so this stays well under a second even in a
  // sanitizer build. Checks the result is sane, not the time.
  const ContextCosts ctx = toy_context(2000);
  const Plan p = plan_rest(input(ctx, {100, 0, 1000, 0, {}}, 3000));
  EXPECT_EQ(p.choices.size(), 2000u);
  EXPECT_TRUE(p.meets_deadline);
  EXPECT_LE(p.finish, 3000);
}

TEST(Planner, PlansEachLevelAtItsOwnDecodeSpeed) {
  const ContextCosts ctx = toy_context();
  // 100 B/s: L2 2 s, L1 4 s, L0 8 s on the link. Decoding at 1 s a chunk, everything at L1
  // finishes at 13 s and the last chunk fits at L0 by 17 s (its link ends at 16).
  Rates rates{100, 1000, 0, 0, {}};
  Plan p = plan_rest(input(ctx, rates, 17));
  EXPECT_EQ(p.choices, (std::vector<Choice>{L1, L1, L0}));
  EXPECT_DOUBLE_EQ(p.finish, 17);
  // Level 0 decoding at a tenth of that (10 s a chunk) is ready at 26 s at the earliest: no
  // chunk can take it.
  rates.level_decode_bytes_per_s = {100};
  p = plan_rest(input(ctx, rates, 17));
  EXPECT_EQ(p.choices, (std::vector<Choice>{L1, L1, L1}));
  EXPECT_TRUE(p.meets_deadline);
  EXPECT_DOUBLE_EQ(p.finish, 13);
  EXPECT_DOUBLE_EQ(finish_time(ctx, rates, {0, 0, 0}, 0, std::vector<Choice>{L1, L1, L0}), 26);
}

TEST(Planner, UpgradesKeepTheBusyDecoderInTime) {
  const ContextCosts ctx = toy_context();
  // The link is fast (L0 in 0.8 s) and the decoder busy until 10 s; L1 and L2 decode in 1 s,
  // L0 in 3 s. By 16 s the decoder has 6 s: one chunk at L0 (3 + 1 + 1 s), not two.
  Rates rates{1000, 1000, 0, 0, {1000.0 / 3}};
  PlanInput in = input(ctx, rates, 16);
  in.lanes = {0, 10, 0};
  const Plan p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L1, L1, L0}));
  EXPECT_TRUE(p.meets_deadline);
  EXPECT_NEAR(p.finish, 15, 1e-9);
  EXPECT_DOUBLE_EQ(p.loss, 2.0 / 3);
}

TEST(Planner, TheToleranceUndoesTheCheapestGainsLatestChunkFirst) {
  const ContextCosts ctx = toy_context();
  // 24 s at 100 B/s: every chunk at L0 (8 s each). Each L1 -> L0 step saves a third of a unit.
  PlanInput in = input(ctx, {100, 0, 0, 0, {}}, 24);
  Plan p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L0, L0, L0}));
  EXPECT_EQ(p.first_given_up, 0);
  in.tolerance = 0.4;  // one step: the last chunk's
  p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L0, L0, L1}));
  EXPECT_EQ(p.first_given_up, 0);
  EXPECT_DOUBLE_EQ(p.loss, 1.0 / 3);
  EXPECT_DOUBLE_EQ(p.finish, 20);
  in.tolerance = 0.7;  // two; never a step that saves more (L2 -> L1)
  p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L0, L1, L1}));
  in.tolerance = 1.5;  // every L1 -> L0 step, the next chunk's among them
  p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L1, L1, L1}));
  EXPECT_DOUBLE_EQ(p.first_given_up, 1.0 / 3);
  in.tolerance = 10;
  p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L2, L2, L2}));
}

TEST(Planner, ChunksWhoseSizesDifferByAFewBytesGiveUpLatestFirst) {
  // Real chunks' level sizes differ by a few bytes, so their L1 -> L0 steps save slightly
  // different amounts per byte; the undo still goes by the loss saved, the latest chunk first.
  ContextCosts ctx = toy_context();
  ctx.chunks[0].level_bytes[0] += 3;  // chunk 0's step saves the least per byte
  ctx.chunks[2].level_bytes[0] -= 3;
  PlanInput in = input(ctx, {100, 0, 0, 0, {}}, 24.1);
  in.tolerance = 0.4;
  EXPECT_EQ(plan_rest(in).choices, (std::vector<Choice>{L0, L0, L1}));
  ctx.chunks[0].level_bytes[0] -= 6;  // and now the most
  ctx.chunks[2].level_bytes[0] += 6;
  EXPECT_EQ(plan_rest(in).choices, (std::vector<Choice>{L0, L0, L1}));
}

// Level 0 as a copy (verbatim: the most bytes, but no decoding to speak of). When the decoder
// is what bounds the load, the planner sends the latest chunks as copies, and the tolerance's
// undo never hands the decoder back more than the deadline leaves: over random contexts, every
// plan that says it meets the deadline finishes by it.
TEST(Planner, CopyLevelsRelieveTheDecoderAndTheUndoKeepsEveryPlanInTime) {
  // Decoding 1 s a chunk at L1 and L2, 0.01 s at L0; the link carries L0 in 0.8 s. All at L1
  // is ready at 3.4 s, all as copies at 2.41 s: lossless and sooner.
  const ContextCosts ctx = toy_context();
  Rates rates{1000, 1000, 0, 0, {100000, 1000, 1000}};
  PlanInput in = input(ctx, rates, 3.5);
  Plan p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L0, L0, L0}));
  EXPECT_NEAR(p.finish, 2.41, 1e-9);
  // By 3.3 s chunk 0 cannot go from L2 to L1 (all at L1 is ready at 3.4 s), but it can go
  // straight to L0 once the others are copies.
  in.deadline = 3.3;
  p = plan_rest(in);
  EXPECT_EQ(p.choices, (std::vector<Choice>{L0, L0, L0}));
  EXPECT_NEAR(p.finish, 2.41, 1e-9);

  std::mt19937 rng(5);
  std::uniform_real_distribution<double> u(0, 1);
  int copies = 0, checked = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    ContextCosts c;
    c.level_loss = {0, 0.05 + u(rng), 1 + 4 * u(rng)};
    const auto chunks = static_cast<std::uint32_t>(2 + rng() % 6);
    for (std::uint32_t i = 0; i < chunks; ++i) {
      const auto raw = static_cast<std::uint64_t>(500 + 1000 * u(rng));
      c.chunks.push_back({static_cast<std::uint32_t>(50 + rng() % 100),
                          raw,
                          {raw, static_cast<std::uint64_t>(raw * (0.3 + 0.3 * u(rng))),
                           static_cast<std::uint64_t>(raw * (0.1 + 0.15 * u(rng)))}});
    }
    const double decode = 500 + 2000 * u(rng);
    Rates r{
        500 + 3000 * u(rng), decode, 0, 0, {decode * 50, decode, decode * (0.8 + 0.4 * u(rng))}};
    PlanInput pi = input(c, r, 0.5 + 6 * u(rng));
    pi.lanes = {0, u(rng) < 0.3 ? 2 * u(rng) : 0, 0};
    const bool meets = plan_rest(pi).meets_deadline;
    pi.tolerance = 3 * u(rng);
    const Plan plan = plan_rest(pi);
    // Giving up quality for bytes never gives up the deadline.
    EXPECT_EQ(plan.meets_deadline, meets) << "trial " << trial;
    if (!plan.meets_deadline) continue;
    ++checked;
    for (const Choice ch : plan.choices)
      copies += ch == L0;
    EXPECT_LE(finish_time(c, r, pi.lanes, 0, plan.choices), pi.deadline + 1e-9)
        << "trial " << trial;
  }
  EXPECT_GT(checked, 500);
  EXPECT_GT(copies, 500);
}

TEST(Planner, ShapesCompeteAfterTheToleranceSoSpareTimeGoesToTheEngine) {
  // Chunk 0 has 100 tokens and saves 1 per 1200 bytes at L0; chunk 1 has 300 and saves 1 per
  // 600. 31 s at 100 B/s fetch both at L0, loss 0; so does recomputing chunk 0 (100 tokens at
  // 5/s, 20 s) while chunk 1 comes at L0 (15 s).
  ContextCosts ctx;
  ctx.level_loss = {0, 1};
  ctx.chunks = {{100, 1000, {1600, 400}}, {300, 3000, {1500, 900}}};
  PlanInput in = input(ctx, {100, 0, 5, 0, {}}, 31);
  in.tolerance = 0.3;
  const Plan p = plan_rest(in);
  // Fetching both gives up chunk 0's step to the tolerance (0.25 of loss over the context);
  // recomputing chunk 0 has no step that small to give up, so it stays lossless and wins.
  EXPECT_EQ(p.choices, (std::vector<Choice>{R, L0}));
  EXPECT_DOUBLE_EQ(p.loss, 0);
  EXPECT_DOUBLE_EQ(p.finish, 20);
  // Without the tolerance both are lossless, and fetching recomputes nothing.
  in.tolerance = 0;
  EXPECT_EQ(plan_rest(in).choices, (std::vector<Choice>{L0, L0}));
}

}  // namespace
}  // namespace kvstream::scheduler
