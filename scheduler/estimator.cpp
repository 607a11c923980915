#include "estimator.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace kvstream::scheduler {

void GoodputEstimator::add(const Transfer& t) {
  const double from = std::max(t.start, last_end_);
  last_end_ = std::max(last_end_, t.end);
  const double charged = t.end - from;
  if (t.bytes == 0 || !(charged > 0)) return;
  samples_.push_back({t.bytes, charged, !any_});
  any_ = true;
  if (samples_.size() > o_.window) samples_.pop_front();
}

Estimate GoodputEstimator::estimate(double now, std::span<const Outstanding> outstanding) const {
  Estimate e;
  std::vector<Sample> kept(samples_.begin(), samples_.end());
  if (kept.size() >= 3 && kept.front().first) kept.erase(kept.begin());
  if (!kept.empty()) {
    std::vector<double> rates;
    for (const Sample& s : kept)
      rates.push_back(s.rate());
    std::nth_element(rates.begin(), rates.begin() + rates.size() / 2, rates.end());
    const double median = rates[rates.size() / 2];
    double bytes = 0, time = 0;
    std::vector<double> used;
    for (const Sample& s : kept) {
      if (s.rate() > o_.high_outlier * median) continue;
      bytes += static_cast<double>(s.bytes);
      time += s.charged;
      used.push_back(s.rate());
    }
    e.samples = used.size();
    e.bytes_per_s = bytes / time;
    e.slowest_bytes_per_s = *std::min_element(used.begin(), used.end());
    double band = o_.one_sample_band;
    if (used.size() > 1) {
      double var = 0;
      for (double r : used)
        var += (r - e.bytes_per_s) * (r - e.bytes_per_s);
      band = std::clamp(std::sqrt(var / static_cast<double>(used.size())) / e.bytes_per_s,
                        o_.min_band, o_.max_band);
    }
    e.band = band;
    e.recent_bytes_per_s = std::min(e.bytes_per_s, samples_.back().rate());
  } else if (seed_ > 0) {
    e.bytes_per_s = e.recent_bytes_per_s = seed_;
    e.band = seed_kind_ == Seed::configured ? o_.configured_seed_band : o_.seed_band;
  }
  // The oldest outstanding transfer has had the link since it was asked for or since the last
  // landing; if it has taken longer than the bound allows, the link is slower than that.
  e.low_bytes_per_s = e.recent_bytes_per_s * (1 - e.band);
  if (!outstanding.empty() && e.low_bytes_per_s > 0) {
    const Outstanding& o = outstanding.front();
    const double busy = now - std::max(o.start, last_end_);
    if (busy > 0 && static_cast<double>(o.bytes) < e.low_bytes_per_s * busy) {
      const double ceiling = static_cast<double>(o.bytes) / busy;
      e.low_bytes_per_s = ceiling;
      e.recent_bytes_per_s = std::min(e.recent_bytes_per_s, ceiling);
      e.bytes_per_s = std::min(e.bytes_per_s, ceiling);
    }
  }
  return e;
}

double Estimate::bound(std::size_t transfers) const {
  if (samples == 0) return low_bytes_per_s;
  const double m = static_cast<double>(std::max<std::size_t>(transfers, 1));
  return std::min(recent_bytes_per_s * (1 - band / std::sqrt(m)), bytes_per_s);
}

}  // namespace kvstream::scheduler
