// The encoder side of FORMAT.md's interleaved multi-lane rANS: 32-bit states, 16-bit words,
// 12-bit token probabilities, raw-bit fields of up to 16 bits coded in the same lanes. The
// decoders (decoder.cpp, decoder_avx2.cpp) read with the bank's packed lookups.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "table_bank.hpp"

namespace kvstream::codec {

inline constexpr std::uint32_t kRansLow = 1u << 16;  // states live in [2^16, 2^32)

// One value of a substream as the encoder sees it, in decode order.
struct RansValue {
  std::uint8_t token;
  std::uint8_t table;
  std::uint8_t raw_bits;    // the token's own raw bits
  std::uint8_t extra_bits;  // the coding's raw fields (lossless codings), 0..16 each
  std::uint8_t extra2_bits;
  std::uint16_t raw;
  std::uint16_t extra;
  std::uint16_t extra2;
};

struct RansStream {
  std::vector<std::uint16_t> words;   // in decoder read order
  std::vector<std::uint32_t> states;  // initial decoder state per lane
};

// Encodes `values` (value i in lane i % lanes, decoded group by group and step by step as
// FORMAT.md says) into `out`, reusing its storage.
void rans_encode(std::span<const RansValue> values, std::uint32_t lanes, RansStream& out);

}  // namespace kvstream::codec
