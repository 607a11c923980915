// Link goodput from completed chunk transfers, as a point estimate and a conservative bound.
//
// Chunks in flight overlap, so a transfer's own start-to-end time would count the link's time
// more than once: each transfer is charged only the time from its start or the previous landing,
// whichever is later (the link is FIFO). The estimate is total bytes over total charged time of
// the recent transfers (a byte-weighted harmonic mean, so one slow chunk pulls it down more than
// one fast chunk lifts it). It ignores:
// - the first transfer once two more have landed: it also paid for connection set-up and the
//   rendezvous handshake;
// - transfers more than `high_outlier` times faster than the median (a chunk that fit into
//   socket buffers); slow ones always count, because missing a deadline costs more than quality.
// The bound takes the lower of the estimate and the latest transfer's rate (a step down shows at
// once), less the relative spread of the recent rates (a transfer that straddled a step down
// measured a rate between the old and the new one: the spread says so); it falls further while
// the oldest outstanding transfer takes longer than the bound says it should.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>

namespace kvstream::scheduler {

struct Transfer {
  double start = 0, end = 0;  // requested, landed (seconds on the caller's clock)
  std::uint64_t bytes = 0;
};

struct Outstanding {
  double start = 0;  // requested
  std::uint64_t bytes = 0;
};

struct Estimate {
  double bytes_per_s = 0;  // 0: nothing known yet (no transfer, no seed)
  // The lower of the estimate and the latest transfer's rate (both capped by a stalled one).
  double recent_bytes_per_s = 0;
  double band = 0;  // relative spread of the recent rates, at least min_band
  // recent × (1 - band): a bound for the next transfer alone. A plan of m more transfers can
  // take recent × (1 - band / sqrt(m)) (bound(m)): their total varies less than each does.
  // A seed's error is not noise that averages out: on a seed alone, bound(m) is the low one.
  // A stalled transfer caps all three.
  double low_bytes_per_s = 0;
  std::size_t samples = 0;  // transfers behind it (0: the seed alone)
  // The slowest of those transfers' rates (0 with none): what a transfer that must not be late
  // can count on (an upgrade's: upgrade.hpp).
  double slowest_bytes_per_s = 0;
  double bound(std::size_t transfers) const;
};

class GoodputEstimator {
 public:
  struct Options {
    std::size_t window = 8;     // recent transfers kept
    double high_outlier = 3.0;  // faster than this × the median: ignored
    double min_band = 0.05;     // the bound is at least this fraction below the estimate
    double max_band = 0.5;      // ... at most this far
    // ... and this far while it rests on a seed, or on one transfer. A seed is often a nominal
    // rate (UCX reports a veth's 10 Gbit/s for a link shaped to 1): the first chunk is planned
    // as if the link could be 10 times slower, so that a wrong seed costs one small chunk,
    // not a large one the deadline cannot afford.
    double seed_band = 0.9;
    // A seed someone configured for this link (a known rate, a pacer's) is trusted like one
    // transfer.
    double configured_seed_band = 0.3;
    double one_sample_band = 0.3;
  };
  GoodputEstimator() : GoodputEstimator(Options{}) {}
  explicit GoodputEstimator(Options options) : o_(options) {}

  // A prior (e.g. from ucp_ep_evaluate_perf or configuration), used until a transfer lands.
  enum class Seed { nominal, configured };
  void seed(double bytes_per_s, Seed kind = Seed::nominal) {
    seed_ = bytes_per_s;
    seed_kind_ = kind;
  }
  // Transfers in the order they landed. Ones with no bytes or no charged time are ignored.
  void add(const Transfer& t);
  // The estimate at `now`, given the transfers still outstanding, oldest first.
  Estimate estimate(double now, std::span<const Outstanding> outstanding = {}) const;

 private:
  struct Sample {
    std::uint64_t bytes;
    double charged;  // seconds
    bool first;
    double rate() const { return static_cast<double>(bytes) / charged; }
  };
  Options o_;
  double seed_ = 0;
  Seed seed_kind_ = Seed::nominal;
  double last_end_ = -1e300;
  bool any_ = false;
  std::deque<Sample> samples_;
};

}  // namespace kvstream::scheduler
