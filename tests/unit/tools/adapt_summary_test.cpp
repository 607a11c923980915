// The sweep's summary: runs count as feasible only when a level or recompute met them, and a
// setting counts only when a level or recompute met every one of its runs.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/adapt_bench.hpp"

namespace kvstream::cli {
namespace {

RunRow row(const std::string& trace, double deadline, std::uint64_t run, const std::string& policy,
           bool met, double ppl = 0) {
  RunRow r;
  r.mode = "real";
  r.trace = trace;
  r.deadline_s = deadline;
  r.run = run;
  r.policy = policy;
  r.met = met;
  r.quality.delta_ppl_pct = ppl;
  return r;
}

std::vector<RunRow> sweep() {
  return {
      // Within 0.1 pp of L1 in its one run.
      row("const:1", 0.3, 1, "planner", true, 0.1),
      row("const:1", 0.3, 1, "L1", true, 0.083),
      row("const:1", 0.3, 1, "int8", true, 0.287),
      // No level met both runs, only the planner and int8 did: not a setting that counts, and
      // run 2 (int8 alone) is not feasible.
      row("uniform", 0.1, 1, "planner", true, 1.0),
      row("uniform", 0.1, 1, "L2", true, 0.192),
      row("uniform", 0.1, 1, "int8", true, 0.287),
      row("uniform", 0.1, 2, "planner", true, 1.0),
      row("uniform", 0.1, 2, "L2", false),
      row("uniform", 0.1, 2, "int8", true, 0.287),
      // L1 met both runs, the planner both at a worse quality.
      row("uniform", 0.15, 1, "planner", true, 0.5),
      row("uniform", 0.15, 1, "L1", true, 0.083),
      row("uniform", 0.15, 2, "planner", true, 0.5),
      row("uniform", 0.15, 2, "L1", true, 0.083),
      // Missed where L5 met.
      row("step", 0.15, 1, "planner", false),
      row("step", 0.15, 1, "L5", true, 9.9),
  };
}

TEST(AdaptSummary, RunsAreFeasibleWhenALevelOrRecomputeMetThem) {
  std::vector<RunRow> rows = sweep();
  const std::string text = summarize(rows);
  EXPECT_NE(text.find("met 4 of 5 feasible"), std::string::npos) << text;
  EXPECT_NE(text.find("within 0.1 pp of it, in 1 of the 4 it met"), std::string::npos) << text;
  EXPECT_NE(text.find("met 5 of 6 runs that any baseline met"), std::string::npos) << text;
  EXPECT_FALSE(rows[6].feasible);  // uniform 0.1 s run 2: only int8 met it
  EXPECT_TRUE(rows[3].feasible);
}

TEST(AdaptSummary, SettingsCountWhenALevelMetEveryRun) {
  std::vector<RunRow> rows = sweep();
  const std::string text = summarize(rows);
  EXPECT_NE(text.find("in 1 of the 3 settings"), std::string::npos) << text;
  EXPECT_NE(text.find("not: real uniform deadline 0.15 s: mean +0.417 pp"), std::string::npos)
      << text;
  EXPECT_NE(text.find("not: real step deadline 0.15 s: met 0 of 1 runs"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("uniform deadline 0.1 s:"), std::string::npos) << text;
}

}  // namespace
}  // namespace kvstream::cli
