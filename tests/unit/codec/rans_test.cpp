// The entropy coder on its own: how close it codes to the entropy of what it is given, and the
// decoder's packed table entries against the symbol mapping of FORMAT.md.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "rans.hpp"
#include "symbols.hpp"
#include "table_bank.hpp"

namespace kvstream::codec {
namespace {

// Draws tokens from bank table `table` (by inverting its cumulative frequencies), with raw
// bits as the format gives them.
std::vector<RansValue> draw(std::uint32_t table, std::size_t n, std::mt19937& rng) {
  const TokenTable& t = table_bank()[table];
  std::vector<RansValue> values(n);
  std::uniform_int_distribution<std::uint32_t> slot(0, kProbScale - 1);
  for (RansValue& v : values) {
    const std::uint32_t s = slot(rng);
    std::uint32_t tok = 0;
    while (t.cum[tok] + t.freq[tok] <= s)
      ++tok;
    v = {};
    v.token = static_cast<std::uint8_t>(tok);
    v.table = static_cast<std::uint8_t>(table);
    v.raw_bits = static_cast<std::uint8_t>(raw_bits_of(tok));
    v.raw = static_cast<std::uint16_t>(rng() & ((1u << v.raw_bits) - 1u));
  }
  return values;
}

TEST(Rans, PayloadIsWithinTwoPercentOfTheEntropyUnderTheTablesUsed) {
  std::mt19937 rng(5);
  // Narrow (many small tokens, few raw bits) to wide (raw bits dominate) tables, both shapes.
  for (std::uint32_t table : {0u, 7u, 20u, 21u, 40u, 63u, 79u}) {
    for (std::uint32_t lanes : {1u, 8u, 32u}) {
      const auto values = draw(table, 1 << 16, rng);
      double entropy_bits = 0;
      for (const RansValue& v : values) {
        entropy_bits += kProbBits - std::log2(table_bank()[table].freq[v.token]) + v.raw_bits;
      }
      RansStream out;
      rans_encode(values, lanes, out);
      // The payload: the word stream. The lane states are side information of 32 bits each.
      const double payload_bits = 16.0 * static_cast<double>(out.words.size());
      EXPECT_LT(std::fabs(payload_bits / entropy_bits - 1.0), 0.02)
          << "table " << table << ", " << lanes << " lanes: " << payload_bits << " bits for "
          << entropy_bits << " bits of entropy";
    }
  }
}

TEST(TableBank, DecodeEntriesRebuildEveryValueOfTheSymbolMapping) {
  for (std::uint32_t t = 0; t < kBankTables; ++t) {
    const TokenTable& table = table_bank()[t];
    for (std::uint32_t slot = 0; slot < kProbScale; ++slot) {
      const std::uint32_t e = table.decode[slot];
      std::uint32_t tok = 0;
      while (table.cum[tok] + table.freq[tok] <= slot)
        ++tok;
      ASSERT_EQ(e & 0xFFFu, table.freq[tok]) << t << " " << slot;
      ASSERT_EQ((e >> 12) & 0xFFFu, slot - table.cum[tok]) << t << " " << slot;
      const std::uint32_t n = (e >> 24) & 0xFu;
      ASSERT_EQ(n, raw_bits_of(tok));
      for (std::uint32_t raw : {0u, 1u, (1u << n) - 1u}) {
        raw &= (1u << n) - 1u;
        ASSERT_EQ(((e >> 28) << n) | raw, value_of(tok, raw)) << t << " " << slot;
      }
    }
  }
}

TEST(Symbols, TokenOfInvertsValueOfForEveryValue) {
  for (std::uint32_t u = 0; u < 65536; ++u) {
    const TokenCode tc = token_of(u);
    ASSERT_LT(tc.token, kTokens);
    ASSERT_EQ(tc.raw_bits, raw_bits_of(tc.token));
    ASSERT_LT(tc.raw, 1u << tc.raw_bits);
    ASSERT_EQ(value_of(tc.token, tc.raw), u);
  }
}

}  // namespace
}  // namespace kvstream::codec
