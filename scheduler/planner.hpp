// The per-chunk planner: before each chunk request, the choice for the next chunk (a level, or
// recompute) that leaves the whole context ready by the deadline with the least expected loss.
//
// It plans the rest of the context each time and returns that plan's first choice, so that a
// change in the estimate reshapes everything still to come. Plans have the form
//   recompute [next, k) · fetch [k, m) at per-chunk levels · recompute [m, n)
// The compute lane takes chunks in order, so the recomputed head overlaps the fetched middle
// (the engine prefills while the link works) and the recomputed tail needs no link at all. For
// each (k, m) the middle starts at each chunk's smallest level and takes upgrades best loss
// saved per byte first (the greedy for a multiple-choice knapsack, over each chunk's convex
// hull of (bytes, loss)) while the plan still finishes by the deadline; a chunk whose step did
// not fit may still jump to its best level when that decodes faster than its own (a copy
// level: a verbatim level 0). The least-loss plan that finishes wins, ties to the one
// recomputing fewer tokens (the engine's compute is what fetching saves), then to the earlier
// finish; when none finishes, the earliest finish of the smallest levels (which on a
// decoder-bound receiver a plan with copies can beat: not searched).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "costs.hpp"

namespace kvstream::scheduler {

struct PlanInput {
  const ContextCosts* ctx = nullptr;
  Rates rates;
  Lanes lanes;          // as of now
  double deadline = 0;  // when every chunk must be ready
  // Chunks before `first` are ready; chunks first.. first+committed.size() are decided
  // (requested, in flight, being decoded, or ready: Choice::done()) and those not ready still
  // take lane time; the plan starts after them. `done_loss`: the loss of every ready chunk.
  std::uint32_t first = 0;
  std::span<const Choice> committed;
  double done_loss = 0;
  // Expected loss the plan may give up for fewer bytes. After the upgrades, the ones that save
  // the least loss are undone (the latest chunk's first, among equals) while what they saved
  // adds up to at most this: a plan that finishes sooner can take a slower link than the
  // estimate, and a step that buys almost nothing (level 1 to level 0 costs 70% more bytes and
  // a slower decode for 0.08% ΔPPL on stories260K) is the one that breaks a deadline when the
  // link turns out slower.
  double tolerance = 0;
};

struct Plan {
  std::vector<Choice> choices;  // for the chunks after the committed ones
  double finish = 0;            // predicted readiness of the whole context
  double loss = 0;              // predicted token-weighted loss of the whole context
  bool meets_deadline = false;
  double first_given_up = 0;  // of the tolerance, what the first choice gave up
};

// Needs ctx checked (ContextCosts::check) and a positive link rate; chunks left to plan may be
// none (the plan is then empty and only predicts the committed ones).
Plan plan_rest(const PlanInput& in);

}  // namespace kvstream::scheduler
