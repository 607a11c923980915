#include "rans_avx2.hpp"

#include <immintrin.h>

#include <array>
#include <atomic>
#include <utility>

#include "cpu_features.hpp"

namespace kvstream::codec {

namespace {

std::atomic<bool> g_simd_enabled{true};

// For each mask of lanes that emit a word: those lanes in ascending order, in the top
// popcount(mask) slots. The buffer fills backwards, and the decoder reads the words of one
// step in lane order, so the lowest lane's word must land at the lowest address.
const std::array<std::array<std::int32_t, 8>, 256>& emit_permutations() {
  static const auto table = [] {
    std::array<std::array<std::int32_t, 8>, 256> t{};
    for (std::uint32_t mask = 0; mask < 256; ++mask) {
      std::int32_t slot = 8 - __builtin_popcount(mask);
      for (std::int32_t j = 0; j < 8; ++j) {
        if ((mask >> j) & 1u) t[mask][slot++] = j;
      }
    }
    return t;
  }();
  return table;
}

#define KVS_TARGET __attribute__((target("avx2,popcnt"), always_inline)) inline

// Lanes in `over` write the low 16 bits of their state below w, lowest lane lowest; the store
// also writes garbage into the 8 - popcount slots below, which later words overwrite (the
// buffer keeps 16 words of slack at its start).
KVS_TARGET void emit(__m256i x, __m256i over, std::uint16_t*& w,
                     const std::array<std::int32_t, 8>* perms) {
  const auto mask = static_cast<std::uint32_t>(_mm256_movemask_ps(_mm256_castsi256_ps(over)));
  const __m256i perm = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(perms[mask].data()));
  const __m256i low = _mm256_and_si256(x, _mm256_set1_epi32(0xFFFF));
  const __m256i sel = _mm256_permutevar8x32_epi32(low, perm);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(sel, sel), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(w - 8), _mm256_castsi256_si128(packed));
  w -= _mm_popcnt_u32(mask);
}

// A raw field of `bits` bits (0..16 per lane) holding `value`.
KVS_TARGET __m256i put_raw(__m256i x, __m256i value, __m256i bits, std::uint16_t*& w,
                           const std::array<std::int32_t, 8>* perms) {
  const __m256i top = _mm256_srlv_epi32(x, _mm256_sub_epi32(_mm256_set1_epi32(32), bits));
  const __m256i zero = _mm256_setzero_si256();
  const __m256i over = _mm256_xor_si256(_mm256_cmpeq_epi32(top, zero), _mm256_cmpeq_epi32(x, x));
  emit(x, over, w, perms);
  x = _mm256_blendv_epi8(x, _mm256_srli_epi32(x, 16), over);
  return _mm256_or_si256(_mm256_sllv_epi32(x, bits), value);
}

// floor(x * rcp / 2^32) per lane.
KVS_TARGET __m256i mulhi_epu32(__m256i x, __m256i rcp) {
  const __m256i even = _mm256_srli_epi64(_mm256_mul_epu32(x, rcp), 32);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), _mm256_srli_epi64(rcp, 32));
  return _mm256_blend_epi32(even, odd, 0xAA);
}

KVS_TARGET __m256i put_token(__m256i x, __m256i freq_cum, __m256i rcp, std::uint16_t*& w,
                             const std::array<std::int32_t, 8>* perms) {
  const __m256i freq = _mm256_and_si256(freq_cum, _mm256_set1_epi32(0xFFFF));
  const __m256i freq_1 = _mm256_sub_epi32(freq, _mm256_set1_epi32(1));
  const __m256i over = _mm256_cmpgt_epi32(_mm256_srli_epi32(x, 32 - kProbBits), freq_1);
  emit(x, over, w, perms);
  x = _mm256_blendv_epi8(x, _mm256_srli_epi32(x, 16), over);
  // divide_by_freq: a quotient at most one short, and its correction.
  __m256i q = mulhi_epu32(x, rcp);
  __m256i r = _mm256_sub_epi32(x, _mm256_mullo_epi32(q, freq));
  const __m256i fix = _mm256_cmpgt_epi32(r, freq_1);
  q = _mm256_sub_epi32(q, fix);
  r = _mm256_sub_epi32(r, _mm256_and_si256(freq, fix));
  return _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(q, kProbBits), r),
                          _mm256_srli_epi32(freq_cum, 16));
}

}  // namespace

bool simd_encode_available() noexcept {
  return cpu_has_avx2_f16c() && g_simd_enabled.load(std::memory_order_relaxed);
}

void set_simd_encode_enabled(bool enabled) noexcept {
  g_simd_enabled.store(enabled, std::memory_order_relaxed);
}

namespace {

// One job's position: lane states, write cursor (words go below it), next group's first value
// and that group's first channel.
struct Cursor {
  __m256i x;
  std::uint16_t* w;
  std::size_t b;
  std::size_t c;
};

KVS_TARGET Cursor start(const RansJob& j) {
  const std::size_t n = j.last - j.first;  // whole rows of C % 8 == 0 channels
  j.out->buffer.resize(rans_word_bound(n, j.symbols->extra_bits));
  return {_mm256_set1_epi32(static_cast<int>(kRansLow)),
          j.out->buffer.data() + j.out->buffer.size(), j.last, (n - 8) % j.symbols->channels};
}

KVS_TARGET void finish(const RansJob& j, const Cursor& k) {
  j.out->states.resize(8);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(j.out->states.data()), k.x);
  j.out->begin = static_cast<std::size_t>(k.w - j.out->buffer.data());
}

// The group of values [k.b - 8, k.b), all its steps in reverse order.
struct Lookups {
  const std::array<std::int32_t, 8>* perms;
  const std::uint32_t* freq_cum;
  const std::uint32_t* rcps;
};

KVS_TARGET void encode_group(const RansSymbols& s, Cursor& k, const Lookups& l) {
  const std::array<std::int32_t, 8>* perms = l.perms;
  k.b -= 8;
  const std::size_t b = k.b, c = k.c;
  __m256i x = k.x;
  if (s.extra != nullptr) {
    const __m256i e = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.extra + b));
    x = put_raw(x, _mm256_and_si256(e, _mm256_set1_epi32(0xFFFF)),
                _mm256_set1_epi32(static_cast<int>(s.extra_bits)), k.w, perms);
  }
  const __m256i tok =
      _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s.tokens + b)));
  const __m256i raw =
      _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(s.raw + b)));
  const __m256i nraw =
      _mm256_and_si256(_mm256_cmpgt_epi32(tok, _mm256_set1_epi32(15)),
                       _mm256_sub_epi32(_mm256_srli_epi32(tok, 2), _mm256_set1_epi32(2)));
  x = put_raw(x, raw, nraw, k.w, perms);
  // The 8 lanes' (table, token) entries: loads, not vpgatherdd, which measured 5% slower for
  // the whole encoder on the EPYC we measure on (as in the decoder's AVX2 path).
  const __m256i e =
      _mm256_add_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(s.table_row + c)), tok);
  alignas(32) std::uint32_t ix[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(ix), e);
  const std::uint32_t* f = l.freq_cum;
  const std::uint32_t* r = l.rcps;
  const __m256i fc = _mm256_setr_epi32(static_cast<int>(f[ix[0]]), static_cast<int>(f[ix[1]]),
                                       static_cast<int>(f[ix[2]]), static_cast<int>(f[ix[3]]),
                                       static_cast<int>(f[ix[4]]), static_cast<int>(f[ix[5]]),
                                       static_cast<int>(f[ix[6]]), static_cast<int>(f[ix[7]]));
  const __m256i rcp = _mm256_setr_epi32(static_cast<int>(r[ix[0]]), static_cast<int>(r[ix[1]]),
                                        static_cast<int>(r[ix[2]]), static_cast<int>(r[ix[3]]),
                                        static_cast<int>(r[ix[4]]), static_cast<int>(r[ix[5]]),
                                        static_cast<int>(r[ix[6]]), static_cast<int>(r[ix[7]]));
  k.x = put_token(x, fc, rcp, k.w, perms);
  k.c = c == 0 ? s.channels - 8 : c - 8;
}

// N jobs of equal length in lockstep; the fold over constant indices keeps every cursor in
// registers (see decoder_avx2.cpp's run_rows).
template <std::size_t... I>
__attribute__((target("avx2,popcnt"))) void encode_together(const RansJob* jobs,
                                                            std::index_sequence<I...>) {
  // Fetched once: each is a function-local static, whose guard check (and the call) would
  // otherwise sit in the loop.
  const Lookups l{emit_permutations().data(), table_bank_freq_cum(), table_bank_reciprocals()};
  Cursor k[] = {start(jobs[I])...};
  const RansSymbols* s[] = {jobs[I].symbols...};
  while (k[0].b > jobs[0].first) {
    (encode_group(*s[I], k[I], l), ...);
  }
  (finish(jobs[I], k[I]), ...);
}

}  // namespace

void rans_encode_avx2(std::span<const RansJob> jobs) {
  const auto len = [](const RansJob& j) { return j.last - j.first; };
  std::size_t i = 0;
  while (i < jobs.size()) {
    std::size_t same = 1;
    while (same < 4 && i + same < jobs.size() && len(jobs[i + same]) == len(jobs[i]))
      ++same;
    if (same == 4) {
      encode_together(&jobs[i], std::make_index_sequence<4>());
    } else if (same >= 2) {
      same = 2;
      encode_together(&jobs[i], std::make_index_sequence<2>());
    } else {
      encode_together(&jobs[i], std::make_index_sequence<1>());
    }
    i += same;
  }
}

}  // namespace kvstream::codec
