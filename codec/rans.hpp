// The encoder side of FORMAT.md's interleaved multi-lane rANS: 32-bit states, 16-bit words,
// 12-bit token probabilities, raw-bit fields of up to 16 bits coded in the same lanes. The
// decoders (decoder.cpp, decoder_avx2.cpp) read with the bank's packed lookups.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "table_bank.hpp"

namespace kvstream::codec {

inline constexpr std::uint32_t kRansLow = 1u << 16;  // states live in [2^16, 2^32)

// A segment's symbols, as the encoder has them (structure of arrays). Value i is channel
// i % channels; the substreams passed to rans_encode start on a token, so on channel 0.
struct RansSymbols {
  const std::uint8_t* tokens;
  const std::uint16_t* raw;        // the tokens' raw bits: raw_bits_of(token) of them
  const std::uint32_t* extra;      // lossless codings' raw field; null for none
  std::uint32_t extra_bits;        // its width: 0, R + 1 (split16) or 22 (split32: 16 + 6)
  const std::uint32_t* table_row;  // per channel: its table id * kTokens
  std::size_t channels;
};

struct RansStream {
  std::vector<std::uint16_t> buffer;  // the words lie at the end of it
  std::size_t begin = 0;
  std::vector<std::uint32_t> states;  // initial decoder state per lane
  std::span<const std::uint16_t> words() const noexcept { return std::span(buffer).subspan(begin); }
};

// One substream to encode: values [first, last) of `symbols`, value i in lane
// (i - first) % lanes, decoded group by group and step by step as FORMAT.md says.
struct RansJob {
  const RansSymbols* symbols;
  std::size_t first, last;
  std::uint32_t lanes;
  RansStream* out;  // its storage is reused
};

// The state's words go out last-in first-out: the buffer fills from its end backwards, so
// the decoder reads it forwards.
struct BackWriter {
  std::uint16_t* base;
  std::size_t pos;
  constexpr void put(std::uint16_t w) noexcept { base[--pos] = w; }
};

constexpr void rans_put_raw(std::uint32_t& x, std::uint32_t value, std::uint32_t bits,
                            BackWriter& w) noexcept {
  // One renormalisation at most: after it x < 2^16 <= 2^(32 - bits).
  if (bits != 0 && (x >> (32 - bits)) != 0) {
    w.put(static_cast<std::uint16_t>(x & 0xFFFF));
    x >>= 16;
  }
  x = (x << bits) | value;
}

constexpr void rans_put_token(std::uint32_t& x, std::uint32_t freq_cum, std::uint32_t rcp,
                              BackWriter& w) noexcept {
  const std::uint32_t freq = freq_cum & 0xFFFF, cum = freq_cum >> 16;
  if ((x >> (32 - kProbBits)) >= freq) {  // x >= freq * 2^20: one word brings it below
    w.put(static_cast<std::uint16_t>(x & 0xFFFF));
    x >>= 16;
  }
  const QuotientRemainder qr = divide_by_freq(x, freq, rcp);
  x = (qr.q << kProbBits) + qr.r + cum;
}

// The scalar encoding of values [first, last) of `s` into lanes states x[0..lanes) (each
// starting at kRansLow) and words before w.pos, with the bank's lookups (table_bank_freq_cum,
// table_bank_reciprocals). Plain constexpr code, so that the GPU encoder's threads run it too.
constexpr void rans_encode_values(const RansSymbols& s, std::size_t first, std::size_t last,
                                  std::uint32_t lanes, const std::uint32_t* freq_cum,
                                  const std::uint32_t* rcp, std::uint32_t* x,
                                  BackWriter& w) noexcept {
  const std::size_t n = last - first;
  const std::uint32_t extra_bits = s.extra_bits < 16 ? s.extra_bits : 16;
  const std::uint32_t extra2_bits = s.extra_bits > 16 ? s.extra_bits - 16 : 0;
  // The decoder works group by group (one value per lane), step by step across the group's
  // lanes (FORMAT.md), so the encoder undoes exactly that: last group first, last step first,
  // last lane first.
  for (std::size_t g = (n + lanes - 1) / lanes; g-- > 0;) {
    const std::size_t b = first + g * lanes;
    const std::size_t count = last - b < lanes ? last - b : lanes;
    if (extra2_bits != 0) {
      for (std::size_t j = count; j-- > 0;)
        rans_put_raw(x[j], s.extra[b + j] >> 16, extra2_bits, w);
    }
    if (extra_bits != 0) {
      for (std::size_t j = count; j-- > 0;)
        rans_put_raw(x[j], s.extra[b + j] & 0xFFFF, extra_bits, w);
    }
    for (std::size_t j = count; j-- > 0;)
      rans_put_raw(x[j], s.raw[b + j], raw_bits_of(s.tokens[b + j]), w);
    for (std::size_t j = count; j-- > 0;) {
      const std::size_t k = s.table_row[(b + j) % s.channels] + s.tokens[b + j];
      rans_put_token(x[j], freq_cum[k], rcp[k], w);
    }
  }
}

// Encodes every job; independent jobs of equal length run side by side on the vector path.
void rans_encode(std::span<const RansJob> jobs);

// The scalar encoder, whatever the CPU (tests compare it with the vector one).
void rans_encode_scalar(const RansSymbols& symbols, std::size_t first, std::size_t last,
                        std::uint32_t lanes, RansStream& out);

// How many words encoding `values` values can write at most, plus the vector encoder's slack.
constexpr std::size_t rans_word_bound(std::size_t values, std::uint32_t extra_bits) noexcept {
  return values * (extra_bits == 0 ? 2 : extra_bits <= 16 ? 3 : 4) + 16;
}

}  // namespace kvstream::codec
