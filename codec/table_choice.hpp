// Which bank table prices a channel's token histogram lowest: the rule every encoder path
// follows (encoder.cpp scalar, encoder_avx2.cpp vector), so that they choose alike.
#pragma once

#include <array>
#include <cstdint>

#include "table_bank.hpp"

namespace kvstream::codec {

// Table 2j + shape is a distribution of standard deviation 2^((j - 9) / 3) steps (FORMAT.md).
inline constexpr std::uint32_t kBankSpreads = kBankTables / 2;

// Per token: 4 x its mean |d| if the token's raw bits are uniform (d from u = zigzag(d)), an
// integer: 2 * (value_of(k, 0) + (2^bits - 1) / 2) + 1.
const std::array<std::uint32_t, kTokens>& token_weights();

// Spread j covers sigma in [bounds[j - 1], bounds[j]): bounds[j] = 2^((j - 8.5) / 3), the
// geometric midpoints between neighbouring spreads (a search instead of a log2 per channel).
const std::array<double, kBankSpreads - 1>& spread_bounds();

// The spread nearest (on a log scale) a Gaussian's whose mean |d| is weight_sum / (4 values),
// weight_sum being the histogram's sum of count x token_weights(), kept off the ends so that
// both neighbours exist. `bounds`: spread_bounds() (a copy where a GPU runs this).
constexpr std::uint32_t spread_guess(const double* bounds, std::uint64_t weight_sum,
                                     std::uint32_t values) noexcept {
  const double sigma = 1.2533 * static_cast<double>(weight_sum) / (4.0 * values);
  std::uint32_t nearest = 0;  // bounds below or at sigma (they increase)
  while (nearest < kBankSpreads - 1 && bounds[nearest] <= sigma)
    ++nearest;
  return nearest < 1 ? 1 : nearest > kBankSpreads - 2 ? kBankSpreads - 2 : nearest;
}

// A histogram's cost under the tables of one shape is unimodal in their spread, so it
// suffices to price the spreads on either side of the guess and walk on only while it keeps
// getting cheaper at the edge. `cost(t)` prices the histogram under table t. Ties go to the
// lower table. Always inlined, so that a vector `cost` inlines into it in turn; constexpr, so
// that the GPU encoder's threads run it too.
template <class Cost>
[[gnu::always_inline]] constexpr std::uint32_t cheapest_table(std::uint32_t guess, Cost cost) {
  std::uint32_t best_cost = UINT32_MAX;
  std::uint32_t best = 0;
  for (std::uint32_t shape = 0; shape < 2; ++shape) {
    std::uint32_t j = guess - 1;
    std::uint32_t at = cost(2 * j + shape);
    for (std::uint32_t i = guess; i <= guess + 1; ++i) {
      const std::uint32_t ci = cost(2 * i + shape);
      if (ci < at) {
        at = ci;
        j = i;
      }
    }
    if (j == guess - 1) {
      while (j > 0) {
        const std::uint32_t below = cost(2 * (j - 1) + shape);
        if (below > at) break;
        at = below;
        --j;
      }
    } else if (j == guess + 1) {
      while (j + 1 < kBankSpreads) {
        const std::uint32_t above = cost(2 * (j + 1) + shape);
        if (above >= at) break;
        at = above;
        ++j;
      }
    }
    if (at < best_cost || (at == best_cost && 2 * j + shape < best)) {
      best_cost = at;
      best = 2 * j + shape;
    }
  }
  return best;
}

}  // namespace kvstream::codec
