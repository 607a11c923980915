#include "decoder_avx2.hpp"

#include <immintrin.h>

#include <array>
#include <atomic>
#include <utility>

#include "cpu_features.hpp"
#include "table_bank.hpp"

namespace kvstream::codec {

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

namespace {

__attribute__((target("avx2,f16c,popcnt"), always_inline)) inline __m256i refill(
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

// Steps 1 and 2 of a group (FORMAT.md), tokens then their raw bits, in two parts so that run_rows
// can interleave jobs between them: decode_token looks the tokens up and steps the states (the
// group's 8 channels' `lut_offset`) and returns the lookup entries; decode_rest takes them, reads
// the words and raw bits, and returns each lane's value v = wrap16(unzigzag(u) + ref).
__attribute__((target("avx2,f16c,popcnt"), always_inline)) inline __m256i decode_token(
    __m256i& x, const std::int32_t* lut_offset, const int* lut) {
  const __m256i low12 = _mm256_set1_epi32(0xFFF);
  const __m256i offs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut_offset));
  // Eight loads, not vpgatherdd: on the AMD EPYC we measure on, the gather instruction made the
  // whole decoder 25% slower than these loads and inserts.
  alignas(32) std::int32_t idx[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(idx),
                     _mm256_add_epi32(offs, _mm256_and_si256(x, low12)));
  const __m256i e = _mm256_setr_epi32(lut[idx[0]], lut[idx[1]], lut[idx[2]], lut[idx[3]],
                                      lut[idx[4]], lut[idx[5]], lut[idx[6]], lut[idx[7]]);
  x = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_and_si256(e, low12), _mm256_srli_epi32(x, 12)),
                       _mm256_and_si256(_mm256_srli_epi32(e, 12), low12));
  return e;
}

__attribute__((target("avx2,f16c,popcnt"), always_inline)) inline __m256i decode_rest(
    __m256i& x, __m256i e, const std::byte*& p, const std::int32_t* ref,
    const std::array<std::int32_t, 8>* permutations) {
  x = refill(x, p, permutations);
  // The entry's raw-bit count n (0 for small tokens) and leading bits h: u = (h << n) | raw.
  const __m256i n = _mm256_and_si256(_mm256_srli_epi32(e, 24), _mm256_set1_epi32(0xF));
  const __m256i ones = _mm256_cmpeq_epi32(n, n);
  const __m256i raw = _mm256_andnot_si256(_mm256_sllv_epi32(ones, n), x);
  x = _mm256_srlv_epi32(x, n);
  x = refill(x, p, permutations);
  const __m256i u = _mm256_or_si256(_mm256_sllv_epi32(_mm256_srli_epi32(e, 28), n), raw);
  const __m256i d = _mm256_xor_si256(
      _mm256_srli_epi32(u, 1),
      _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_and_si256(u, _mm256_srli_epi32(ones, 31))));
  const __m256i v = _mm256_add_epi32(d, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ref)));
  return _mm256_srai_epi32(_mm256_slli_epi32(v, 16), 16);
}

// One group of a quantized job: values times their steps, rounded to fp16, or kept in fp32
// (the coefficients of transform coding, or an fp32 destination).
template <bool kF32>
struct Quantized {
  static constexpr std::ptrdiff_t kGroupBytes = 32;  // at most 16 words
  // The group after decode_token: `e` is its lookup entries.
  __attribute__((target("avx2,f16c,popcnt"), always_inline)) void operator()(
      __m256i& x, __m256i e, const std::byte*& p, SimdJob& job, std::size_t c,
      const std::array<std::int32_t, 8>* permutations) const noexcept {
    const SimdChannels& ch = *job.ch;
    const __m256i v = decode_rest(x, e, p, job.ref + c, permutations);
    if (job.predicted) _mm256_storeu_si256(reinterpret_cast<__m256i*>(job.ref + c), v);
    const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(ch.step + c));
    if constexpr (kF32) {
      _mm256_storeu_ps(reinterpret_cast<float*>(job.row + 4 * c), f);
    } else {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(job.row + 2 * c),
                       _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    }
  }
};

// One group of a split16 job: the exponent field v, then ((m mod 2^R) << 1) | sign.
struct Split16 {
  static constexpr std::ptrdiff_t kGroupBytes = 48;  // tokens, their raw bits, the field
  std::uint32_t shift;
  std::int32_t v_limit;
  // The group after decode_token, as Quantized's.
  __attribute__((target("avx2,f16c,popcnt"), always_inline)) void operator()(
      __m256i& x, __m256i tok, const std::byte*& p, SimdJob& job, std::size_t c,
      const std::array<std::int32_t, 8>* permutations) const noexcept {
    const __m256i v = decode_rest(x, tok, p, job.ref + c, permutations);
    const __m256i e = _mm256_and_si256(x, _mm256_set1_epi32(static_cast<int>((2u << shift) - 1u)));
    x = _mm256_srl_epi32(x, _mm_cvtsi32_si128(static_cast<int>(shift + 1)));
    x = refill(x, p, permutations);
    const __m256i bad = _mm256_or_si256(_mm256_cmpgt_epi32(_mm256_setzero_si256(), v),
                                        _mm256_cmpgt_epi32(v, _mm256_set1_epi32(v_limit - 1)));
    job.values_ok &= _mm256_testz_si256(bad, bad) != 0;
    const __m256i bits = _mm256_or_si256(
        _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(e, _mm256_set1_epi32(1)), 15),
                        _mm256_sll_epi32(v, _mm_cvtsi32_si128(static_cast<int>(shift)))),
        _mm256_srli_epi32(e, 1));
    // 8 x 32-bit -> 8 x 16-bit (values fit: bit 15 at most).
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(job.row + 2 * c), _mm256_castsi256_si128(packed));
  }
};

// N jobs side by side, a whole row (token) of each per round, while every one of them has a
// whole row and the words a row can read. The lane states and word cursors, the serial
// chains, must stay in registers: the jobs are spelled out with a fold over constant indices,
// since GCC keeps an array indexed in a loop in memory, and the round trip through it
// lengthens every chain.
template <class Group, std::size_t... I>
__attribute__((target("avx2,f16c,popcnt"))) void run_rows(SimdJob* jobs, const Group& group,
                                                          std::index_sequence<I...>) {
  const std::array<std::int32_t, 8>* permutations = refill_permutations().data();
  const auto* lut = reinterpret_cast<const int*>(table_bank_luts());
  const std::size_t C = jobs[0].ch->count;  // the same for every job here (see run_all)
  const std::ptrdiff_t row_bytes = static_cast<std::ptrdiff_t>(C / 8) * Group::kGroupBytes;
  __m256i x[] = {_mm256_load_si256(reinterpret_cast<const __m256i*>(jobs[I].x))...};
  const std::byte* p[] = {jobs[I].p...};
  while (((jobs[I].c == 0 && jobs[I].left >= C && jobs[I].limit - p[I] >= row_bytes) && ...)) {
    for (std::size_t c = 0; c < C; c += 8) {
      // Every job's tokens, then every job's rest. Each job's group is one long chain, and GCC
      // leaves x86 code in source order: one group after another, the out-of-order window saw
      // little more than one job at a time (this split measured 1.2-1.3x faster on the AVX2
      // EPYC, codec_bench's BM_Decode).
      const __m256i e[] = {decode_token(x[I], jobs[I].ch->lut_offset + c, lut)...};
      (group(x[I], e[I], p[I], jobs[I], c, permutations), ...);
    }
    (jobs[I].next_row(), ...);
  }
  ((_mm256_store_si256(reinterpret_cast<__m256i*>(jobs[I].x), x[I]), jobs[I].p = p[I]), ...);
}

// Whether run_mixed can take a round of a job whose next word is at `p`.
constexpr std::ptrdiff_t kMixedGroups = 8;  // per job and round, between the checks
template <class Group>
bool mixed_ready(const SimdJob& j, const std::byte* p) noexcept {
  return j.left >= 8 * std::size_t{kMixedGroups} &&
         j.limit - p >= kMixedGroups * Group::kGroupBytes;
}

// N jobs side by side whose rows differ in length (segments with constant tails of their own),
// a few groups of each per round, each job wrapping its rows where its own end; until one of
// them has no whole round left.
template <class Group, std::size_t... I>
__attribute__((target("avx2,f16c,popcnt"))) void run_mixed(SimdJob* const* jobs, const Group& group,
                                                           std::index_sequence<I...>) {
  const std::array<std::int32_t, 8>* permutations = refill_permutations().data();
  const auto* lut = reinterpret_cast<const int*>(table_bank_luts());
  __m256i x[] = {_mm256_load_si256(reinterpret_cast<const __m256i*>(jobs[I]->x))...};
  const std::byte* p[] = {jobs[I]->p...};
  while ((mixed_ready<Group>(*jobs[I], p[I]) && ...)) {
    for (std::ptrdiff_t g = 0; g < kMixedGroups; ++g) {
      const __m256i e[] = {decode_token(x[I], jobs[I]->ch->lut_offset + jobs[I]->c, lut)...};
      (group(x[I], e[I], p[I], *jobs[I], jobs[I]->c, permutations), ...);
      (jobs[I]->next_group(), ...);
    }
  }
  ((_mm256_store_si256(reinterpret_cast<__m256i*>(jobs[I]->x), x[I]), jobs[I]->p = p[I]), ...);
}

// Jobs whose rows differ in length, four (or two) at a time: when one has no whole round left,
// the next job takes its place, so that the longer jobs do not finish alone, latency-bound.
template <class Group>
void run_all_mixed(std::span<SimdJob> jobs, const Group& group) {
  SimdJob* w[4];
  std::size_t n = 0, next = 0;
  for (;;) {
    for (; n < 4 && next < jobs.size(); ++next) {
      if (mixed_ready<Group>(jobs[next], jobs[next].p)) w[n++] = &jobs[next];
    }
    if (n == 4) {
      run_mixed(w, group, std::make_index_sequence<4>());
    } else if (n >= 2) {
      run_mixed(w, group, std::make_index_sequence<2>());
    } else {
      return;
    }
    std::size_t kept = 0;
    for (std::size_t i = 0; i < n; ++i) {
      if (mixed_ready<Group>(*w[i], w[i]->p)) w[kept++] = w[i];
    }
    n = kept;
  }
}

// One job, group by group, while it has a whole group and the words one can read.
template <class Group>
__attribute__((target("avx2,f16c,popcnt"))) void run_groups(SimdJob& job, const Group& group) {
  const std::array<std::int32_t, 8>* permutations = refill_permutations().data();
  const auto* lut = reinterpret_cast<const int*>(table_bank_luts());
  __m256i x = _mm256_load_si256(reinterpret_cast<const __m256i*>(job.x));
  const std::byte* p = job.p;
  while (job.left >= 8 && job.limit - p >= Group::kGroupBytes) {
    const __m256i e = decode_token(x, job.ch->lut_offset + job.c, lut);
    group(x, e, p, job, job.c, permutations);
    job.next_group();
  }
  _mm256_store_si256(reinterpret_cast<__m256i*>(job.x), x);
  job.p = p;
}

template <class Group>
// Jobs before `i` have had their whole rows decoded already (by the AVX-512 variant).
void run_all(std::span<SimdJob> jobs, const Group& group, std::size_t i = 0) {
  bool same = true;
  for (std::size_t j = i; j < jobs.size(); ++j)
    same &= jobs[j].ch->count == jobs[i].ch->count;
  if (!same) {
    run_all_mixed(jobs.subspan(i), group);
  } else {
    for (; i + 4 <= jobs.size(); i += 4)
      run_rows(&jobs[i], group, std::make_index_sequence<4>());
    if (jobs.size() - i >= 2) {
      run_rows(&jobs[i], group, std::make_index_sequence<2>());
      i += 2;
    }
  }
  // What the batches left (the last rows, whose words may run short) goes group by group.
  for (SimdJob& job : jobs)
    run_groups(job, group);
}

}  // namespace

bool simd_decode_available() noexcept {
  return cpu_has_avx2_f16c() && g_simd_enabled.load(std::memory_order_relaxed);
}

void set_simd_decode_enabled(bool enabled) noexcept {
  g_simd_enabled.store(enabled, std::memory_order_relaxed);
}

void decode_jobs_quantized_f16_avx2(std::span<SimdJob> jobs) noexcept {
  const std::size_t done = avx512_decode_available() ? decode_rows_quantized_f16_avx512(jobs) : 0;
  run_all(jobs, Quantized<false>{}, done);
}

void decode_jobs_quantized_f32_avx2(std::span<SimdJob> jobs) noexcept {
  const std::size_t done = avx512_decode_available() ? decode_rows_quantized_f32_avx512(jobs) : 0;
  run_all(jobs, Quantized<true>{}, done);
}

void decode_jobs_split16_avx2(std::span<SimdJob> jobs, std::uint32_t shift,
                              std::int32_t v_limit) noexcept {
  const std::size_t done =
      avx512_decode_available() ? decode_rows_split16_avx512(jobs, shift, v_limit) : 0;
  run_all(jobs, Split16{shift, v_limit}, done);
}

}  // namespace kvstream::codec
