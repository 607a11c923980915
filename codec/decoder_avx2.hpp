// The AVX2 + F16C decoding path for the commonest case: quantized coding, fp16 output, 8 lanes,
// channels a multiple of 8. It decodes whole groups (FORMAT.md) exactly as the scalar loop
// does, bit for bit, and leaves the rest of a substream to it.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvstream/kv_cache.hpp"

namespace kvstream::codec {

struct SimdCursor {
  std::uint32_t* x;  // the 8 lane states
  const std::byte* p;
  const std::byte* end;
  std::uint32_t t, t_end;
  std::uint32_t c;
  std::size_t left;  // values left in the substream
  std::byte* row;

  // Moves past a group of 8 values of a row of `channels` (a multiple of 8).
  void next_group(std::size_t channels, const KvView& dst, std::uint32_t layer, KvPart part,
                  std::uint32_t token_begin) noexcept {
    left -= 8;
    c += 8;
    if (c == channels) {
      c = 0;
      if (++t < t_end) row = dst.row(layer, part, token_begin + t);
    }
  }
};

struct SimdChannels {
  const std::int32_t* lut_offset;  // per channel: table id * 4096, into table_bank_luts()
  const float* step;
  const std::int32_t* center;
  std::size_t count;  // C, a multiple of 8
};

// True when this CPU runs the AVX2 + F16C path and it is enabled.
bool simd_decode_available() noexcept;
// Tests turn the path off to compare it with the scalar decoder (on by default).
void set_simd_decode_enabled(bool enabled) noexcept;

// Decodes groups while at least 32 bytes of words remain (a group reads at most 16 words).
void decode_groups_quantized_f16_avx2(SimdCursor& cur, const SimdChannels& ch, const KvView& dst,
                                      std::uint32_t layer, KvPart part,
                                      std::uint32_t token_begin) noexcept;

// The same for lossless split16 segments decoded into their own 16-bit dtype (a bit copy):
// `shift` is the coding's R, `v_limit` 2^(15 - R). Returns false if some exponent field was
// out of range (the chunk is corrupt).
bool decode_groups_split16_avx2(SimdCursor& cur, const SimdChannels& ch, std::uint32_t shift,
                                std::int32_t v_limit, const KvView& dst, std::uint32_t layer,
                                KvPart part, std::uint32_t token_begin) noexcept;

}  // namespace kvstream::codec
