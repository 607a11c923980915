#include "simulator.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "toy_context.hpp"

namespace kvstream::scheduler {
namespace {

using testing::toy_context;

constexpr double kGbitPerBytePerS = 8e-9;  // Trace::constant takes Gbit/s

SimSetup setup_for(const ContextCosts& ctx, const Trace& trace, double deadline) {
  SimSetup s;
  s.ctx = &ctx;
  s.trace = &trace;
  s.deadline = deadline;
  return s;
}

TEST(Simulator, AFixedLevelFetchesChunkAfterChunk) {
  const ContextCosts ctx = toy_context();
  const Trace trace = Trace::constant(100 * kGbitPerBytePerS);
  const auto policy = fixed_policy(0, "L0");
  const RunResult r = simulate(setup_for(ctx, trace, 30), *policy);
  EXPECT_EQ(r.policy, "L0");
  EXPECT_TRUE(r.met);
  EXPECT_DOUBLE_EQ(r.load_s, 24);
  EXPECT_EQ(r.bytes, 2400u);
  EXPECT_DOUBLE_EQ(r.loss, 0);
  ASSERT_EQ(r.chunks.size(), 3u);
  EXPECT_DOUBLE_EQ(r.chunks[1].decided, 8);
  EXPECT_DOUBLE_EQ(r.chunks[1].landed, 16);
  EXPECT_FALSE(simulate(setup_for(ctx, trace, 20), *policy).met);
}

TEST(Simulator, MoreSlotsHideTheRequestLatency) {
  const ContextCosts ctx = toy_context();
  const Trace trace = Trace::constant(100 * kGbitPerBytePerS);
  const auto policy = fixed_policy(0, "L0");
  SimSetup s = setup_for(ctx, trace, 30);
  s.request_latency = 1;
  // One slot: each chunk waits 1 s for its request: 9, 18, 27.
  EXPECT_DOUBLE_EQ(simulate(s, *policy).load_s, 27);
  // Two: chunk 1 is asked at 0 and follows chunk 0 (9, 17); chunk 2, asked at 9, lands at 25.
  s.window = 2;
  EXPECT_DOUBLE_EQ(simulate(s, *policy).load_s, 25);
}

TEST(Simulator, DecodingHoldsTheSlotAndTheComputeLane) {
  const ContextCosts ctx = toy_context();
  const Trace trace = Trace::constant(100 * kGbitPerBytePerS);
  const auto policy = fixed_policy(2, "L2");
  SimSetup s = setup_for(ctx, trace, 30);
  s.decode_bytes_per_s = 500;  // 2 s a chunk, as long as its 200 bytes on the link
  // One slot: land 2, ready 4; asked at 4, land 6, ready 8; then 12.
  EXPECT_DOUBLE_EQ(simulate(s, *policy).load_s, 12);
  s.window = 3;  // all asked at once: land 2, 4, 6; decoded 4, 6, 8
  EXPECT_DOUBLE_EQ(simulate(s, *policy).load_s, 8);
}

TEST(Simulator, ABacklogKeepsTheLinkAheadOfASlowDecoder) {
  const ContextCosts ctx = toy_context();
  const Trace trace = Trace::constant(100 * kGbitPerBytePerS);
  const auto policy = fixed_policy(2, "L2");
  SimSetup s = setup_for(ctx, trace, 30);
  s.decode_bytes_per_s = 250;  // 4 s a chunk, twice its 2 s on the link
  // One slot: land 2, ready 6; asked at 6, land 8, ready 12; then land 14, ready 18.
  RunResult r = simulate(s, *policy);
  EXPECT_DOUBLE_EQ(r.load_s, 18);
  EXPECT_DOUBLE_EQ(r.chunks[2].landed, 14);
  // One on the link and two landed ones may wait: asked as each lands (2, 4, 6), decoded by
  // 6, 10, 14.
  s.backlog = 2;
  r = simulate(s, *policy);
  EXPECT_DOUBLE_EQ(r.load_s, 14);
  EXPECT_DOUBLE_EQ(r.chunks[1].decided, 2);
  EXPECT_DOUBLE_EQ(r.chunks[2].landed, 6);
  // A backlog of one: chunk 2 waits for chunk 0's slot (asked at 6, landed at 8).
  s.backlog = 1;
  r = simulate(s, *policy);
  EXPECT_DOUBLE_EQ(r.chunks[2].decided, 6);
  EXPECT_DOUBLE_EQ(r.load_s, 14);
}

TEST(Simulator, CacheGenGivesEachChunkAnEqualShareOfTheTimeLeft) {
  const ContextCosts ctx = toy_context();
  const Trace trace = Trace::constant(100 * kGbitPerBytePerS);
  SimSetup s = setup_for(ctx, trace, 12);
  s.seed_bytes_per_s = 100;
  const auto policy = cachegen_policy();
  // 4 s a chunk at 100 B/s: L0 needs 8, L1 fits exactly, every time.
  const RunResult r = simulate(s, *policy);
  for (const ChunkRecord& c : r.chunks)
    EXPECT_EQ(c.choice, Choice::fetch(1)) << c.chunk;
  EXPECT_TRUE(r.met);
  EXPECT_DOUBLE_EQ(r.loss, 1);
  // Too little time for any level: the text, when the engine can recompute it.
  s.deadline = 3;
  s.recompute_tokens_per_s = 100;
  EXPECT_EQ(simulate(s, *policy).chunks[0].choice, Choice::recomputed());
}

TEST(Simulator, RecomputeOnlyUsesNoLink) {
  const ContextCosts ctx = toy_context();
  const Trace trace = Trace::constant(100 * kGbitPerBytePerS);
  SimSetup s = setup_for(ctx, trace, 10);
  s.recompute_tokens_per_s = 50;
  const auto policy = recompute_policy();
  const RunResult r = simulate(s, *policy);
  EXPECT_DOUBLE_EQ(r.load_s, 6);
  EXPECT_EQ(r.bytes, 0u);
  EXPECT_DOUBLE_EQ(r.loss, 0);
  s.recompute_tokens_per_s = 0;
  EXPECT_FALSE(simulate(s, *policy).met);
}

TEST(Simulator, ThePlannerProbesTheLinkBeforeASecondFetch) {
  const ContextCosts ctx = toy_context();
  const Trace trace = Trace::constant(100 * kGbitPerBytePerS);
  SimSetup s = setup_for(ctx, trace, 20);  // no time left for an upgrade
  s.window = 3;
  s.seed_bytes_per_s = 1000;  // ten times the link
  const auto planner = planner_policy();
  const RunResult r = simulate(s, *planner);
  EXPECT_TRUE(r.met) << r.load_s;
  EXPECT_DOUBLE_EQ(r.chunks[1].decided, r.chunks[0].landed);
  EXPECT_LT(r.chunks[2].decided, r.chunks[1].landed);  // then the window fills
  // A fixed level does not wait.
  const auto fixed = fixed_policy(2, "L2");
  EXPECT_EQ(simulate(s, *fixed).chunks[1].decided, 0);
}

TEST(Simulator, ThePlannerFetchesItsProbeAgainWhenTimeIsLeft) {
  const ContextCosts ctx = toy_context();
  const Trace trace = Trace::constant(100 * kGbitPerBytePerS);
  SimSetup s = setup_for(ctx, trace, 17);
  s.window = 3;
  // Twice the link, and planned with at a tenth: nothing fits, so the probe goes at level 2
  // (2 s); the link then shows time for level 1 everywhere (14 s): the probe's upgrade, asked
  // at 10 s, takes 4 s, by 16 s with the overrun allowed for (kUpgradeOverrun).
  s.seed_bytes_per_s = 200;
  const auto planner = planner_policy();
  const RunResult r = simulate(s, *planner);
  EXPECT_TRUE(r.met) << r.load_s;
  ASSERT_TRUE(r.chunks[0].upgraded_from.has_value());
  EXPECT_EQ(*r.chunks[0].upgraded_from, 2u);
  EXPECT_LT(r.chunks[0].choice.level, 2u);
  // Both fetches are on the wire, and the loss is what the chunks hold in the end.
  EXPECT_EQ(r.chunks[0].bytes, 200 + ctx.chunks[0].level_bytes[r.chunks[0].choice.level]);
  std::uint64_t bytes = 0;
  std::vector<Choice> held;
  for (const ChunkRecord& c : r.chunks) {
    bytes += c.bytes;
    held.push_back(c.choice);
  }
  EXPECT_EQ(r.bytes, bytes);
  EXPECT_DOUBLE_EQ(r.loss, plan_loss(ctx, 0, held));
  EXPECT_LE(r.load_s, 17);
  // Baselines run as published: nothing is fetched twice.
  const auto fixed = fixed_policy(2, "L2");
  for (const ChunkRecord& c : simulate(s, *fixed).chunks)
    EXPECT_FALSE(c.upgraded_from.has_value());
}

TEST(Simulator, ThePlannerRidesOutAStepDownThatFixedLevelsCannot) {
  const ContextCosts ctx = toy_context(10);
  // 100 B/s for 20 s, then 20 B/s.
  const Trace trace = Trace::step(100 * kGbitPerBytePerS, 20 * kGbitPerBytePerS, 20);
  SimSetup s = setup_for(ctx, trace, 70);
  s.seed_bytes_per_s = 100;
  s.recompute_tokens_per_s = 10;  // 100 s to recompute everything
  const auto planner = planner_policy();
  const RunResult ours = simulate(s, *planner);
  EXPECT_TRUE(ours.met) << ours.load_s;
  bool some_missed = false;
  for (std::uint32_t l = 0; l < 3; ++l) {
    const auto fixed = fixed_policy(l, "fixed");
    const RunResult r = simulate(s, *fixed);
    some_missed |= !r.met;
    if (r.met) {
      EXPECT_LE(ours.loss, r.loss) << "level " << l;
    }
  }
  EXPECT_TRUE(some_missed);
  // It saw the step: the chunks asked after it are smaller than the largest asked before.
  std::uint64_t before = 0, after = 0;
  for (const ChunkRecord& c : ours.chunks)
    (c.decided < 20 ? before : after) = std::max(c.decided < 20 ? before : after, c.bytes);
  EXPECT_LT(after, before);
}

// Recomputes the chunks it is told to, fetches the rest at level 1.
class SplitPolicy final : public Policy {
 public:
  explicit SplitPolicy(std::vector<bool> recompute, bool revokes = true)
      : recompute_(std::move(recompute)), revokes_(revokes) {}
  std::string name() const override { return "split"; }
  bool revokes_late_recomputes() const override { return revokes_; }
  Decision decide(const Situation& s) override {
    return {recompute_[s.next()] ? Choice::recomputed() : Choice::fetch(1), 0, 0};
  }

 private:
  std::vector<bool> recompute_;
  bool revokes_;
};

TEST(Simulator, AQueuedRecomputeThatWouldBeLateIsFetchedInstead) {
  const ContextCosts ctx = toy_context(4);
  const Trace trace = Trace::constant(1000 * kGbitPerBytePerS);
  SimSetup s = setup_for(ctx, trace, 5);
  s.window = 2;
  s.recompute_tokens_per_s = 50;  // 2 s a chunk
  // Chunks 0 and 1 on the engine until 4 s; chunk 2 lands at 0.4 s; chunk 3 would be
  // recomputed from 4 s to 6 s. Once chunk 2 has shown the link's rate, chunk 3 is fetched
  // instead, at level 0 (800 bytes, landed by 1.2 s).
  SplitPolicy policy({true, true, false, true});
  const RunResult r = simulate(s, policy);
  EXPECT_EQ(r.chunks[3].choice, Choice::fetch(0));
  EXPECT_DOUBLE_EQ(r.chunks[3].decided, 0.4);
  EXPECT_DOUBLE_EQ(r.chunks[3].landed, 1.2);
  EXPECT_DOUBLE_EQ(r.load_s, 4);
  EXPECT_TRUE(r.met);
  EXPECT_EQ(r.bytes, 1200u);
  // A baseline is run as published: its recompute waits.
  SplitPolicy baseline({true, true, false, true}, false);
  const RunResult b = simulate(s, baseline);
  EXPECT_EQ(b.chunks[3].choice, Choice::recomputed());
  EXPECT_DOUBLE_EQ(b.load_s, 6);
  EXPECT_FALSE(b.met);
}

}  // namespace
}  // namespace kvstream::scheduler
