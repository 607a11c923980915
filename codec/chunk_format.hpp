// Constants and field helpers of the chunk format (codec/FORMAT.md), shared by the encoder
// and the decoder.
#pragma once

#include <array>
#include <cstdint>

namespace kvstream::codec {

inline constexpr char kMagic[4] = {'K', 'V', 'S', 'C'};
// Encoders write kVersion; decoders read every version from 1 (FORMAT.md: version 2 added the
// segments' constant tails).
inline constexpr std::uint16_t kVersion = 2;
inline constexpr std::uint16_t kOldestVersion = 1;
inline constexpr std::uint32_t kHeaderSize = 48;
inline constexpr std::uint32_t kHeaderCrcOffset = 44;
inline constexpr std::uint32_t kSegmentEntrySize = 12;
inline constexpr std::uint32_t kSegmentFixedSize = 8;
inline constexpr std::uint32_t kMaxChannels = 65536;
inline constexpr std::uint32_t kMaxTokens = 65536;
inline constexpr std::uint32_t kMaxLayers = 65535;
// Lossy levels refuse values beyond +-2^30 (and non-finite ones): it keeps every encoder's
// 16.16 fixed-point channel sums within int64.
inline constexpr float kMaxLossyMagnitude = 1073741824.0f;
// Header flags: the chunk codes transform coefficients (FORMAT.md "Transform coding").
inline constexpr std::uint16_t kFlagTransform = 1;

// verbatim: a lossless segment's values as they are (FORMAT.md "Codings"), decoded by a copy.
enum class Coding : std::uint8_t { quantized = 0, split16 = 1, split32 = 2, verbatim = 3 };

// What a segment's values are coded relative to (FORMAT.md "Symbols").
enum class Predictor : std::uint8_t { none = 0, previous_token = 1 };

// Lossless codings entropy-code the exponent and top two mantissa bits (v = magnitude >> R) and
// send the R low mantissa bits and the sign raw.
constexpr std::uint32_t split_shift(std::uint8_t dtype) noexcept {
  return dtype == 0 ? 21 : dtype == 1 ? 8 : 5;  // f32, f16, bf16
}

constexpr bool valid_lanes(std::uint32_t l) noexcept {
  return l == 1 || l == 2 || l == 4 || l == 8 || l == 16 || l == 32;
}

// How many trailing channels of C a quantized segment leaves out of its words (FORMAT.md
// "Constant tail"), given whether every value of channel c equals its center (`constant(c)`):
// the longest such run, less as few channels as keep C - tail a multiple of 8 when C is one.
// Written once for the CPU encoder and the GPU one.
template <class Constant>
constexpr std::uint32_t constant_tail(std::uint32_t C, Constant&& constant) noexcept {
  std::uint32_t coded = C;
  while (coded > 0 && constant(coded - 1))
    --coded;
  if (C % 8 == 0) coded = (coded + 7) / 8 * 8;
  const std::uint32_t tail = C - coded;
  return tail > 65535 ? 65535 : tail;  // the field's width (only C = 65536 can reach it)
}

// Step of a quantized channel: (8 + (s & 7)) * 2^((s >> 3) - 19), exact in fp32.
constexpr float step_of_code(std::uint32_t s) noexcept {
  float v = static_cast<float>(8 + (s & 7u));
  int e = static_cast<int>(s >> 3) - 19;
  for (; e > 0; --e)
    v *= 2.0f;
  for (; e < 0; ++e)
    v *= 0.5f;
  return v;
}

// step_of_code of every code, computed once (the decoder looks up every channel's step).
inline const std::array<float, 256>& step_table() {
  static const std::array<float, 256> steps = [] {
    std::array<float, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i)
      t[i] = step_of_code(i);
    return t;
  }();
  return steps;
}

}  // namespace kvstream::codec
