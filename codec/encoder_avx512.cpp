// AVX-512 variants of encoder_avx2.cpp's tokenizing passes: 16 values per vector, and the
// narrowing of tokens and raw bits in one instruction each. Bit for bit the scalar encoder.
// GCC 12's AVX-512 intrinsics trip -Wmaybe-uninitialized (see decoder_avx512.cpp).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <algorithm>

#include "encoder_avx2.hpp"
#include "symbols.hpp"

namespace kvstream::codec {

namespace {

#define KVS_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c"), always_inline)) inline

KVS_TARGET __m512 load16(const std::byte* row, std::size_t c, DType dtype) {
  switch (dtype) {
    case DType::f32:
      return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + c);
    case DType::f16:
      return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * c)));
    case DType::bf16:
      break;
  }
  const __m512i h =
      _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * c)));
  return _mm512_castsi512_ps(_mm512_slli_epi32(h, 16));
}

// Token and raw bits of d (FORMAT.md "Symbols"), d already wrapped to 16 bits.
KVS_TARGET void tokenize16(__m512i d, std::uint8_t* token, std::uint16_t* raw) {
  const __m512i u = _mm512_xor_si512(_mm512_slli_epi32(d, 1), _mm512_srai_epi32(d, 31));
  const __mmask16 big = _mm512_cmpgt_epi32_mask(u, _mm512_set1_epi32(15));
  // floor(log2 u) from the exponent of u as fp32 (exact: u < 2^24).
  const __m512i n = _mm512_sub_epi32(
      _mm512_srli_epi32(_mm512_castps_si512(_mm512_cvtepi32_ps(u)), 23), _mm512_set1_epi32(127));
  const __m512i nraw = _mm512_sub_epi32(n, _mm512_set1_epi32(2));
  const __m512i tok_big = _mm512_add_epi32(
      _mm512_slli_epi32(n, 2), _mm512_and_si512(_mm512_srlv_epi32(u, nraw), _mm512_set1_epi32(3)));
  const __m512i r =
      _mm512_maskz_andnot_epi32(big, _mm512_sllv_epi32(_mm512_set1_epi32(-1), nraw), u);
  const __m512i t = _mm512_mask_blend_epi32(big, u, tok_big);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(token), _mm512_cvtepi32_epi8(t));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(raw), _mm512_cvtepi32_epi16(r));
}

// x in 16.16 fixed point, truncated toward zero (exact for |x| < 2^15; encoder_avx2.cpp).
KVS_TARGET __m512i fixed(__m512 x) {
  return _mm512_cvttps_epi32(_mm512_mul_ps(x, _mm512_set1_ps(65536.0f)));
}

// 16 int64 accumulators, kept in registers over a channel block's tokens.
struct Acc64 {
  __m512i lo, hi;
  template <bool kSigned>
  KVS_TARGET void add(__m512i v) {
    const __m256i a = _mm512_castsi512_si256(v), b = _mm512_extracti64x4_epi64(v, 1);
    lo = _mm512_add_epi64(lo, kSigned ? _mm512_cvtepi32_epi64(a) : _mm512_cvtepu32_epi64(a));
    hi = _mm512_add_epi64(hi, kSigned ? _mm512_cvtepi32_epi64(b) : _mm512_cvtepu32_epi64(b));
  }
  KVS_TARGET void add_to(std::int64_t* out) const {
    _mm512_storeu_si512(out, _mm512_add_epi64(_mm512_loadu_si512(out), lo));
    _mm512_storeu_si512(out + 8, _mm512_add_epi64(_mm512_loadu_si512(out + 8), hi));
  }
};

}  // namespace

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c"))) bool lossy_sums_avx512(
    const SegmentRows& rows, DType dtype, std::int64_t* sum, std::int64_t* absmax) {
  const std::size_t C = rows.channels;
  const __m512 limit = _mm512_set1_ps(32768.0f);
  __mmask16 in_range = 0xFFFF;
  for (std::size_t c = 0; c < C; c += 16) {
    __m512i mx = _mm512_setzero_si512();
    Acc64 acc{_mm512_setzero_si512(), _mm512_setzero_si512()};
    for (std::uint32_t t = 0; t < rows.tokens; ++t) {
      const __m512 x = load16(rows.row(t), c, dtype);
      // Ordered compare: false for NaN as for infinities and large values.
      in_range &= _mm512_cmp_ps_mask(_mm512_abs_ps(x), limit, _CMP_LT_OQ);
      const __m512i xf = fixed(x);
      mx = _mm512_max_epi32(mx, _mm512_abs_epi32(xf));
      acc.add<true>(xf);
    }
    acc.add_to(sum + c);
    _mm512_storeu_si512(absmax + c, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(mx)));
    _mm512_storeu_si512(absmax + c + 8, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(mx, 1)));
  }
  return in_range == 0xFFFF;
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c"))) void
lossy_deviations_avx512(const SegmentRows& rows, DType dtype, const std::int64_t* mean,
                        std::int64_t* dev, std::int64_t* step_dev) {
  const std::size_t C = rows.channels;
  for (std::size_t c = 0; c < C; c += 16) {
    // |mean| <= max |x| < 2^31; |xf - mean| < 2^32 as an unsigned difference of max and min.
    const __m512i m = _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm512_cvtepi64_epi32(_mm512_loadu_si512(mean + c))),
        _mm512_cvtepi64_epi32(_mm512_loadu_si512(mean + c + 8)), 1);
    Acc64 acc{_mm512_setzero_si512(), _mm512_setzero_si512()};
    Acc64 step_acc{_mm512_setzero_si512(), _mm512_setzero_si512()};
    __m512i prev = fixed(load16(rows.row(0), c, dtype));
    for (std::uint32_t t = 0; t < rows.tokens; ++t) {
      const __m512i xf = fixed(load16(rows.row(t), c, dtype));
      acc.add<false>(_mm512_sub_epi32(_mm512_max_epi32(xf, m), _mm512_min_epi32(xf, m)));
      step_acc.add<false>(_mm512_sub_epi32(_mm512_max_epi32(xf, prev), _mm512_min_epi32(xf, prev)));
      prev = xf;
    }
    acc.add_to(dev + c);
    step_acc.add_to(step_dev + c);
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c"))) void lossy_tokenize_avx512(
    const SegmentRows& rows, DType dtype, const float* step, const References& refs,
    std::uint8_t* token, std::uint16_t* raw, std::uint32_t* hist) {
  const std::size_t C = rows.channels;
  const __m512 lo = _mm512_set1_ps(-32767.0f), hi = _mm512_set1_ps(32767.0f);
  std::int32_t* ref = refs.ref;
  for (std::uint32_t t = 0; t < rows.tokens; ++t) {
    const std::byte* row = rows.row(t);
    const std::size_t i = std::size_t{t} * C;
    if (t % refs.per == 0) std::copy(refs.center, refs.center + C, ref);
    for (std::size_t c = 0; c < C; c += 16) {
      const __m512 q =
          _mm512_roundscale_ps(_mm512_div_ps(load16(row, c, dtype), _mm512_loadu_ps(step + c)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m512i v = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(q, lo), hi));
      const __m512i d = _mm512_sub_epi32(v, _mm512_loadu_si512(ref + c));
      if (refs.previous_token) _mm512_storeu_si512(ref + c, v);
      tokenize16(_mm512_srai_epi32(_mm512_slli_epi32(d, 16), 16), token + i + c, raw + i + c);
    }
    count_row(token + i, C, hist);
  }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c"))) void
split16_tokenize_avx512(const SegmentRows& rows, std::uint32_t R, const std::int32_t* center,
                        std::uint8_t* token, std::uint16_t* raw, std::uint32_t* extra,
                        std::uint32_t* hist) {
  const std::size_t C = rows.channels;
  const __m128i shift = _mm_cvtsi32_si128(static_cast<int>(R));
  const __m512i low_mask = _mm512_set1_epi32(static_cast<int>((1u << R) - 1u));
  for (std::uint32_t t = 0; t < rows.tokens; ++t) {
    const std::byte* row = rows.row(t);
    const std::size_t i = std::size_t{t} * C;
    for (std::size_t c = 0; c < C; c += 16) {
      const __m512i h =
          _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * c)));
      const __m512i m = _mm512_and_si512(h, _mm512_set1_epi32(0x7FFF));
      const __m512i e = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(m, low_mask), 1),
                                        _mm512_srli_epi32(h, 15));
      _mm512_storeu_si512(extra + i + c, e);
      const __m512i d =
          _mm512_sub_epi32(_mm512_srl_epi32(m, shift), _mm512_loadu_si512(center + c));
      tokenize16(_mm512_srai_epi32(_mm512_slli_epi32(d, 16), 16), token + i + c, raw + i + c);
    }
    count_row(token + i, C, hist);
  }
}

}  // namespace kvstream::codec
