#include "decoder_avx2.hpp"

#include <cpuid.h>
#include <immintrin.h>

#include <array>
#include <atomic>

#include "table_bank.hpp"

namespace kvstream::codec {

namespace {

// For each refill mask, which of the loaded words each lane takes: the rank of the lane among
// the lanes that refill, so words go to lanes in lane order, as in the scalar decoder.
const std::array<std::array<std::int32_t, 8>, 256>& refill_permutations() {
  static const auto table = [] {
    std::array<std::array<std::int32_t, 8>, 256> t{};
    for (std::uint32_t mask = 0; mask < 256; ++mask) {
      std::int32_t rank = 0;
      for (std::uint32_t j = 0; j < 8; ++j) {
        t[mask][j] = (mask >> j) & 1u ? rank++ : 0;
      }
    }
    return t;
  }();
  return table;
}

__attribute__((target("avx2,f16c,popcnt"))) inline __m256i refill(
    __m256i x, const std::byte*& p, const std::array<std::int32_t, 8>* permutations) {
  const __m256i need = _mm256_cmpeq_epi32(_mm256_srli_epi32(x, 16), _mm256_setzero_si256());
  const auto mask = static_cast<std::uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(need)));
  const __m256i words = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  const __m256i perm =
      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(permutations[mask].data()));
  const __m256i w = _mm256_permutevar8x32_epi32(words, perm);
  p += 2 * _mm_popcnt_u32(mask);
  return _mm256_blendv_epi8(x, _mm256_or_si256(_mm256_slli_epi32(x, 16), w), need);
}

}  // namespace

namespace {
std::atomic<bool> g_simd_enabled{true};
}  // namespace

// CPUID directly: not every compiler's __builtin_cpu_supports knows "f16c".
bool cpu_has_avx2_f16c() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
  const bool popcnt = (c >> 23) & 1u, osxsave = (c >> 27) & 1u, avx = (c >> 28) & 1u;
  const bool f16c = (c >> 29) & 1u;
  if (!(popcnt && osxsave && avx && f16c)) return false;
  unsigned xcr0 = 0, xcr0_high = 0;
  __asm__("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0));
  if ((xcr0 & 6u) != 6u) return false;  // the OS saves XMM and YMM state
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  return (b >> 5) & 1u;  // AVX2
}

bool simd_decode_available() noexcept {
  static const bool cpu = cpu_has_avx2_f16c();
  return cpu && g_simd_enabled.load(std::memory_order_relaxed);
}

void set_simd_decode_enabled(bool enabled) noexcept {
  g_simd_enabled.store(enabled, std::memory_order_relaxed);
}

__attribute__((target("avx2,f16c,popcnt"))) void decode_groups_quantized_f16_avx2(
    SimdCursor& cur, const SimdChannels& ch, const KvView& dst, std::uint32_t layer, KvPart part,
    std::uint32_t token_begin) noexcept {
  const std::array<std::int32_t, 8>* permutations = refill_permutations().data();
  const auto* lut = reinterpret_cast<const int*>(table_bank_luts());
  __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cur.x));
  const __m256i low12 = _mm256_set1_epi32(0xFFF);
  const __m256i low13 = _mm256_set1_epi32(0x1FFF);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i fifteen = _mm256_set1_epi32(15);
  const __m256i sixteen = _mm256_set1_epi32(16);
  while (cur.left >= 8 && cur.end - cur.p >= 32) {
    const std::size_t c = cur.c;
    // Step 1: tokens.
    const __m256i offs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ch.lut_offset + c));
    const __m256i e =
        _mm256_i32gather_epi32(lut, _mm256_add_epi32(offs, _mm256_and_si256(x, low12)), 4);
    x = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_and_si256(e, low13), _mm256_srli_epi32(x, 12)),
                         _mm256_and_si256(_mm256_srli_epi32(e, 13), low12));
    x = refill(x, cur.p, permutations);
    const __m256i token = _mm256_srli_epi32(e, 25);
    // Step 2: raw bits of tokens >= 16 (none, so no refill, for the others).
    const __m256i big = _mm256_cmpgt_epi32(token, fifteen);
    const __m256i nraw = _mm256_and_si256(
        big, _mm256_add_epi32(_mm256_srli_epi32(_mm256_sub_epi32(token, sixteen), 2),
                              _mm256_set1_epi32(2)));
    const __m256i raw = _mm256_and_si256(x, _mm256_sub_epi32(_mm256_sllv_epi32(one, nraw), one));
    x = _mm256_srlv_epi32(x, nraw);
    x = refill(x, cur.p, permutations);
    const __m256i head =
        _mm256_or_si256(_mm256_set1_epi32(4), _mm256_and_si256(token, _mm256_set1_epi32(3)));
    const __m256i u_big = _mm256_or_si256(_mm256_sllv_epi32(head, nraw), raw);
    const __m256i u = _mm256_blendv_epi8(token, u_big, big);
    // unzigzag, add the center, wrap to 16 bits, dequantize, round to fp16.
    const __m256i d =
        _mm256_xor_si256(_mm256_srli_epi32(u, 1),
                         _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_and_si256(u, one)));
    __m256i v =
        _mm256_add_epi32(d, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ch.center + c)));
    v = _mm256_srai_epi32(_mm256_slli_epi32(v, 16), 16);
    const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(ch.step + c));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cur.row + 2 * c),
                     _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    cur.left -= 8;
    cur.c += 8;
    if (cur.c == ch.count) {
      cur.c = 0;
      if (++cur.t < cur.t_end) cur.row = dst.row(layer, part, token_begin + cur.t);
    }
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(cur.x), x);
}

}  // namespace kvstream::codec
