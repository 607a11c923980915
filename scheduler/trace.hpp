// Bandwidth traces: piecewise-constant link rates over time, for the simulator and for shaping
// real links. Text form, one segment per line: "<start seconds> <Gbit/s>", starts increasing from
// 0; '#' starts a comment. The last rate holds forever.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvstream/status.hpp"

namespace kvstream::scheduler {

struct Segment {
  double start = 0;        // seconds
  double bytes_per_s = 0;  // > 0
};

class Trace {
 public:
  static Expected<Trace> parse(std::string_view text);
  static Trace constant(double gbit_per_s);
  // `before` until `at` seconds, `after` from then on.
  static Trace step(double before_gbit, double after_gbit, double at);
  // A new rate drawn uniformly from [lo, hi] Gbit/s every `period` seconds for `duration` seconds
  // (CacheGen's artifact draws one per chunk), from a seeded generator: the same on every machine.
  static Trace uniform(double lo_gbit, double hi_gbit, double period, double duration,
                       std::uint64_t seed);

  const std::vector<Segment>& segments() const { return segments_; }
  double rate_at(double t) const;
  // When `bytes` sent from `start` on are through, the rate changing as the trace says.
  double finish(double start, double bytes) const;
  // Mean rate over [from, to).
  double mean_rate(double from, double to) const;
  std::string to_text() const;

 private:
  std::vector<Segment> segments_;
};

inline constexpr double kBytesPerGbit = 1e9 / 8;

}  // namespace kvstream::scheduler
