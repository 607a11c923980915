// The AVX2 + F16C decoding paths for the commonest cases: quantized coding into fp16 or fp32, and
// lossless split16 into its own dtype, 8 lanes, channels a multiple of 8. They decode whole
// groups (FORMAT.md) exactly as the scalar loop does, bit for bit, and leave the rest of each
// substream to it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "kvstream/kv_cache.hpp"

namespace kvstream::codec {

struct SimdChannels {
  const std::int32_t* lut_offset;  // per channel: table id * 4096, into table_bank_luts()
  const float* step;
  std::size_t count;  // the coded channels of a row (FORMAT.md's C'), a multiple of 8
};

// One substream being decoded: where it is, and where its values go.
struct SimdJob {
  alignas(32) std::uint32_t x[8];  // the 8 lane states
  const std::byte* p;              // next word
  // How far reads may go: the end of the chunk. Words past the substream's own end belong to
  // the next one; a valid substream never consumes them, and the scalar code that finishes
  // every substream reports one that did, so the vector loops need not stop short of its end.
  const std::byte* limit;
  // For the substream that ends the chunk, whose words the decoder copies into a zero-padded
  // buffer so that the vector loops can finish it too: where the copy and the original begin
  // (p lies in the copy). Null otherwise.
  const std::byte* copy_begin;
  const std::byte* original_begin;
  std::uint32_t t, t_end;  // token (relative to the chunk) and its end
  std::uint32_t c;         // channel of the next value
  std::size_t left;        // values left in the substream
  std::byte* row;          // destination row of token t
  const SimdChannels* ch;
  // Per channel, the reference of its next value (FORMAT.md "Symbols"): the segment's centers,
  // or, for a previous-token segment, the job's own copy of them that decoding updates.
  std::int32_t* ref;
  bool predicted;
  const KvView* dst;
  std::uint32_t layer;
  KvPart part;
  std::uint32_t token_begin;  // the chunk's first token
  bool values_ok;             // split16: every exponent field was in range

  // Moves past a group of 8 values.
  void next_group() noexcept {
    left -= 8;
    c += 8;
    if (c == ch->count) {
      c = 0;
      if (++t < t_end) row = dst->row(layer, part, token_begin + t);
    }
  }
  // Moves past a whole row (c is 0).
  void next_row() noexcept {
    left -= ch->count;
    if (++t < t_end) row = dst->row(layer, part, token_begin + t);
  }
};

// For each refill mask (bit j: lane j takes a word), which of the 8 loaded words each lane
// takes: its rank among the lanes that refill, so that words go to lanes in lane order, as in
// the scalar decoder. Shared by the AVX2 and AVX-512 paths.
const std::array<std::array<std::int32_t, 8>, 256>& refill_permutations();

// True when this CPU runs the AVX2 + F16C path and it is enabled.
bool simd_decode_available() noexcept;
// Tests turn the path off to compare it with the scalar decoder (on by default).
void set_simd_decode_enabled(bool enabled) noexcept;

// True when the AVX-512 variants run: avx512_enabled() and the AVX2 paths are enabled.
bool avx512_decode_available() noexcept;
// The AVX-512 variants' whole rows, for jobs in pairs; they return how many leading jobs they
// took (the rest, and every job's last rows, are left to the AVX2 paths).
std::size_t decode_rows_quantized_f16_avx512(std::span<SimdJob> jobs) noexcept;
std::size_t decode_rows_quantized_f32_avx512(std::span<SimdJob> jobs) noexcept;
std::size_t decode_rows_split16_avx512(std::span<SimdJob> jobs, std::uint32_t shift,
                                       std::int32_t v_limit) noexcept;

// Zeros after a copied substream: at least what a row of groups reads (32 or 48 bytes per 8
// channels) for rows of up to 680 channels, so that the vector loops run to its end (wider rows
// finish on the slow paths, as without a copy). Copies are of substreams up to 64 KiB.
inline constexpr std::size_t kMaxRowBytesForCopy = 4096;
inline constexpr std::size_t kMaxCopiedSubstream = 65536;

// Decodes the groups of every job while a group cannot read past the job's limit (a group
// reads at most 16 words here). Jobs run four at a time: one substream's groups
// form a serial chain (gather, multiply, refill) and independent chains hide its latency.
void decode_jobs_quantized_f16_avx2(std::span<SimdJob> jobs) noexcept;

// The same into fp32 rows.
void decode_jobs_quantized_f32_avx2(std::span<SimdJob> jobs) noexcept;

// The same for lossless split16 segments decoded into their own 16-bit dtype (a bit copy):
// `shift` is the coding's R, `v_limit` 2^(15 - R). A job whose exponent field was out of range
// (the chunk is corrupt) ends with values_ok false.
void decode_jobs_split16_avx2(std::span<SimdJob> jobs, std::uint32_t shift,
                              std::int32_t v_limit) noexcept;

}  // namespace kvstream::codec
