// AVX2 + F16C passes of the encoder over a segment's rows, bit for bit what the scalar code in
// encoder.cpp computes: channel statistics, quantization and tokenization in one sweep per
// pass, for channels a multiple of 8.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kvstream/kv_cache.hpp"
#include "symbols.hpp"

namespace kvstream::codec {

// The rows of one segment: tokens [begin, begin + tokens) of (layer, part).
struct SegmentRows {
  const KvView* src;
  std::uint32_t layer;
  KvPart part;
  std::uint32_t begin, tokens;
  std::size_t channels;  // a multiple of 8
  const std::byte* row(std::uint32_t t) const noexcept { return src->row(layer, part, begin + t); }
};

// A row of n values (a multiple of 8) as fp32 into `out`; false when one is not finite or its
// magnitude exceeds max_magnitude.
bool load_row_avx2(const std::byte* row, std::size_t n, DType dtype, float max_magnitude,
                   float* out);

// Lossy statistics in 16.16 fixed point: per channel the sum of x and the largest |x|. False
// when some value is not finite or |x| >= 2^15 (beyond the vector's 32-bit fixed point): the
// scalar code redoes the segment, and reports a bad value.
bool lossy_sums_avx2(const SegmentRows& rows, DType dtype, std::int64_t* sum, std::int64_t* absmax);
// Adds |x - mean| per channel (fixed point) to `dev`, and |x - x of the previous token| to
// `step_dev`.
void lossy_deviations_avx2(const SegmentRows& rows, DType dtype, const std::int64_t* mean,
                           std::int64_t* dev, std::int64_t* step_dev);
// How values are coded relative to references (FORMAT.md "Symbols").
struct References {
  const std::int32_t* center;
  bool previous_token;  // the previous-token predictor
  std::uint32_t per;    // tokens per substream: the center is the reference at their first
  std::int32_t* ref;    // scratch, one per channel
};

// v = round(x / step) clamped to +-32767, then the token and raw bits of
// zigzag(wrap16(v - reference)) per value, and the per-channel token histogram.
void lossy_tokenize_avx2(const SegmentRows& rows, DType dtype, const float* step,
                         const References& refs, std::uint8_t* token, std::uint16_t* raw,
                         std::uint32_t* hist);

// The same with AVX-512, for channels a multiple of 16 (encoder_avx512.cpp).
bool lossy_sums_avx512(const SegmentRows& rows, DType dtype, std::int64_t* sum,
                       std::int64_t* absmax);
void lossy_deviations_avx512(const SegmentRows& rows, DType dtype, const std::int64_t* mean,
                             std::int64_t* dev, std::int64_t* step_dev);
void lossy_tokenize_avx512(const SegmentRows& rows, DType dtype, const float* step,
                           const References& refs, std::uint8_t* token, std::uint16_t* raw,
                           std::uint32_t* hist);

// Split16 (f16 or bf16, R low mantissa bits): the per-channel sum of v = magnitude >> R.
void split16_sums_avx2(const SegmentRows& rows, std::uint32_t R, std::int64_t* sum);
// Tokens, raw bits, the raw field ((m mod 2^R) << 1) | sign and the histogram.
void split16_tokenize_avx2(const SegmentRows& rows, std::uint32_t R, const std::int32_t* center,
                           std::uint8_t* token, std::uint16_t* raw, std::uint32_t* extra,
                           std::uint32_t* hist);

void split16_tokenize_avx512(const SegmentRows& rows, std::uint32_t R, const std::int32_t* center,
                             std::uint8_t* token, std::uint16_t* raw, std::uint32_t* extra,
                             std::uint32_t* hist);

// Counts one row's tokens (C of them, a multiple of 8) into the per-channel histograms
// (kTokens counts per channel, channel after channel).
inline void count_row(const std::uint8_t* token, std::size_t C, std::uint32_t* hist) {
  // Eight channels per round at constant offsets: an increment is then a load of the token and
  // an add to memory, with no index arithmetic (this loop is most of the tokenizing pass).
  for (std::size_t c = 0; c < C; c += 8, token += 8, hist += 8 * kTokens) {
    ++hist[0 * kTokens + token[0]];
    ++hist[1 * kTokens + token[1]];
    ++hist[2 * kTokens + token[2]];
    ++hist[3 * kTokens + token[3]];
    ++hist[4 * kTokens + token[4]];
    ++hist[5 * kTokens + token[5]];
    ++hist[6 * kTokens + token[6]];
    ++hist[7 * kTokens + token[7]];
  }
}

// table_choice.hpp's cheapest table for each of C channels' histograms (kTokens counts each,
// of `values` values), with the pricing in vector dot products.
void choose_tables_avx2(const std::uint32_t* hist, std::size_t C, std::uint32_t values,
                        std::uint8_t* table);

}  // namespace kvstream::codec
