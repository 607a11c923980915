#include "table_choice.hpp"

#include <cmath>

#include "symbols.hpp"

namespace kvstream::codec {

const std::array<double, kBankSpreads - 1>& spread_bounds() {
  static const std::array<double, kBankSpreads - 1> b = [] {
    std::array<double, kBankSpreads - 1> a{};
    for (std::uint32_t j = 0; j + 1 < kBankSpreads; ++j)
      a[j] = std::exp2((static_cast<double>(j) - 8.5) / 3.0);
    return a;
  }();
  return b;
}

const std::array<std::uint32_t, kTokens>& token_weights() {
  static const std::array<std::uint32_t, kTokens> w = [] {
    std::array<std::uint32_t, kTokens> a{};
    for (std::uint32_t k = 0; k < kTokens; ++k)
      a[k] = 2 * value_of(k, 0) + (1u << raw_bits_of(k));
    return a;
  }();
  return w;
}

}  // namespace kvstream::codec
