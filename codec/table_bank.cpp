#include "table_bank.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

namespace kvstream::codec {

namespace {

constexpr std::uint16_t kFreq[kBankTables][kTokens] = {
#include "table_bank.inc"
};

std::array<TokenTable, kBankTables> build() {
  std::array<TokenTable, kBankTables> bank{};
  for (std::uint32_t t = 0; t < kBankTables; ++t) {
    TokenTable& tt = bank[t];
    std::uint32_t cum = 0;
    for (std::uint32_t k = 0; k < kTokens; ++k) {
      // decode_entry has 12 bits for a frequency; table_bank.inc guarantees 1..4033.
      if (kFreq[t][k] == 0 || kFreq[t][k] >= kProbScale) std::abort();
      tt.freq[k] = kFreq[t][k];
      tt.cum[k] = static_cast<std::uint16_t>(cum);
      for (std::uint32_t s = 0; s < kFreq[t][k]; ++s) {
        tt.decode[cum + s] = decode_entry(kFreq[t][k], s, k);
      }
      cum += kFreq[t][k];
      // The cost only steers the encoder's table choice; any rounding is fine as long as it
      // is computed the same way everywhere, and these are exact double ops on small ints.
      tt.cost[k] = static_cast<std::uint32_t>(
          std::lround(256.0 * (kProbBits - std::log2(static_cast<double>(kFreq[t][k])))));
    }
  }
  return bank;
}

}  // namespace

const std::array<TokenTable, kBankTables>& table_bank() {
  static const std::array<TokenTable, kBankTables> bank = build();
  return bank;
}

const std::uint32_t* table_bank_luts() {
  static const std::vector<std::uint32_t> luts = [] {
    std::vector<std::uint32_t> all(std::size_t{kBankTables} * kProbScale);
    for (std::uint32_t t = 0; t < kBankTables; ++t) {
      std::copy(table_bank()[t].decode.begin(), table_bank()[t].decode.end(),
                all.begin() + std::size_t{t} * kProbScale);
    }
    return all;
  }();
  return luts.data();
}

namespace {

template <class F>
std::vector<std::uint32_t> per_token(F f) {
  std::vector<std::uint32_t> all(std::size_t{kBankTables} * kTokens);
  for (std::uint32_t t = 0; t < kBankTables; ++t) {
    for (std::uint32_t k = 0; k < kTokens; ++k)
      all[t * kTokens + k] = f(table_bank()[t], k);
  }
  return all;
}

}  // namespace

const std::uint32_t* table_bank_freq_cum() {
  static const std::vector<std::uint32_t> v = per_token([](const TokenTable& t, std::uint32_t k) {
    return std::uint32_t{t.freq[k]} | std::uint32_t{t.cum[k]} << 16;
  });
  return v.data();
}

const std::uint32_t* table_bank_reciprocals() {
  static const std::vector<std::uint32_t> v =
      per_token([](const TokenTable& t, std::uint32_t k) { return freq_reciprocal(t.freq[k]); });
  return v.data();
}

}  // namespace kvstream::codec
