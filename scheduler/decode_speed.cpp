#include "decode_speed.hpp"

#include <algorithm>
#include <utility>

namespace kvstream::scheduler {

void DecodeSpeed::Seen::add(double x) {
  mean = mean > 0 ? kKeep * mean + (1 - kKeep) * x : x;
  slowest = slowest > 0 ? std::min(slowest, x) : x;
}

DecodeSpeed::DecodeSpeed(std::uint32_t levels, double fallback, std::vector<double> level_priors)
    : priors_(std::move(level_priors)), fallback_(fallback), levels_(levels) {
  priors_.resize(levels, 0.0);
  for (double p : priors_)
    if (p > 0 && (slowest_prior_ == 0 || p < slowest_prior_)) slowest_prior_ = p;
}

bool DecodeSpeed::copy(std::uint32_t level) const {
  return level < priors_.size() && priors_[level] > kCopyFactor * slowest_prior_;
}

double DecodeSpeed::prior(std::uint32_t level) const {
  return level < priors_.size() && priors_[level] > 0 ? priors_[level] : fallback_;
}

void DecodeSpeed::add(std::uint32_t level, double raw_bytes, double seconds) {
  if (!(raw_bytes > 0) || !(seconds > 0) || level >= levels_.size()) return;
  const double x = raw_bytes / seconds;
  levels_[level].add(x);
  any_.add(x);
  if (prior(level) > 0 && !copy(level)) ratio_.add(x / prior(level));
}

double DecodeSpeed::rate(std::uint32_t level, bool slowest) const {
  const auto pick = [&](const Seen& s) { return slowest ? s.slowest : s.mean; };
  const double scale = pick(ratio_) > 0 ? pick(ratio_) : 1.0;
  if (copy(level)) return pick(levels_[level]) > 0 ? pick(levels_[level]) : priors_[level];
  if (level < priors_.size() && priors_[level] > 0) return priors_[level] * scale;
  if (level < levels_.size() && pick(levels_[level]) > 0) return pick(levels_[level]);
  if (fallback_ > 0) return fallback_ * scale;
  return pick(any_);  // no prior at all: whatever the other levels showed (0: nothing yet)
}

void DecodeSpeed::fill(Rates& rates, bool slowest) const {
  rates.level_decode_bytes_per_s.resize(levels_.size());
  double sum = 0;
  int known = 0;
  for (std::uint32_t l = 0; l < levels_.size(); ++l) {
    const double r = rates.level_decode_bytes_per_s[l] = rate(l, slowest);
    if (r > 0) sum += r, ++known;
  }
  // For a level past the ones known (none in a stream's fetch): the mean of those known.
  rates.decode_bytes_per_s = known > 0 ? sum / known : 0.0;
}

}  // namespace kvstream::scheduler
