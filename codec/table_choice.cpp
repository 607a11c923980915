#include "table_choice.hpp"

#include <algorithm>
#include <cmath>

#include "symbols.hpp"

namespace kvstream::codec {

namespace {

// Spread j covers sigma in [bounds[j - 1], bounds[j]): bounds[j] = 2^((j - 8.5) / 3), the
// geometric midpoints between neighbouring spreads (a search instead of a log2 per channel).
const std::array<double, kBankSpreads - 1>& spread_bounds() {
  static const std::array<double, kBankSpreads - 1> b = [] {
    std::array<double, kBankSpreads - 1> a{};
    for (std::uint32_t j = 0; j + 1 < kBankSpreads; ++j)
      a[j] = std::exp2((static_cast<double>(j) - 8.5) / 3.0);
    return a;
  }();
  return b;
}

}  // namespace

const std::array<std::uint32_t, kTokens>& token_weights() {
  static const std::array<std::uint32_t, kTokens> w = [] {
    std::array<std::uint32_t, kTokens> a{};
    for (std::uint32_t k = 0; k < kTokens; ++k)
      a[k] = 2 * value_of(k, 0) + (1u << raw_bits_of(k));
    return a;
  }();
  return w;
}

std::uint32_t spread_guess(std::uint64_t weight_sum, std::uint32_t values) {
  const double sigma = 1.2533 * static_cast<double>(weight_sum) / (4.0 * values);
  const auto& bounds = spread_bounds();
  const auto nearest = static_cast<std::uint32_t>(
      std::upper_bound(bounds.begin(), bounds.end(), sigma) - bounds.begin());
  return std::clamp(nearest, 1u, kBankSpreads - 2);
}

}  // namespace kvstream::codec
