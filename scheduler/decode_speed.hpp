// The decoder's speed per level, from priors and the decodes timed so far. Levels decode at
// different speeds (on the CPU level 0, lossless, at a fraction of the lossy levels' speed), and
// the machine's speed moves with what else runs on it (on a two-core receiver, the link's own
// progress threads and the sender). One chunk's decode time is noisy (a decode thread waits for
// a core now and then): all timed decodes, at whatever level, are pooled into one ratio of
// measured to prior speed, which scales every level's prior. A level with no prior of its own
// (only the fallback) is planned with its own timed decodes once it has some. A level whose
// prior is many times the slowest one's is a copy (a verbatim level 0): its time follows memory,
// not the decoder's core, so it neither moves the pooled ratio nor is scaled by it (its own
// timed decodes plan it once it has some).
#pragma once

#include <cstdint>
#include <vector>

#include "costs.hpp"

namespace kvstream::scheduler {

class DecodeSpeed {
 public:
  // Raw bytes per second: `fallback` for every level without a prior of its own (0: not known,
  // decoding planned as free until a decode is timed).
  DecodeSpeed(std::uint32_t levels, double fallback, std::vector<double> level_priors = {});

  // A decode of `raw_bytes` at `level` that took `seconds` (ignored unless both are positive).
  void add(std::uint32_t level, double raw_bytes, double seconds);

  // The rates to plan with, as a running mean of the recent decodes (the planner's), or as the
  // slowest decode seen (what an optional upgrade, which must not break a met deadline, counts
  // on). Fills decode_bytes_per_s and level_decode_bytes_per_s.
  void fill(Rates& rates, bool slowest = false) const;
  double rate(std::uint32_t level, bool slowest = false) const;

 private:
  static constexpr double kKeep = 0.7;  // each new decode moves a running mean by 30%
  struct Seen {
    double mean = 0, slowest = 0;  // 0: none yet
    void add(double x);
  };
  double prior(std::uint32_t level) const;
  bool copy(std::uint32_t level) const;
  static constexpr double kCopyFactor = 4;  // a prior this many times the slowest: a copy
  std::vector<double> priors_;              // per level, 0 where none
  double fallback_ = 0;
  double slowest_prior_ = 0;  // 0: no level has a prior
  std::vector<Seen> levels_;  // measured rates, per level
  Seen ratio_;                // measured rate ÷ the level's prior, over the levels with one
  Seen any_;                  // measured rates, every level
};

}  // namespace kvstream::scheduler
