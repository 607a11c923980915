// The AVX-512 variants of decoder_avx2.cpp's paths (quantized into fp16, lossless split16 into
// its own dtype): two jobs share one
// 16-lane vector (lanes 0..7 the first job's, 8..15 the second's), which halves the vector
// instructions per value; the table loads and each job's word cursor stay per job. Bit for
// bit the scalar decoder, as the AVX2 path is.
// GCC 12's AVX-512 intrinsics pass an "undefined" vector (`__m512i __Y = __Y;`) as the
// unused merge source, which -Wmaybe-uninitialized reports at every call (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <array>
#include <utility>

#include "cpu_features.hpp"
#include "decoder_avx2.hpp"
#include "table_bank.hpp"

namespace kvstream::codec {

namespace {

#define KVS_TARGET                                                              \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c,popcnt"), \
                 always_inline)) inline

using Permutations = std::array<std::int32_t, 8>;

// a in lanes 0..7, b in 8..15.
KVS_TARGET __m512i combine(__m256i a, __m256i b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
}

KVS_TARGET __m256i words_for(std::uint32_t mask, const std::byte*& p, const Permutations* perms) {
  const __m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i perm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(perms[mask].data()));
  p += 2 * _mm_popcnt_u32(mask);
  return _mm256_permutevar8x32_epi32(words, perm);
}

KVS_TARGET __m512i refill(__m512i x, const std::byte*& pa, const std::byte*& pb,
                          const Permutations* perms) {
  const __mmask16 need = _mm512_cmplt_epu32_mask(x, _mm512_set1_epi32(1 << 16));
  const __m256i a = words_for(need & 0xFFu, pa, perms);
  const __m256i b = words_for(static_cast<std::uint32_t>(need) >> 8, pb, perms);
  const __m512i w = combine(a, b);
  return _mm512_mask_or_epi32(x, need, _mm512_slli_epi32(x, 16), w);
}

KVS_TARGET __m512i load_pair(const void* a, const void* b) {
  return combine(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a)),
                 _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)));
}

// Steps 1 and 2 of one group of each of two jobs (FORMAT.md): tokens, then their raw bits;
// returns v = wrap16(unzigzag(u) + center) per lane.
KVS_TARGET __m512i decode_values(__m512i& x, const std::byte*& pa, const std::byte*& pb,
                                 const SimdJob& ja, const SimdJob& jb, std::size_t c,
                                 const int* lut, const Permutations* perms) {
  const __m512i low12 = _mm512_set1_epi32(0xFFF);
  // A 16-lane gather, unlike the 8-lane one of the AVX2 path, measured faster than loads.
  const __m512i e = _mm512_i32gather_epi32(
      _mm512_add_epi32(load_pair(ja.ch->lut_offset + c, jb.ch->lut_offset + c),
                       _mm512_and_si512(x, low12)),
      lut, 4);
  x = _mm512_add_epi32(_mm512_mullo_epi32(_mm512_and_si512(e, low12), _mm512_srli_epi32(x, 12)),
                       _mm512_and_si512(_mm512_srli_epi32(e, 12), low12));
  x = refill(x, pa, pb, perms);
  const __m512i n = _mm512_and_si512(_mm512_srli_epi32(e, 24), _mm512_set1_epi32(0xF));
  const __m512i ones = _mm512_set1_epi32(-1);
  const __m512i raw = _mm512_andnot_si512(_mm512_sllv_epi32(ones, n), x);
  x = _mm512_srlv_epi32(x, n);
  x = refill(x, pa, pb, perms);
  const __m512i u = _mm512_or_si512(_mm512_sllv_epi32(_mm512_srli_epi32(e, 28), n), raw);
  const __m512i d = _mm512_xor_si512(
      _mm512_srli_epi32(u, 1),
      _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_and_si512(u, _mm512_set1_epi32(1))));
  const __m512i v = _mm512_add_epi32(d, load_pair(ja.ref + c, jb.ref + c));
  return _mm512_srai_epi32(_mm512_slli_epi32(v, 16), 16);
}

KVS_TARGET void store_pair(const SimdJob& ja, const SimdJob& jb, std::size_t c, __m256i h) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(ja.row + 2 * c), _mm256_castsi256_si128(h));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(jb.row + 2 * c), _mm256_extracti128_si256(h, 1));
}

// A group of each of two quantized jobs: v x step, rounded to fp16 or kept in fp32. (Groups of
// a kind that checks its values set the lanes of `bad` whose value was out of range.)
template <bool kF32>
struct Quantized {
  static constexpr std::ptrdiff_t kGroupBytes = 32;  // at most 16 words
  KVS_TARGET void operator()(__m512i& x, const std::byte*& pa, const std::byte*& pb, SimdJob& ja,
                             SimdJob& jb, std::size_t c, __mmask16&, const int* lut,
                             const Permutations* perms) const {
    const __m512i v = decode_values(x, pa, pb, ja, jb, c, lut, perms);
    if (ja.predicted) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(ja.ref + c), _mm512_castsi512_si256(v));
    }
    if (jb.predicted) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(jb.ref + c), _mm512_extracti64x4_epi64(v, 1));
    }
    const __m512 f = _mm512_mul_ps(
        _mm512_cvtepi32_ps(v), _mm512_castsi512_ps(load_pair(ja.ch->step + c, jb.ch->step + c)));
    if constexpr (kF32) {
      _mm256_storeu_ps(reinterpret_cast<float*>(ja.row + 4 * c), _mm512_castps512_ps256(f));
      _mm256_storeu_ps(reinterpret_cast<float*>(jb.row + 4 * c),
                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(f), 1)));
    } else {
      store_pair(ja, jb, c, _mm512_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  }
};

// A group of each of two split16 jobs: the exponent field v, then ((m mod 2^R) << 1) | sign.
struct Split16 {
  static constexpr std::ptrdiff_t kGroupBytes = 48;  // tokens, their raw bits, the field
  std::uint32_t shift;
  std::int32_t v_limit;
  KVS_TARGET void operator()(__m512i& x, const std::byte*& pa, const std::byte*& pb, SimdJob& ja,
                             SimdJob& jb, std::size_t c, __mmask16& bad, const int* lut,
                             const Permutations* perms) const {
    const __m512i v = decode_values(x, pa, pb, ja, jb, c, lut, perms);
    const __m512i e = _mm512_and_si512(x, _mm512_set1_epi32(static_cast<int>((2u << shift) - 1u)));
    x = _mm512_srl_epi32(x, _mm_cvtsi32_si128(static_cast<int>(shift + 1)));
    x = refill(x, pa, pb, perms);
    // Out of [0, v_limit), negative values included (as unsigned they are huge).
    bad |= _mm512_cmpge_epu32_mask(v, _mm512_set1_epi32(v_limit));
    const __m512i bits = _mm512_or_si512(
        _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(e, _mm512_set1_epi32(1)), 15),
                        _mm512_sll_epi32(v, _mm_cvtsi32_si128(static_cast<int>(shift)))),
        _mm512_srli_epi32(e, 1));
    store_pair(ja, jb, c, _mm512_cvtepi32_epi16(bits));  // bit 15 at most: truncation is exact
  }
};

// Pairs of jobs side by side, row by row, while every job has a whole row and its words (see
// decoder_avx2.cpp's run_rows).
template <class Group, std::size_t... I>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,f16c,popcnt"))) void run_rows(
    SimdJob* jobs, const Group& group, std::index_sequence<I...>) {
  const Permutations* perms = refill_permutations().data();
  const auto* lut = reinterpret_cast<const int*>(table_bank_luts());
  const std::size_t C = jobs[0].ch->count;
  const std::ptrdiff_t row_bytes = static_cast<std::ptrdiff_t>(C / 8) * Group::kGroupBytes;
  __m512i x[] = {load_pair(jobs[2 * I].x, jobs[2 * I + 1].x)...};
  const std::byte* pa[] = {jobs[2 * I].p...};
  const std::byte* pb[] = {jobs[2 * I + 1].p...};
  __mmask16 bad[] = {(static_cast<void>(I), __mmask16{0})...};
  const auto ready = [&](const SimdJob& j, const std::byte* p) {
    return j.c == 0 && j.left >= C && j.limit - p >= row_bytes;
  };
  while (((ready(jobs[2 * I], pa[I]) && ready(jobs[2 * I + 1], pb[I])) && ...)) {
    for (std::size_t c = 0; c < C; c += 8)
      (group(x[I], pa[I], pb[I], jobs[2 * I], jobs[2 * I + 1], c, bad[I], lut, perms), ...);
    ((jobs[2 * I].next_row(), jobs[2 * I + 1].next_row()), ...);
  }
  ((_mm256_storeu_si256(reinterpret_cast<__m256i*>(jobs[2 * I].x), _mm512_castsi512_si256(x[I])),
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(jobs[2 * I + 1].x),
                        _mm512_extracti64x4_epi64(x[I], 1)),
    jobs[2 * I].p = pa[I], jobs[2 * I + 1].p = pb[I],
    jobs[2 * I].values_ok &= (bad[I] & 0xFFu) == 0,
    jobs[2 * I + 1].values_ok &= (bad[I] >> 8) == 0),
   ...);
}

// Batches of three pairs where possible, since a batch of one pair is latency-bound; ten jobs
// (a 5-layer model's segments) go as 6 + 4. Returns how many leading jobs it took: the pairs
// share their channel offsets, so it stops at the first job whose rows are not as long as the
// first one's (segments with constant tails of their own), and leaves the rest to the AVX2 path.
template <class Group>
std::size_t run_pairs(std::span<SimdJob> jobs, const Group& group) {
  if (jobs.empty()) return 0;
  std::size_t same = 1;
  while (same < jobs.size() && jobs[same].ch->count == jobs[0].ch->count)
    ++same;
  jobs = jobs.first(same);
  std::size_t i = 0;
  while (jobs.size() - i >= 2) {
    const std::size_t left = jobs.size() - i;
    if (left >= 6 && left != 8) {
      run_rows(&jobs[i], group, std::make_index_sequence<3>());
      i += 6;
    } else if (left >= 4) {
      run_rows(&jobs[i], group, std::make_index_sequence<2>());
      i += 4;
    } else {
      run_rows(&jobs[i], group, std::make_index_sequence<1>());
      i += 2;
    }
  }
  return i;
}

}  // namespace

bool avx512_decode_available() noexcept {
  return avx512_enabled() && simd_decode_available();
}

std::size_t decode_rows_quantized_f16_avx512(std::span<SimdJob> jobs) noexcept {
  return run_pairs(jobs, Quantized<false>{});
}

std::size_t decode_rows_quantized_f32_avx512(std::span<SimdJob> jobs) noexcept {
  return run_pairs(jobs, Quantized<true>{});
}

std::size_t decode_rows_split16_avx512(std::span<SimdJob> jobs, std::uint32_t shift,
                                       std::int32_t v_limit) noexcept {
  return run_pairs(jobs, Split16{shift, v_limit});
}

}  // namespace kvstream::codec
