// The entropy coder on its own: how close it codes to the entropy of what it is given, and the
// decoder's packed table entries against the symbol mapping of FORMAT.md.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "rans.hpp"
#include "rans_avx2.hpp"
#include "symbols.hpp"
#include "table_bank.hpp"

namespace kvstream::codec {
namespace {

// Symbols of `channels` channels, channel c drawn from bank table tables[c % size] (by
// inverting its cumulative frequencies), with raw bits as the format gives them and, when
// extra_bits > 0, a lossless raw field.
struct Drawn {
  std::vector<std::uint8_t> tokens;
  std::vector<std::uint16_t> raw;
  std::vector<std::uint32_t> extra, table_row;
  std::uint32_t extra_bits = 0;
  double entropy_bits = 0;  // of the tokens under their tables, plus every raw bit
  RansSymbols symbols() const {
    return {tokens.data(), raw.data(),       extra_bits ? extra.data() : nullptr,
            extra_bits,    table_row.data(), table_row.size()};
  }
};

Drawn draw(std::span<const std::uint32_t> tables, std::size_t channels, std::size_t n,
           std::uint32_t extra_bits, std::mt19937& rng) {
  Drawn d;
  d.extra_bits = extra_bits;
  for (std::size_t c = 0; c < channels; ++c)
    d.table_row.push_back(tables[c % tables.size()] * kTokens);
  std::uniform_int_distribution<std::uint32_t> slot(0, kProbScale - 1);
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint32_t table = d.table_row[i % channels] / kTokens;
    const TokenTable& t = table_bank()[table];
    const std::uint32_t s = slot(rng);
    std::uint32_t tok = 0;
    while (t.cum[tok] + t.freq[tok] <= s)
      ++tok;
    const std::uint32_t nraw = raw_bits_of(tok);
    d.tokens.push_back(static_cast<std::uint8_t>(tok));
    d.raw.push_back(static_cast<std::uint16_t>(rng() & ((1u << nraw) - 1u)));
    d.extra.push_back(static_cast<std::uint32_t>(rng() & ((1ull << extra_bits) - 1u)));
    d.entropy_bits += kProbBits - std::log2(t.freq[tok]) + nraw + extra_bits;
  }
  return d;
}

TEST(Rans, PayloadIsWithinTwoPercentOfTheEntropyUnderTheTablesUsed) {
  std::mt19937 rng(5);
  // Narrow (many small tokens, few raw bits) to wide (raw bits dominate) tables, both shapes.
  for (std::uint32_t table : {0u, 7u, 20u, 21u, 40u, 63u, 79u}) {
    for (std::uint32_t lanes : {1u, 8u, 32u}) {
      const std::uint32_t tables[] = {table};
      const Drawn d = draw(tables, 8, 1 << 16, 0, rng);
      RansStream out;
      const RansSymbols sym = d.symbols();
      const RansJob job{&sym, 0, d.tokens.size(), lanes, &out};
      rans_encode(std::span(&job, 1));
      // The payload: the word stream. The lane states are side information of 32 bits each.
      const double payload_bits = 16.0 * static_cast<double>(out.words().size());
      EXPECT_LT(std::fabs(payload_bits / d.entropy_bits - 1.0), 0.02)
          << "table " << table << ", " << lanes << " lanes: " << payload_bits << " bits for "
          << d.entropy_bits << " bits of entropy";
    }
  }
}

TEST(Rans, VectorEncoderMatchesScalarBitForBit) {
  if (!simd_encode_available()) GTEST_SKIP() << "this CPU has no AVX2";
  std::mt19937 rng(9);
  const std::uint32_t tables[] = {0, 13, 30, 31, 55, 79, 2, 41, 8, 66};
  for (std::uint32_t extra_bits : {0u, 6u, 9u, 16u}) {
    for (std::size_t channels : {8u, 24u, 64u}) {
      // Nine jobs: six of one length, two of another, one alone, so that every batching of
      // the vector path runs (four, two or one job). A job may start past the first token, as
      // the second substream of a segment does.
      constexpr int kJobs = 9;
      std::vector<Drawn> drawn;
      std::vector<RansSymbols> symbols;
      for (int j = 0; j < kJobs; ++j)
        drawn.push_back(draw(tables, channels, channels * (j < 8 ? 37 : 11), extra_bits, rng));
      for (const Drawn& d : drawn)
        symbols.push_back(d.symbols());
      std::vector<RansStream> vec(kJobs), ref(kJobs);
      std::vector<RansJob> jobs;
      for (int j = 0; j < kJobs; ++j) {
        const std::size_t first = channels * (j < 6 ? 5 : j < 8 ? 2 : 0);
        jobs.push_back({&symbols[j], first, drawn[j].tokens.size(), 8, &vec[j]});
      }
      rans_encode(jobs);
      for (int j = 0; j < kJobs; ++j) {
        rans_encode_scalar(symbols[j], jobs[j].first, jobs[j].last, 8, ref[j]);
        ASSERT_EQ(vec[j].states, ref[j].states) << extra_bits << " " << channels << " " << j;
        ASSERT_TRUE(std::ranges::equal(vec[j].words(), ref[j].words()))
            << extra_bits << " " << channels << " " << j;
      }
    }
  }
}

TEST(TableBank, DivisionByReciprocalIsExact) {
  std::mt19937 rng(3);
  for (std::uint32_t freq = 1; freq < kProbScale; ++freq) {
    const std::uint32_t rcp = freq_reciprocal(freq);
    const std::uint32_t r1 = rng(), r2 = rng(), r3 = rng();
    for (std::uint32_t x : {0u, 1u, freq - 1, freq, freq + 1, 0xFFFFFFFFu, 0xFFFFFFFFu - freq,
                            freq << 20, (freq << 20) - 1, r1, r2, r3}) {
      const QuotientRemainder qr = divide_by_freq(x, freq, rcp);
      ASSERT_EQ(qr.q, x / freq) << x << " / " << freq;
      ASSERT_EQ(qr.r, x % freq) << x << " % " << freq;
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
