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
  // The decoder's one load per symbol: freq in bits 0..12, slot - cum in bits 13..24, the
  // token in bits 25..30.
  std::array<std::uint32_t, kProbScale> decode;
  // Code length of each token in 1/65536 bit (encoder-side table choice; integer, so every
  // encoder makes the same choice).
  std::array<std::uint32_t, kTokens> cost;
};

// The bank, built once from codec/table_bank.inc on first use (thread-safe).
const std::array<TokenTable, kBankTables>& table_bank();

// Every table's `decode` lookup, back to back (table t at t * kProbScale): one base pointer
// for gathers across tables.
const std::uint32_t* table_bank_luts();

}  // namespace kvstream::codec
