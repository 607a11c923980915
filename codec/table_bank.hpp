// The format's fixed bank of token tables (FORMAT.md), with what encoders and decoders derive
// from it: cumulative frequencies, a slot -> token lookup, and integer code lengths.
#pragma once

#include <array>
#include <cstdint>

#include "symbols.hpp"

namespace kvstream::codec {

inline constexpr std::uint32_t kBankTables = 80;
inline constexpr std::uint32_t kProbBits = 12;
inline constexpr std::uint32_t kProbScale = 1u << kProbBits;

struct TokenTable {
  std::array<std::uint16_t, kTokens> freq;
  std::array<std::uint16_t, kTokens> cum;  // prefix sums of freq
  // The decoder's one load per symbol (see decode_entry).
  std::array<std::uint32_t, kProbScale> decode;
  // Code length of each token in 1/256 bit, at most 12 * 256 (encoder-side table choice;
  // integer, so every encoder makes the same choice, and a histogram of up to 65536 values
  // prices in 32 bits).
  std::array<std::uint32_t, kTokens> cost;
};

// A decode lookup entry: freq in bits 0..11 (every token has freq >= 1, so none reaches 4096),
// slot - cum in bits 12..23, then what turns the token into u without a branch: its raw-bit
// count n in bits 24..27 and its leading bits h in 28..31, u = (h << n) | raw (Symbols).
constexpr std::uint32_t decode_entry(std::uint32_t freq, std::uint32_t offset,
                                     std::uint32_t token) noexcept {
  const std::uint32_t n = raw_bits_of(token);
  const std::uint32_t head = token < 16 ? token : 4u | (token & 3u);
  return freq | (offset << 12) | (n << 24) | (head << 28);
}

// Division by a token frequency, by multiplication: rcp is floor(2^32 / freq) (2^32 - 1 for
// freq 1), so floor(x * rcp / 2^32) is x / freq or one less, for any 32-bit x, and one
// comparison corrects it. Exact: every encoder gets the same quotient and remainder.
constexpr std::uint32_t freq_reciprocal(std::uint32_t freq) noexcept {
  return freq == 1 ? 0xFFFFFFFFu : static_cast<std::uint32_t>((std::uint64_t{1} << 32) / freq);
}
struct QuotientRemainder {
  std::uint32_t q, r;
};
constexpr QuotientRemainder divide_by_freq(std::uint32_t x, std::uint32_t freq,
                                           std::uint32_t rcp) noexcept {
  std::uint32_t q = static_cast<std::uint32_t>((std::uint64_t{x} * rcp) >> 32);
  std::uint32_t r = x - q * freq;
  if (r >= freq) {
    ++q;
    r -= freq;
  }
  return {q, r};
}

// The bank, built once from codec/table_bank.inc on first use (thread-safe).
const std::array<TokenTable, kBankTables>& table_bank();

// Every table's `decode` lookup, back to back (table t at t * kProbScale): one base pointer
// for gathers across tables.
const std::uint32_t* table_bank_luts();
// The encoder's per-(table, token) lookups, entry t * kTokens + token: freq | cum << 16, and
// freq_reciprocal(freq).
const std::uint32_t* table_bank_freq_cum();
const std::uint32_t* table_bank_reciprocals();

}  // namespace kvstream::codec
