// Interleaved multi-lane rANS as FORMAT.md defines it: 32-bit states, 16-bit words, 12-bit
// token probabilities, raw-bit fields of up to 16 bits coded in the same lanes.
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

// Decoder-side reader of one substream's words; reports running past the end instead of
// reading past it.
class WordReader {
 public:
  WordReader(const std::byte* begin, std::size_t words) : p_(begin), left_(words) {}
  bool refill(std::uint32_t& x) noexcept {
    if (x >= kRansLow) return true;
    if (left_ == 0) return false;
    const auto lo = static_cast<std::uint32_t>(static_cast<unsigned char>(p_[0]));
    const auto hi = static_cast<std::uint32_t>(static_cast<unsigned char>(p_[1]));
    x = (x << 16) | lo | (hi << 8);
    p_ += 2;
    --left_;
    return true;
  }
  std::size_t left() const noexcept { return left_; }

 private:
  const std::byte* p_;
  std::size_t left_;
};

// Decodes one token from state x under table t; false when the words run out.
inline bool rans_get_token(std::uint32_t& x, const TokenTable& t, WordReader& words,
                           std::uint32_t& token) noexcept {
  const std::uint32_t slot = x & (kProbScale - 1);
  token = t.token_of_slot[slot];
  x = t.freq[token] * (x >> kProbBits) + slot - t.cum[token];
  return words.refill(x);
}

inline bool rans_get_raw(std::uint32_t& x, std::uint32_t bits, WordReader& words,
                         std::uint32_t& value) noexcept {
  value = x & ((1u << bits) - 1u);
  x >>= bits;
  return words.refill(x);
}

}  // namespace kvstream::codec
