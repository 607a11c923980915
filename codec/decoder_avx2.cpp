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

std::atomic<bool> g_simd_enabled{true};

// Steps 1 and 2 of a group (FORMAT.md): tokens, then their raw bits; returns each lane's
// value v = wrap16(unzigzag(u) + center).
__attribute__((target("avx2,f16c,popcnt"))) inline __m256i decode_values(
    __m256i& x, const std::byte*& p, const SimdChannels& ch, std::size_t c, const int* lut,
    const std::array<std::int32_t, 8>* permutations) {
  const __m256i low12 = _mm256_set1_epi32(0xFFF);
  const __m256i one = _mm256_set1_epi32(1);
  const __m256i offs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ch.lut_offset + c));
  const __m256i e =
      _mm256_i32gather_epi32(lut, _mm256_add_epi32(offs, _mm256_and_si256(x, low12)), 4);
  x = _mm256_add_epi32(
      _mm256_mullo_epi32(_mm256_and_si256(e, _mm256_set1_epi32(0x1FFF)), _mm256_srli_epi32(x, 12)),
      _mm256_and_si256(_mm256_srli_epi32(e, 13), low12));
  x = refill(x, p, permutations);
  const __m256i token = _mm256_srli_epi32(e, 25);
  // Raw bits of tokens >= 16 (none, so no refill, for the others).
  const __m256i big = _mm256_cmpgt_epi32(token, _mm256_set1_epi32(15));
  const __m256i nraw = _mm256_and_si256(
      big, _mm256_add_epi32(_mm256_srli_epi32(_mm256_sub_epi32(token, _mm256_set1_epi32(16)), 2),
                            _mm256_set1_epi32(2)));
  const __m256i raw = _mm256_and_si256(x, _mm256_sub_epi32(_mm256_sllv_epi32(one, nraw), one));
  x = _mm256_srlv_epi32(x, nraw);
  x = refill(x, p, permutations);
  const __m256i head =
      _mm256_or_si256(_mm256_set1_epi32(4), _mm256_and_si256(token, _mm256_set1_epi32(3)));
  const __m256i u =
      _mm256_blendv_epi8(token, _mm256_or_si256(_mm256_sllv_epi32(head, nraw), raw), big);
  const __m256i d = _mm256_xor_si256(
      _mm256_srli_epi32(u, 1), _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_and_si256(u, one)));
  const __m256i v =
      _mm256_add_epi32(d, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ch.center + c)));
  return _mm256_srai_epi32(_mm256_slli_epi32(v, 16), 16);
}

}  // namespace

// CPUID directly: not every compiler's __builtin_cpu_supports knows "f16c".
static bool cpu_has_avx2_f16c() noexcept {
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
  while (cur.left >= 8 && cur.end - cur.p >= 32) {
    const std::size_t c = cur.c;
    const __m256i v = decode_values(x, cur.p, ch, c, lut, permutations);
    const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(ch.step + c));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cur.row + 2 * c),
                     _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    cur.next_group(ch.count, dst, layer, part, token_begin);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(cur.x), x);
}

__attribute__((target("avx2,f16c,popcnt"))) bool decode_groups_split16_avx2(
    SimdCursor& cur, const SimdChannels& ch, std::uint32_t shift, std::int32_t v_limit,
    const KvView& dst, std::uint32_t layer, KvPart part, std::uint32_t token_begin) noexcept {
  const std::array<std::int32_t, 8>* permutations = refill_permutations().data();
  const auto* lut = reinterpret_cast<const int*>(table_bank_luts());
  __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(cur.x));
  const __m256i field_mask = _mm256_set1_epi32(static_cast<int>((2u << shift) - 1u));
  const __m128i shift_count = _mm_cvtsi32_si128(static_cast<int>(shift));
  const __m128i field_count = _mm_cvtsi32_si128(static_cast<int>(shift + 1));
  __m256i bad = _mm256_setzero_si256();
  // A group reads at most 24 words here (tokens, their raw bits, the coding's field).
  while (cur.left >= 8 && cur.end - cur.p >= 48) {
    const std::size_t c = cur.c;
    const __m256i v = decode_values(x, cur.p, ch, c, lut, permutations);
    // Step 3: ((m mod 2^R) << 1) | sign, R + 1 bits.
    const __m256i e = _mm256_and_si256(x, field_mask);
    x = _mm256_srl_epi32(x, field_count);
    x = refill(x, cur.p, permutations);
    bad = _mm256_or_si256(bad,
                          _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), v),
                                          _mm256_cmpgt_epi32(v, _mm256_set1_epi32(v_limit - 1))));
    const __m256i bits = _mm256_or_si256(
        _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(e, _mm256_set1_epi32(1)), 15),
                        _mm256_sll_epi32(v, shift_count)),
        _mm256_srli_epi32(e, 1));
    // 8 x 32-bit -> 8 x 16-bit (values fit: bit 15 at most).
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(cur.row + 2 * c), _mm256_castsi256_si128(packed));
    cur.next_group(ch.count, dst, layer, part, token_begin);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(cur.x), x);
  return _mm256_testz_si256(bad, bad) != 0;
}

}  // namespace kvstream::codec
