// The planner policy's use of the estimate: which rate it plans with when the conservative
// bound leaves no plan that meets the deadline.
#include "policy.hpp"

#include <gtest/gtest.h>

#include "toy_context.hpp"

namespace kvstream::scheduler {
namespace {

using testing::toy_context;

Situation at_start(const ContextCosts& ctx, double deadline, const Estimate& e) {
  Situation s;
  s.ctx = &ctx;
  s.now = 0;
  s.deadline = deadline;
  s.estimate = e;
  s.lanes = Lanes::at(0);
  return s;
}

Estimate estimate(double mean, double recent, double band, std::size_t samples) {
  Estimate e;
  e.bytes_per_s = mean;
  e.recent_bytes_per_s = recent;
  e.band = band;
  e.low_bytes_per_s = recent * (1 - band);
  e.samples = samples;
  return e;
}

TEST(PlannerPolicy, AfterAStepDownItPlansWithTheRecentRateNotTheWindowsMean) {
  const ContextCosts ctx = toy_context();
  // The window still averages 100 B/s, but the latest chunk came at 20 B/s (a step down).
  const Estimate e = estimate(100, 20, 0.5, 5);
  // 28.5 s after the margin: at the bound (14.2 B/s) even 600 bytes take 42 s; at the mean,
  // level 0 (2400 bytes) would fit; at the recent rate the fastest plan takes 30 s.
  const auto planner = planner_policy();
  const Decision d = planner->decide(at_start(ctx, 30, e));
  EXPECT_EQ(d.choice, Choice::fetch(2));
  EXPECT_DOUBLE_EQ(d.predicted_finish, 30);
}

TEST(PlannerPolicy, ASeedAloneIsNeverTakenAtFaceValue) {
  const ContextCosts ctx = toy_context();
  // A seed of 1000 B/s (a nominal rate), nothing landed yet: the bound is a tenth of it.
  const Estimate e = estimate(1000, 1000, 0.9, 0);
  // 1.9 s after the margin: at the seed levels 1 and 0 would fit; at the bound nothing does, so
  // the first chunk is the smallest (600 bytes at 100 B/s: 6 s).
  const auto planner = planner_policy();
  const Decision d = planner->decide(at_start(ctx, 2, e));
  EXPECT_EQ(d.choice, Choice::fetch(2));
  EXPECT_DOUBLE_EQ(d.predicted_finish, 6);
}

TEST(PlannerPolicy, ItsToleranceBoundsTheWholeContext) {
  const ContextCosts ctx = toy_context();
  const Estimate e = estimate(100, 100, 0.05, 5);
  // Time for every chunk at L0 at the bound (95 B/s: 25.3 s; 28.5 s in hand). A tolerance of
  // 0.4 gives up one L1 -> L0 step (1/3), the last chunk's: the first two go at L0.
  const auto planner = planner_policy(kPlanMargin, 0.4);
  Situation s = at_start(ctx, 30, e);
  EXPECT_EQ(planner->decide(s).choice, Choice::fetch(0));
  std::vector<Choice> committed{Choice::fetch(0)};
  s.committed = committed;
  EXPECT_EQ(planner->decide(s).choice, Choice::fetch(0));
  committed.push_back(Choice::fetch(0));
  s.committed = committed;
  EXPECT_EQ(planner->decide(s).choice, Choice::fetch(1));
  // That spent it: asked again, it has 0.07 left.
  EXPECT_EQ(planner->decide(s).choice, Choice::fetch(0));
  // A fresh policy would give that step up again.
  EXPECT_EQ(planner_policy(kPlanMargin, 0.4)->decide(s).choice, Choice::fetch(1));
}

}  // namespace
}  // namespace kvstream::scheduler
