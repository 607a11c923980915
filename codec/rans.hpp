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
