#include "encoder_avx2.hpp"

#include <immintrin.h>

#include <algorithm>
#include <bit>

#include "symbols.hpp"
#include "table_choice.hpp"

namespace kvstream::codec {

namespace {

#define KVS_TARGET __attribute__((target("avx2,f16c"), always_inline)) inline

// 8 values of a row as fp32, whatever the dtype (each conversion is exact).
KVS_TARGET __m256 load8(const std::byte* row, std::size_t c, DType dtype) {
  switch (dtype) {
    case DType::f32:
      return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + c);
    case DType::f16:
      return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c)));
    case DType::bf16:
      break;
  }
  const __m256i h =
      _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(h, 16));
}

// x in 16.16 fixed point, truncated toward zero; exact for |x| < 2^15, as the scalar
// double-precision product is.
KVS_TARGET __m256i fixed(__m256 x) {
  return _mm256_cvttps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(65536.0f)));
}

// 8 int64 accumulators, kept in registers over a channel block's tokens.
struct Acc64 {
  __m256i lo, hi;
  // Adds the 8 lanes of `v`, as signed or unsigned 32-bit values.
  template <bool kSigned>
  KVS_TARGET void add(__m256i v) {
    const __m128i a = _mm256_castsi256_si128(v), b = _mm256_extracti128_si256(v, 1);
    lo = _mm256_add_epi64(lo, kSigned ? _mm256_cvtepi32_epi64(a) : _mm256_cvtepu32_epi64(a));
    hi = _mm256_add_epi64(hi, kSigned ? _mm256_cvtepi32_epi64(b) : _mm256_cvtepu32_epi64(b));
  }
  KVS_TARGET void add_to(std::int64_t* out) const {
    auto* p = reinterpret_cast<__m256i*>(out);
    _mm256_storeu_si256(p, _mm256_add_epi64(_mm256_loadu_si256(p), lo));
    _mm256_storeu_si256(p + 1, _mm256_add_epi64(_mm256_loadu_si256(p + 1), hi));
  }
};

// Token and raw bits of d (FORMAT.md "Symbols"), d already wrapped to 16 bits.
KVS_TARGET void tokenize8(__m256i d, std::uint8_t* token, std::uint16_t* raw) {
  const __m256i u = _mm256_xor_si256(_mm256_slli_epi32(d, 1), _mm256_srai_epi32(d, 31));
  const __m256i big = _mm256_cmpgt_epi32(u, _mm256_set1_epi32(15));
  // floor(log2 u) from the exponent of u as fp32 (exact: u < 2^24).
  const __m256i n = _mm256_sub_epi32(
      _mm256_srli_epi32(_mm256_castps_si256(_mm256_cvtepi32_ps(u)), 23), _mm256_set1_epi32(127));
  const __m256i nraw = _mm256_sub_epi32(n, _mm256_set1_epi32(2));
  const __m256i tok_big = _mm256_add_epi32(
      _mm256_slli_epi32(n, 2), _mm256_and_si256(_mm256_srlv_epi32(u, nraw), _mm256_set1_epi32(3)));
  const __m256i ones = _mm256_cmpeq_epi32(u, u);
  const __m256i r = _mm256_and_si256(big, _mm256_andnot_si256(_mm256_sllv_epi32(ones, nraw), u));
  const __m256i t = _mm256_blendv_epi8(u, tok_big, big);
  // 8 x 32-bit -> 8 x 16-bit (in-lane packs, then the two halves together).
  const __m128i t16 =
      _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(t, t), 0x08));
  const __m128i r16 =
      _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(token), _mm_packus_epi16(t16, t16));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(raw), r16);
}

}  // namespace

__attribute__((target("avx2,f16c"))) bool lossy_sums_avx2(const SegmentRows& rows, DType dtype,
                                                          std::int64_t* sum, std::int64_t* absmax) {
  const std::size_t C = rows.channels;
  const __m256 limit = _mm256_set1_ps(32768.0f);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 in_range = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (std::size_t c = 0; c < C; c += 8) {
    __m256i mx = _mm256_setzero_si256();
    Acc64 acc{_mm256_setzero_si256(), _mm256_setzero_si256()};
    for (std::uint32_t t = 0; t < rows.tokens; ++t) {
      const __m256 x = load8(rows.row(t), c, dtype);
      // Ordered compare: false for NaN as for infinities and large values.
      in_range =
          _mm256_and_ps(in_range, _mm256_cmp_ps(_mm256_and_ps(x, abs_mask), limit, _CMP_LT_OQ));
      const __m256i xf = fixed(x);
      mx = _mm256_max_epi32(mx, _mm256_abs_epi32(xf));
      acc.add<true>(xf);
    }
    acc.add_to(sum + c);
    alignas(32) std::int32_t m[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(m), mx);
    for (int j = 0; j < 8; ++j)
      absmax[c + j] = m[j];
  }
  return _mm256_movemask_ps(in_range) == 0xFF;
}

__attribute__((target("avx2,f16c"))) bool load_row_avx2(const std::byte* row, std::size_t n,
                                                        DType dtype, float max_magnitude,
                                                        float* out) {
  const __m256 max = _mm256_set1_ps(max_magnitude);
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 ok = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (std::size_t c = 0; c < n; c += 8) {
    const __m256 v = load8(row, c, dtype);
    _mm256_storeu_ps(out + c, v);
    ok = _mm256_and_ps(ok, _mm256_cmp_ps(_mm256_and_ps(v, abs_mask), max, _CMP_LE_OQ));
  }
  return _mm256_movemask_ps(ok) == 0xFF;
}

__attribute__((target("avx2,f16c"))) void lossy_deviations_avx2(const SegmentRows& rows,
                                                                DType dtype,
                                                                const std::int64_t* mean,
                                                                std::int64_t* dev,
                                                                std::int64_t* step_dev) {
  const std::size_t C = rows.channels;
  for (std::size_t c = 0; c < C; c += 8) {
    // |mean| <= max |x| < 2^31; |xf - mean| < 2^32 as an unsigned difference of max and min.
    alignas(32) std::int32_t m32[8];
    for (int j = 0; j < 8; ++j)
      m32[j] = static_cast<std::int32_t>(mean[c + j]);
    const __m256i m = _mm256_load_si256(reinterpret_cast<const __m256i*>(m32));
    Acc64 acc{_mm256_setzero_si256(), _mm256_setzero_si256()};
    Acc64 step_acc{_mm256_setzero_si256(), _mm256_setzero_si256()};
    __m256i prev = fixed(load8(rows.row(0), c, dtype));
    for (std::uint32_t t = 0; t < rows.tokens; ++t) {
      const __m256i xf = fixed(load8(rows.row(t), c, dtype));
      acc.add<false>(_mm256_sub_epi32(_mm256_max_epi32(xf, m), _mm256_min_epi32(xf, m)));
      step_acc.add<false>(_mm256_sub_epi32(_mm256_max_epi32(xf, prev), _mm256_min_epi32(xf, prev)));
      prev = xf;
    }
    acc.add_to(dev + c);
    step_acc.add_to(step_dev + c);
  }
}

__attribute__((target("avx2,f16c"))) void lossy_tokenize_avx2(
    const SegmentRows& rows, DType dtype, const float* step, const References& refs,
    std::uint8_t* token, std::uint16_t* raw, std::uint32_t* hist) {
  const std::size_t C = rows.channels;
  const __m256 lo = _mm256_set1_ps(-32767.0f), hi = _mm256_set1_ps(32767.0f);
  std::int32_t* ref = refs.ref;
  for (std::uint32_t t = 0; t < rows.tokens; ++t) {
    const std::byte* row = rows.row(t);
    const std::size_t i = std::size_t{t} * C;
    if (t % refs.per == 0) std::copy(refs.center, refs.center + C, ref);
    for (std::size_t c = 0; c < C; c += 8) {
      const __m256 q =
          _mm256_round_ps(_mm256_div_ps(load8(row, c, dtype), _mm256_loadu_ps(step + c)),
                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256i v = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(q, lo), hi));
      const __m256i d =
          _mm256_sub_epi32(v, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ref + c)));
      if (refs.previous_token) _mm256_storeu_si256(reinterpret_cast<__m256i*>(ref + c), v);
      tokenize8(_mm256_srai_epi32(_mm256_slli_epi32(d, 16), 16), token + i + c, raw + i + c);
    }
    count_row(token + i, C, hist);
  }
}

__attribute__((target("avx2,f16c"))) void split16_sums_avx2(const SegmentRows& rows,
                                                            std::uint32_t R, std::int64_t* sum) {
  const std::size_t C = rows.channels;
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(R));
  for (std::size_t c = 0; c < C; c += 8) {
    __m256i acc = _mm256_setzero_si256();  // v < 2^10: 32 bits hold 2^21 tokens of them
    for (std::uint32_t t = 0; t < rows.tokens; ++t) {
      const __m256i h = _mm256_cvtepu16_epi32(
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows.row(t) + 2 * c)));
      acc = _mm256_add_epi32(
          acc, _mm256_srl_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7FFF)), shift));
    }
    Acc64 wide{_mm256_setzero_si256(), _mm256_setzero_si256()};
    wide.add<false>(acc);
    wide.add_to(sum + c);
  }
}

__attribute__((target("avx2,f16c"))) void split16_tokenize_avx2(
    const SegmentRows& rows, std::uint32_t R, const std::int32_t* center, std::uint8_t* token,
    std::uint16_t* raw, std::uint32_t* extra, std::uint32_t* hist) {
  const std::size_t C = rows.channels;
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(R));
  const __m256i low_mask = _mm256_set1_epi32(static_cast<int>((1u << R) - 1u));
  for (std::uint32_t t = 0; t < rows.tokens; ++t) {
    const std::byte* row = rows.row(t);
    const std::size_t i = std::size_t{t} * C;
    for (std::size_t c = 0; c < C; c += 8) {
      const __m256i h =
          _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c)));
      const __m256i m = _mm256_and_si256(h, _mm256_set1_epi32(0x7FFF));
      const __m256i e = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(m, low_mask), 1),
                                        _mm256_srli_epi32(h, 15));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(extra + i + c), e);
      const __m256i d =
          _mm256_sub_epi32(_mm256_srl_epi32(m, shift),
                           _mm256_loadu_si256(reinterpret_cast<const __m256i*>(center + c)));
      tokenize8(_mm256_srai_epi32(_mm256_slli_epi32(d, 16), 16), token + i + c, raw + i + c);
    }
    count_row(token + i, C, hist);
  }
}

namespace {

// A histogram priced under a table's code lengths: sum of count x cost, exact in 32 bits.
// Counts past `end` (a multiple of 8) are zero.
KVS_TARGET std::uint32_t histogram_cost(const std::uint32_t* hist, const std::uint32_t* cost,
                                        std::uint32_t end) {
  __m256i acc = _mm256_setzero_si256();
  for (std::uint32_t k = 0; k < end; k += 8) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hist + k));
    const __m256i c = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cost + k));
    acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(h, c));
  }
  const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  const __m128i s2 = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  return static_cast<std::uint32_t>(
      _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_shuffle_epi32(s2, 0xB1))));
}

// The sum of count x weight[token] in 64 bits.
KVS_TARGET std::uint64_t histogram_weight(const std::uint32_t* hist, const std::uint32_t* weight,
                                          std::uint32_t end) {
  __m256i acc = _mm256_setzero_si256();  // 4 x u64
  for (std::uint32_t k = 0; k < end; k += 8) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hist + k));
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(weight + k));
    acc = _mm256_add_epi64(acc, _mm256_mul_epu32(h, w));  // even lanes
    acc =
        _mm256_add_epi64(acc, _mm256_mul_epu32(_mm256_srli_epi64(h, 32), _mm256_srli_epi64(w, 32)));
  }
  alignas(32) std::uint64_t lanes[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}

// One past the last block of 8 tokens with a nonzero count (channels rarely use the long tail
// of tokens, and pricing skips it).
KVS_TARGET std::uint32_t used_end(const std::uint32_t* hist) {
  std::uint32_t nonzero = 0;  // bit b: block b has a count
  for (std::uint32_t b = 0; b < kTokens / 8; ++b) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(hist + 8 * b));
    nonzero |= static_cast<std::uint32_t>(_mm256_testz_si256(h, h) == 0) << b;
  }
  return 8 * static_cast<std::uint32_t>(std::bit_width(nonzero));
}

}  // namespace

__attribute__((target("avx2,f16c"))) void choose_tables_avx2(const std::uint32_t* hist,
                                                             std::size_t C, std::uint32_t values,
                                                             std::uint8_t* table) {
  const auto& bank = table_bank();
  const std::uint32_t* weights = token_weights().data();
  const double* bounds = spread_bounds().data();
  for (std::size_t c = 0; c < C; ++c) {
    const std::uint32_t* h = hist + c * kTokens;
    const std::uint32_t end = used_end(h);
    const auto cost = [&](std::uint32_t t) __attribute__((target("avx2,f16c"))) {
      return histogram_cost(h, bank[t].cost.data(), end);
    };
    table[c] = static_cast<std::uint8_t>(
        cheapest_table(spread_guess(bounds, histogram_weight(h, weights, end), values), cost));
  }
}

}  // namespace kvstream::codec
