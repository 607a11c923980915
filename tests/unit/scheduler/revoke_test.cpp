// When a queued recompute is fetched instead, on the toy context (100 tokens, 1000 raw bytes a
// chunk; 800, 400, 200 bytes at levels 0, 1, 2, which lose 0, 1, 4).
#include "revoke.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "toy_context.hpp"

namespace kvstream::scheduler {
namespace {

using testing::toy_context;

RevokeInput input(const ContextCosts& ctx, const std::vector<std::uint32_t>& queued,
                  double engine_free, double link_free, double deadline) {
  RevokeInput in;
  in.ctx = &ctx;
  in.now = 0;
  in.deadline = deadline;
  in.queued = queued;
  in.engine_free = engine_free;
  in.link_free = link_free;
  in.rates.link_bytes_per_s = 100;
  in.rates.recompute_tokens_per_s = 50;  // 2 s a chunk
  return in;
}

TEST(Revoke, ALateRecomputeIsFetchedAtTheBestLevelThatIsReadyInTime) {
  const ContextCosts ctx = toy_context();
  const std::vector<std::uint32_t> queued{2};
  // The engine is busy until 5 s, so chunk 2 would be recomputed by 7 s; the deadline is 6 s.
  // Fetched after the link frees at 2 s: level 0 by 10 s, level 1 by 6 s.
  const auto r = revoke_late_recompute(input(ctx, queued, 5, 2, 6));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->index, 0u);
  EXPECT_EQ(r->level, 1u);
}

TEST(Revoke, ARecomputeThatEndsInTimeStays) {
  const ContextCosts ctx = toy_context();
  const std::vector<std::uint32_t> queued{2};
  EXPECT_FALSE(revoke_late_recompute(input(ctx, queued, 5, 2, 8)).has_value());
}

TEST(Revoke, ALateRecomputeStaysWhenTheLinkIsNoSooner) {
  const ContextCosts ctx = toy_context();
  const std::vector<std::uint32_t> queued{2};
  RevokeInput in = input(ctx, queued, 5, 2, 6);
  in.rates.link_bytes_per_s = 10;  // level 2 would land at 22 s
  EXPECT_FALSE(revoke_late_recompute(in).has_value());
  in.rates.recompute_tokens_per_s = 0;  // no engine: nothing was queued to it
  EXPECT_FALSE(revoke_late_recompute(in).has_value());
}

TEST(Revoke, OnlyTheChunksQueuedPastTheDeadlineAreFetched) {
  const ContextCosts ctx = toy_context();
  const std::vector<std::uint32_t> queued{1, 2};
  // Chunk 1 ends at 2 s, in time; chunk 2 at 4 s, past 3 s. Level 2 lands at 2 s, level 1 at
  // 4 s; decoding adds 1 s: level 2 is ready at 3 s.
  RevokeInput in = input(ctx, queued, 0, 0, 3);
  in.rates.decode_bytes_per_s = 1000;
  const auto r = revoke_late_recompute(in);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->index, 1u);
  EXPECT_EQ(r->level, 2u);
}

TEST(Revoke, WhenNothingIsInTimeTheSoonestWins) {
  const ContextCosts ctx = toy_context();
  const std::vector<std::uint32_t> queued{2};
  // Recomputed by 12 s; no level lands by 1 s, level 2 soonest (2 s).
  const auto r = revoke_late_recompute(input(ctx, queued, 10, 0, 1));
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->level, 2u);
}

TEST(Revoke, TheUndecidedRestKeepsItsLinkTime) {
  const ContextCosts ctx = toy_context();
  const std::vector<std::uint32_t> queued{2};
  // As in the first case, but 200 bytes must still follow on the link: level 1 would push them
  // past 6 s, level 2 does not.
  RevokeInput in = input(ctx, queued, 5, 2, 6);
  in.rest_bytes = 200;
  const auto r = revoke_late_recompute(in);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->level, 2u);
  // Nothing is in time, and fetching it would hold up the rest (done by 14 s instead of 12 s,
  // when the recompute ends at 7 s): the engine keeps it.
  in.deadline = 1;
  in.rest_bytes = 1000;
  EXPECT_FALSE(revoke_late_recompute(in).has_value());
}

}  // namespace
}  // namespace kvstream::scheduler
