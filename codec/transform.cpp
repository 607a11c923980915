#include "transform.hpp"

#include <fmt/format.h>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cmath>
#include <cstring>
#include <utility>

#include "cpu_features.hpp"
#include "crc32c.hpp"

namespace kvstream {

namespace {
// Frequencies beyond this make angles whose range reduction is needlessly coarse.
constexpr float kMaxFrequency = 1024.0f;
}  // namespace

std::uint32_t KvTransform::layers() const noexcept {
  const std::size_t n = std::size_t{2} * channels * 2 * channels;
  return n == 0 ? 0 : static_cast<std::uint32_t>(analysis.size() / n);
}

Status KvTransform::validate() const {
  const auto bad = [](std::string what) {
    return Status(Errc::invalid_argument, "transform: " + std::move(what));
  };
  if (channels == 0 || channels > 4096 || head_dim == 0 || channels % head_dim != 0) {
    return bad(fmt::format("{} channels of {}-dim heads", channels, head_dim));
  }
  if (!frequencies.empty() && (head_dim % 2 != 0 || frequencies.size() != head_dim / 2)) {
    return bad(fmt::format("{} RoPE frequencies for head_dim {} (want head_dim / 2)",
                           frequencies.size(), head_dim));
  }
  if (pairs != RopePairs::interleaved && pairs != RopePairs::halves) return bad("RoPE pairing");
  for (float f : frequencies) {
    if (!std::isfinite(f) || std::fabs(f) > kMaxFrequency) {
      return bad(fmt::format("RoPE frequency {} (finite, |f| <= {})", f, kMaxFrequency));
    }
  }
  const std::size_t n = std::size_t{4} * channels * channels;
  if (analysis.empty() || analysis.size() % n != 0 || synthesis.size() != analysis.size()) {
    return bad(
        fmt::format("{} analysis and {} synthesis entries for {} channels (want layers x {})",
                    analysis.size(), synthesis.size(), channels, n));
  }
  for (const auto* m : {&analysis, &synthesis}) {
    for (float x : *m) {
      if (!std::isfinite(x)) return bad("a matrix entry is not finite");
    }
  }
  return Status::ok();
}

std::uint32_t KvTransform::id() const {
  std::uint32_t head[4] = {channels, head_dim, static_cast<std::uint32_t>(pairs),
                           static_cast<std::uint32_t>(frequencies.size())};
  std::uint32_t crc = codec::crc32c(std::as_bytes(std::span(head)));
  crc = codec::crc32c(std::as_bytes(std::span(frequencies)), crc);
  crc = codec::crc32c(std::as_bytes(std::span(analysis)), crc);
  return codec::crc32c(std::as_bytes(std::span(synthesis)), crc);
}

namespace codec {

namespace {
// pi/2 in two parts (fdlibm's pio2_1, pio2_1t) and 2/pi.
constexpr double kPiOver2Hi = 1.57079632673412561417e+00;
constexpr double kPiOver2Lo = 6.07710050650619224932e-11;
constexpr double kTwoOverPi = 6.36619772367581382433e-01;
// Taylor coefficients: sin r = r * sum_k kSin[k] r^2k, cos r = sum_k kCos[k] r^2k.
constexpr double kSin[] = {1.0,
                           -1.0 / 6.0,
                           1.0 / 120.0,
                           -1.0 / 5040.0,
                           1.0 / 362880.0,
                           -1.0 / 39916800.0,
                           1.0 / 6227020800.0};
constexpr double kCos[] = {
    1.0,           -1.0 / 2.0,       1.0 / 24.0,        -1.0 / 720.0,
    1.0 / 40320.0, -1.0 / 3628800.0, 1.0 / 479001600.0, -1.0 / 87178291200.0};

std::atomic<bool> g_simd_transform{true};
}  // namespace

void set_simd_transform_enabled(bool enabled) noexcept {
  g_simd_transform = enabled;
}

CosSin rope_cos_sin(std::uint32_t position, float frequency) noexcept {
  const double theta = static_cast<double>(position) * static_cast<double>(frequency);
  const double q = std::nearbyint(theta * kTwoOverPi);
  double r = std::fma(-q, kPiOver2Hi, theta);
  r = std::fma(-q, kPiOver2Lo, r);
  const double r2 = r * r;
  double sp = kSin[6];
  for (int k = 5; k >= 0; --k)
    sp = std::fma(sp, r2, kSin[k]);
  double cp = kCos[7];
  for (int k = 6; k >= 0; --k)
    cp = std::fma(cp, r2, kCos[k]);
  const double s = r * sp;
  const double quadrant = q - 4.0 * std::floor(q * 0.25);  // q mod 4, exact
  const bool swap = quadrant == 1.0 || quadrant == 3.0;
  const double c_out = swap ? s : cp, s_out = swap ? cp : s;
  return {static_cast<float>(quadrant == 1.0 || quadrant == 2.0 ? -c_out : c_out),
          static_cast<float>(quadrant >= 2.0 ? -s_out : s_out)};
}

namespace {

// rope_cos_sin for four angles at once, the same operations in the same order.
__attribute__((target("avx2,fma"))) void rope_cos_sin_x4(const double* position,
                                                         const double* frequency,
                                                         CosSin* out) noexcept {
  const __m256d theta = _mm256_mul_pd(_mm256_loadu_pd(position), _mm256_loadu_pd(frequency));
  const __m256d q = _mm256_round_pd(_mm256_mul_pd(theta, _mm256_set1_pd(kTwoOverPi)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256d r = _mm256_fnmadd_pd(q, _mm256_set1_pd(kPiOver2Hi), theta);
  r = _mm256_fnmadd_pd(q, _mm256_set1_pd(kPiOver2Lo), r);
  const __m256d r2 = _mm256_mul_pd(r, r);
  __m256d sp = _mm256_set1_pd(kSin[6]);
  for (int k = 5; k >= 0; --k)
    sp = _mm256_fmadd_pd(sp, r2, _mm256_set1_pd(kSin[k]));
  __m256d cp = _mm256_set1_pd(kCos[7]);
  for (int k = 6; k >= 0; --k)
    cp = _mm256_fmadd_pd(cp, r2, _mm256_set1_pd(kCos[k]));
  const __m256d s = _mm256_mul_pd(r, sp);
  const __m256d quadrant = _mm256_sub_pd(
      q,
      _mm256_mul_pd(_mm256_set1_pd(4.0), _mm256_floor_pd(_mm256_mul_pd(q, _mm256_set1_pd(0.25)))));
  const __m256d q1 = _mm256_cmp_pd(quadrant, _mm256_set1_pd(1.0), _CMP_EQ_OQ);
  const __m256d q2 = _mm256_cmp_pd(quadrant, _mm256_set1_pd(2.0), _CMP_EQ_OQ);
  const __m256d q3 = _mm256_cmp_pd(quadrant, _mm256_set1_pd(3.0), _CMP_EQ_OQ);
  const __m256d swap = _mm256_or_pd(q1, q3);
  const __m256d c_out = _mm256_blendv_pd(cp, s, swap), s_out = _mm256_blendv_pd(s, cp, swap);
  const __m256d sign = _mm256_set1_pd(-0.0);
  const __m256d c_neg = _mm256_and_pd(_mm256_or_pd(q1, q2), sign);
  const __m256d s_neg = _mm256_and_pd(_mm256_or_pd(q2, q3), sign);
  const __m128 c4 = _mm256_cvtpd_ps(_mm256_xor_pd(c_out, c_neg));
  const __m128 s4 = _mm256_cvtpd_ps(_mm256_xor_pd(s_out, s_neg));
  // Interleave into (c, s) pairs.
  _mm_storeu_ps(reinterpret_cast<float*>(out), _mm_unpacklo_ps(c4, s4));
  _mm_storeu_ps(reinterpret_cast<float*>(out) + 4, _mm_unpackhi_ps(c4, s4));
}

}  // namespace

void rope_table(std::uint32_t begin, std::uint32_t count, std::span<const float> frequencies,
                std::vector<CosSin>& out) {
  const std::size_t pairs = frequencies.size(), total = std::size_t{count} * pairs;
  out.resize(total);
  std::size_t i = 0;
  if (cpu_has_avx2_f16c()) {
    double pos[4], freq[4];
    for (; i + 4 <= total; i += 4) {
      for (std::size_t k = 0; k < 4; ++k) {
        pos[k] = begin + static_cast<double>((i + k) / pairs);
        freq[k] = frequencies[(i + k) % pairs];
      }
      rope_cos_sin_x4(pos, freq, &out[i]);
    }
  }
  for (; i < total; ++i)
    out[i] = rope_cos_sin(begin + static_cast<std::uint32_t>(i / pairs), frequencies[i % pairs]);
}

void rope_turns(const KvTransform& t, std::span<const CosSin> angles, std::size_t tokens,
                float sign, RopeTurns& out) {
  const std::size_t hd = t.head_dim, pairs = t.frequencies.size();
  out.period = hd % 8 == 0 ? hd : 8 % hd == 0 ? 8 : hd;
  out.c.resize(tokens * out.period);
  out.s.resize(tokens * out.period);
  for (std::size_t k = 0; k < tokens; ++k) {
    for (std::size_t e = 0; e < out.period; ++e) {
      const std::size_t d = e % hd;
      const bool first = t.pairs == RopePairs::interleaved ? d % 2 == 0 : d < hd / 2;
      const std::size_t i = t.pairs == RopePairs::interleaved ? d / 2 : d % (hd / 2);
      const CosSin cs = angles[k * pairs + i];
      out.c[k * out.period + e] = cs.c;
      out.s[k * out.period + e] = (first ? -sign : sign) * cs.s;
    }
  }
}

namespace {

// out_c = fmaf(in_c, c_e, in_partner(c) * s_e), one channel at a time.
[[gnu::always_inline]] inline void turn_body(const KvTransform& t, std::size_t P,
                                             const float* c_rows, const float* s_rows,
                                             std::size_t tokens, const float* in,
                                             std::size_t in_stride, float* out,
                                             std::size_t out_stride) noexcept {
  const std::size_t hd = t.head_dim;
  for (std::size_t k = 0; k < tokens; ++k) {
    const float* x = in + k * in_stride;
    float* y = out + k * out_stride;
    const float* c = c_rows + k * P;
    const float* s = s_rows + k * P;
    for (std::size_t ch = 0; ch < t.channels; ++ch) {
      const std::size_t d = ch % hd, e = ch % P;
      const std::size_t partner = t.pairs == RopePairs::interleaved ? ch ^ 1
                                  : d < hd / 2                      ? ch + hd / 2
                                                                    : ch - hd / 2;
      y[ch] = std::fma(x[ch], c[e], x[partner] * s[e]);
    }
  }
}

// The same where fmaf is an instruction rather than a library call.
__attribute__((target("avx2,fma"))) void turn_fma(const KvTransform& t, std::size_t P,
                                                  const float* c, const float* s,
                                                  std::size_t tokens, const float* in,
                                                  std::size_t in_stride, float* out,
                                                  std::size_t out_stride) noexcept {
  turn_body(t, P, c, s, tokens, in, in_stride, out, out_stride);
}

// Eight channels at a time, where a vector's partners are a shuffle of it or another vector.
__attribute__((target("avx2,fma"))) bool turn_avx2(const KvTransform& t, std::size_t P,
                                                   const float* c_rows, const float* s_rows,
                                                   std::size_t tokens, const float* in,
                                                   std::size_t in_stride, float* out,
                                                   std::size_t out_stride) noexcept {
  const std::size_t hd = t.head_dim, C = t.channels;
  const bool interleaved = t.pairs == RopePairs::interleaved;
  if (C % 8 != 0 || P % 8 != 0 || (!interleaved && hd != 4 && hd != 8 && (hd / 2) % 8 != 0)) {
    return false;
  }
  for (std::size_t k = 0; k < tokens; ++k) {
    const float* x = in + k * in_stride;
    float* y = out + k * out_stride;
    for (std::size_t ch = 0; ch < C; ch += 8) {
      const __m256 v = _mm256_loadu_ps(x + ch);
      __m256 partner;
      if (interleaved) {
        partner = _mm256_permute_ps(v, 0xB1);  // (1, 0, 3, 2) in each 128-bit lane
      } else if (hd == 4) {
        partner = _mm256_permute_ps(v, 0x4E);  // (2, 3, 0, 1)
      } else if (hd == 8) {
        partner = _mm256_permute2f128_ps(v, v, 0x01);
      } else {
        partner = _mm256_loadu_ps(x + (ch % hd < hd / 2 ? ch + hd / 2 : ch - hd / 2));
      }
      const std::size_t e = k * P + ch % P;
      _mm256_storeu_ps(y + ch,
                       _mm256_fmadd_ps(v, _mm256_loadu_ps(c_rows + e),
                                       _mm256_mul_ps(partner, _mm256_loadu_ps(s_rows + e))));
    }
  }
  return true;
}

}  // namespace

void turn_keys(const KvTransform& t, const RopeTurns& turns, std::size_t first_row,
               std::size_t tokens, const float* in, std::size_t in_stride, float* out,
               std::size_t out_stride) noexcept {
  const std::size_t skip = first_row * turns.period;
  const float* c = turns.c.data() + skip;
  const float* s = turns.s.data() + skip;
  if (cpu_has_avx2_f16c()) {
    if (g_simd_transform &&
        turn_avx2(t, turns.period, c, s, tokens, in, in_stride, out, out_stride)) {
      return;
    }
    turn_fma(t, turns.period, c, s, tokens, in, in_stride, out, out_stride);
  } else {
    turn_body(t, turns.period, c, s, tokens, in, in_stride, out, out_stride);
  }
}

const RopeTurns& TurnCache::rows(const std::shared_ptr<const KvTransform>& t, float sign,
                                 std::uint32_t begin, std::uint32_t count, std::size_t& first_row) {
  constexpr std::size_t kMaxBytes = std::size_t{4} << 20;
  if (for_ != t || sign_ != sign) {
    for_ = t;
    sign_ = sign;
    cached_ = 0;
  }
  const std::size_t hd = t->head_dim;
  const std::size_t row_bytes = 2 * sizeof(float) * (hd % 8 == 0 ? hd : 8 % hd == 0 ? 8 : hd);
  const std::size_t end = std::size_t{begin} + count, most = kMaxBytes / row_bytes;
  if (end <= most) {
    if (end > cached_) {
      const std::size_t grown = std::max(end, std::min(2 * cached_, most));
      rope_table(0, static_cast<std::uint32_t>(grown), t->frequencies, angles_);
      rope_turns(*t, angles_, grown, sign, cache_);
      cached_ = grown;
    }
    first_row = begin;
    return cache_;
  }
  rope_table(begin, count, t->frequencies, angles_);
  rope_turns(*t, angles_, count, sign, own_);
  first_row = 0;
  return own_;
}

void transpose_layers(std::span<const float> m, std::size_t n, std::vector<float>& out) {
  out.resize(m.size());
  for (std::size_t l = 0; l < m.size() / (n * n); ++l) {
    const float* s = m.data() + l * n * n;
    float* o = out.data() + l * n * n;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        o[j * n + i] = s[i * n + j];
  }
}

namespace {

void multiply_scalar(std::size_t n, const float* mt, std::size_t tokens,
                     const HalfRows<const float>& in, const HalfRows<float>& out) noexcept {
  for (std::size_t u = 0; u < tokens; ++u) {
    for (std::size_t i = 0; i < n; ++i) {
      float acc = 0.0f;
      for (std::size_t j = 0; j < n; ++j)
        acc = std::fma(mt[j * n + i], *in.at(u, j), acc);
      *out.at(u, i) = acc;
    }
  }
}

// U tokens by W vectors of outputs: U * W accumulators in registers, W column loads of M per
// U * W fmas. Constant trip counts, so that the compiler keeps every accumulator in a register.
// Output vectors lie within one half (callers check that halves are whole vectors).
template <std::size_t U, std::size_t W>
__attribute__((target("avx512f"), always_inline)) inline void block_avx512(
    std::size_t n, const float* mt, const HalfRows<const float>& in, const HalfRows<float>& out,
    std::size_t t, std::size_t i) noexcept {
  __m512 acc[U][W];
#pragma GCC unroll 16
  for (auto& r : acc)
#pragma GCC unroll 16
    for (auto& a : r)
      a = _mm512_setzero_ps();
  for (std::size_t j = 0; j < n; ++j) {
    const float* col = mt + j * n + i;
    const float* x0 = in.at(t, j);
    __m512 m[W];
#pragma GCC unroll 16
    for (std::size_t b = 0; b < W; ++b)
      m[b] = _mm512_loadu_ps(col + 16 * b);
#pragma GCC unroll 16
    for (std::size_t u = 0; u < U; ++u) {
      const __m512 x = _mm512_set1_ps(x0[u * in.stride]);
#pragma GCC unroll 16
      for (std::size_t b = 0; b < W; ++b)
        acc[u][b] = _mm512_fmadd_ps(m[b], x, acc[u][b]);
    }
  }
#pragma GCC unroll 16
  for (std::size_t u = 0; u < U; ++u)
#pragma GCC unroll 16
    for (std::size_t b = 0; b < W; ++b)
      _mm512_storeu_ps(out.at(t + u, i + 16 * b), acc[u][b]);
}

template <std::size_t U>
__attribute__((target("avx512f"))) void rows_avx512(std::size_t n, const float* mt,
                                                    const HalfRows<const float>& in,
                                                    const HalfRows<float>& out,
                                                    std::size_t t) noexcept {
  std::size_t i = 0;
  for (; i + 64 <= n; i += 64)
    block_avx512<U, 4>(n, mt, in, out, t, i);
  switch ((n - i) / 16) {
    case 3:
      block_avx512<U, 3>(n, mt, in, out, t, i);
      break;
    case 2:
      block_avx512<U, 2>(n, mt, in, out, t, i);
      break;
    case 1:
      block_avx512<U, 1>(n, mt, in, out, t, i);
      break;
    default:
      break;
  }
}

__attribute__((target("avx512f"))) void multiply_avx512(std::size_t n, const float* mt,
                                                        std::size_t tokens,
                                                        const HalfRows<const float>& in,
                                                        const HalfRows<float>& out) noexcept {
  std::size_t t = 0;
  for (; t + 4 <= tokens; t += 4)
    rows_avx512<4>(n, mt, in, out, t);
  for (; t < tokens; ++t)
    rows_avx512<1>(n, mt, in, out, t);
}

template <std::size_t U, std::size_t W>
__attribute__((target("avx2,fma"), always_inline)) inline void block_avx2(
    std::size_t n, const float* mt, const HalfRows<const float>& in, const HalfRows<float>& out,
    std::size_t t, std::size_t i) noexcept {
  __m256 acc[U][W];
#pragma GCC unroll 16
  for (auto& r : acc)
#pragma GCC unroll 16
    for (auto& a : r)
      a = _mm256_setzero_ps();
  for (std::size_t j = 0; j < n; ++j) {
    const float* col = mt + j * n + i;
    const float* x0 = in.at(t, j);
    __m256 m[W];
#pragma GCC unroll 16
    for (std::size_t b = 0; b < W; ++b)
      m[b] = _mm256_loadu_ps(col + 8 * b);
#pragma GCC unroll 16
    for (std::size_t u = 0; u < U; ++u) {
      const __m256 x = _mm256_set1_ps(x0[u * in.stride]);
#pragma GCC unroll 16
      for (std::size_t b = 0; b < W; ++b)
        acc[u][b] = _mm256_fmadd_ps(m[b], x, acc[u][b]);
    }
  }
#pragma GCC unroll 16
  for (std::size_t u = 0; u < U; ++u)
#pragma GCC unroll 16
    for (std::size_t b = 0; b < W; ++b)
      _mm256_storeu_ps(out.at(t + u, i + 8 * b), acc[u][b]);
}

template <std::size_t U>
__attribute__((target("avx2,fma"))) void rows_avx2(std::size_t n, const float* mt,
                                                   const HalfRows<const float>& in,
                                                   const HalfRows<float>& out,
                                                   std::size_t t) noexcept {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32)
    block_avx2<U, 4>(n, mt, in, out, t, i);
  switch ((n - i) / 8) {
    case 3:
      block_avx2<U, 3>(n, mt, in, out, t, i);
      break;
    case 2:
      block_avx2<U, 2>(n, mt, in, out, t, i);
      break;
    case 1:
      block_avx2<U, 1>(n, mt, in, out, t, i);
      break;
    default:
      break;
  }
}

// Three tokens by 32 outputs per block: 12 of the 16 ymm registers accumulate.
__attribute__((target("avx2,fma"))) void multiply_avx2(std::size_t n, const float* mt,
                                                       std::size_t tokens,
                                                       const HalfRows<const float>& in,
                                                       const HalfRows<float>& out) noexcept {
  std::size_t t = 0;
  for (; t + 3 <= tokens; t += 3)
    rows_avx2<3>(n, mt, in, out, t);
  for (; t < tokens; ++t)
    rows_avx2<1>(n, mt, in, out, t);
}

// Sparse products: each token's nonzero inputs (column index and value, ascending), then per
// block of outputs one fma per nonzero input and output vector. A block flags an output left at
// -0 (see transform.hpp); the caller computes those again in full.

// The inputs a token's gathering looks at: [0, e0) of the first half and [half, e1) of the
// second, the rest being zero tails. Ends are rounded up to whole vectors of `width` (halves
// are whole vectors).
using Scan = std::array<std::pair<std::size_t, std::size_t>, 2>;
Scan scan_of(std::size_t n, std::size_t half, ZeroTails z, std::size_t width) noexcept {
  const auto up = [&](std::size_t v) { return (v + width - 1) / width * width; };
  return {{{0, up(half - std::min(z.lo, half))},
           {half, half + up(n - half - std::min(z.hi, n - half))}}};
}

// Returns how many of the token's inputs are nonzero, written to idx/val.
std::size_t gather_nonzero(const Scan& scan, const HalfRows<const float>& in, std::size_t u,
                           std::uint32_t* idx, float* val) noexcept {
  std::size_t k = 0;
  for (const auto& [begin, end] : scan) {
    for (std::size_t j = begin; j < end; ++j) {
      const float x = *in.at(u, j);
      idx[k] = static_cast<std::uint32_t>(j);
      val[k] = x;
      k += x != 0.0f;
    }
  }
  return k;
}

// For each 8-bit mask, its set lanes in ascending order, then zeros: the permutation that packs
// a vector's selected lanes at its start (AVX2 has no compressing store).
const std::array<std::array<std::int32_t, 8>, 256>& compress_permutations() {
  static const auto table = [] {
    std::array<std::array<std::int32_t, 8>, 256> t{};
    for (std::uint32_t mask = 0; mask < 256; ++mask) {
      std::size_t slot = 0;
      for (std::int32_t lane = 0; lane < 8; ++lane)
        if ((mask >> lane) & 1u) t[mask][slot++] = lane;
    }
    return t;
  }();
  return table;
}

// gather_nonzero, eight inputs at a time (n % 8 == 0, halves whole vectors). Each round stores
// eight values and indices at the count so far, of which the nonzero ones count: the rest are
// overwritten by the next round or lie past the count, inside the token's n entries.
__attribute__((target("avx2,popcnt"))) std::size_t gather_nonzero_avx2(
    const Scan& scan, const HalfRows<const float>& in, std::size_t u, std::uint32_t* idx,
    float* val) noexcept {
  const std::array<std::int32_t, 8>* perms = compress_permutations().data();
  std::size_t k = 0;
  for (const auto& [begin, end] : scan) {
    for (std::size_t b = begin; b < end; b += 8) {
      const __m256i j = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(b)),
                                         _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
      const __m256 x = _mm256_loadu_ps(in.at(u, b));
      const auto nonzero = static_cast<std::uint32_t>(
          _mm256_movemask_ps(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NEQ_UQ)));
      const __m256i p = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(perms[nonzero].data()));
      _mm256_storeu_ps(val + k, _mm256_permutevar8x32_ps(x, p));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx + k), _mm256_permutevar8x32_epi32(j, p));
      k += static_cast<std::size_t>(_mm_popcnt_u32(nonzero));
    }
  }
  return k;
}

// gather_nonzero, sixteen inputs at a time (n % 16 == 0, halves whole vectors).
__attribute__((target("avx512f"))) std::size_t gather_nonzero_avx512(
    const Scan& scan, const HalfRows<const float>& in, std::size_t u, std::uint32_t* idx,
    float* val) noexcept {
  std::size_t k = 0;
  for (const auto& [begin, end] : scan) {
    for (std::size_t b = begin; b < end; b += 16) {
      const __m512i j =
          _mm512_add_epi32(_mm512_set1_epi32(static_cast<int>(b)),
                           _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
      const __m512 x = _mm512_loadu_ps(in.at(u, b));
      const __mmask16 nonzero = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_NEQ_UQ);
      _mm512_mask_compressstoreu_ps(val + k, nonzero, x);
      _mm512_mask_compressstoreu_epi32(idx + k, nonzero, j);
      k += static_cast<std::size_t>(__builtin_popcount(nonzero));
    }
  }
  return k;
}

template <std::size_t W>
__attribute__((target("avx512f"))) bool sparse_block_avx512(std::size_t n, const float* mt,
                                                            const std::uint32_t* idx,
                                                            const float* val, std::size_t nnz,
                                                            float* const* dst,
                                                            std::size_t i) noexcept {
  __m512 acc[W];
#pragma GCC unroll 16
  for (auto& a : acc)
    a = _mm512_setzero_ps();
  for (std::size_t k = 0; k < nnz; ++k) {
    const float* col = mt + std::size_t{idx[k]} * n + i;
    const __m512 x = _mm512_set1_ps(val[k]);
#pragma GCC unroll 16
    for (std::size_t b = 0; b < W; ++b)
      acc[b] = _mm512_fmadd_ps(_mm512_loadu_ps(col + 16 * b), x, acc[b]);
  }
  const __m512i negative_zero = _mm512_set1_epi32(static_cast<int>(0x80000000u));
  __mmask16 flagged = 0;
#pragma GCC unroll 16
  for (std::size_t b = 0; b < W; ++b) {
    flagged |= _mm512_cmpeq_epi32_mask(_mm512_castps_si512(acc[b]), negative_zero);
    _mm512_storeu_ps(dst[b], acc[b]);
  }
  return flagged != 0;
}

template <std::size_t W>
__attribute__((target("avx2,fma"))) bool sparse_block_avx2(std::size_t n, const float* mt,
                                                           const std::uint32_t* idx,
                                                           const float* val, std::size_t nnz,
                                                           float* const* dst,
                                                           std::size_t i) noexcept {
  __m256 acc[W];
#pragma GCC unroll 16
  for (auto& a : acc)
    a = _mm256_setzero_ps();
  for (std::size_t k = 0; k < nnz; ++k) {
    const float* col = mt + std::size_t{idx[k]} * n + i;
    const __m256 x = _mm256_set1_ps(val[k]);
#pragma GCC unroll 16
    for (std::size_t b = 0; b < W; ++b)
      acc[b] = _mm256_fmadd_ps(_mm256_loadu_ps(col + 8 * b), x, acc[b]);
  }
  const __m256i negative_zero = _mm256_set1_epi32(static_cast<int>(0x80000000u));
  int flagged = 0;
#pragma GCC unroll 16
  for (std::size_t b = 0; b < W; ++b) {
    flagged |= _mm256_movemask_ps(
        _mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_castps_si256(acc[b]), negative_zero)));
    _mm256_storeu_ps(dst[b], acc[b]);
  }
  return flagged != 0;
}

using SparseBlock = bool (*)(std::size_t n, const float* mt, const std::uint32_t* idx,
                             const float* val, std::size_t nnz, float* const* dst,
                             std::size_t i) noexcept;
// Blocks of 1..8 output vectors (index 0 unused).
constexpr SparseBlock kSparseAvx512[] = {nullptr,
                                         sparse_block_avx512<1>,
                                         sparse_block_avx512<2>,
                                         sparse_block_avx512<3>,
                                         sparse_block_avx512<4>,
                                         sparse_block_avx512<5>,
                                         sparse_block_avx512<6>,
                                         sparse_block_avx512<7>,
                                         sparse_block_avx512<8>};
constexpr SparseBlock kSparseAvx2[] = {nullptr,
                                       sparse_block_avx2<1>,
                                       sparse_block_avx2<2>,
                                       sparse_block_avx2<3>,
                                       sparse_block_avx2<4>,
                                       sparse_block_avx2<5>,
                                       sparse_block_avx2<6>,
                                       sparse_block_avx2<7>,
                                       sparse_block_avx2<8>};

// One token's outputs, in blocks of up to 8 vectors of `width` floats; true if any is -0.
bool sparse_token(std::size_t width, const SparseBlock* blocks, std::size_t n, const float* mt,
                  const std::uint32_t* idx, const float* val, std::size_t nnz,
                  const HalfRows<float>& out, std::size_t u) noexcept {
  bool flagged = false;
  float* dst[8];
  for (std::size_t i = 0; i < n; i += 8 * width) {
    const std::size_t w = std::min<std::size_t>(8, (n - i) / width);
    for (std::size_t b = 0; b < w; ++b)
      dst[b] = out.at(u, i + width * b);
    flagged |= blocks[w](n, mt, idx, val, nnz, dst, i);
  }
  return flagged;
}

// FORMAT.md's chain for the outputs of token u left at -0 by the sparse product.
void redo_negative_zeros(std::size_t n, const float* mt, const HalfRows<const float>& in,
                         const HalfRows<float>& out, std::size_t u) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    float* o = out.at(u, i);
    if (std::bit_cast<std::uint32_t>(*o) != 0x80000000u) continue;
    float acc = 0.0f;
    for (std::size_t j = 0; j < n; ++j)
      acc = std::fma(mt[j * n + i], *in.at(u, j), acc);
    *o = acc;
  }
}

}  // namespace

void multiply_sparse_rows(std::size_t n, std::span<const float> mt, std::size_t tokens,
                          HalfRows<const float> in, HalfRows<float> out, SparseScratch& scratch,
                          ZeroTails zero_tails) noexcept {
  const bool avx512 = g_simd_transform && n % 16 == 0 && out.half % 16 == 0 && avx512_enabled();
  const bool avx2 =
      !avx512 && g_simd_transform && n % 8 == 0 && out.half % 8 == 0 && cpu_has_avx2_f16c();
  if (!avx512 && !avx2) {
    multiply_rows(n, mt, tokens, in, out);
    return;
  }
  scratch.nonzero.resize(tokens * n);
  scratch.values.resize(tokens * n);
  scratch.counts.resize(tokens);
  // Mostly nonzero (more than a third): the blocked product shares each column load among
  // several tokens, which the sparse one cannot. Decided on the tokens gathered so far, from the
  // eighth on, so that a dense chunk costs the gathering of a few tokens only.
  std::size_t total = 0;
  // The gathering's vector width: its loads stay within a half.
  const std::size_t width = avx512 && in.half % 16 == 0 ? 16 : in.half % 8 == 0 ? 8 : 1;
  const Scan scan = scan_of(n, in.half, zero_tails, width);
  for (std::size_t u = 0; u < tokens; ++u) {
    std::uint32_t* idx = scratch.nonzero.data() + u * n;
    float* val = scratch.values.data() + u * n;
    scratch.counts[u] = width == 16  ? gather_nonzero_avx512(scan, in, u, idx, val)
                        : width == 8 ? gather_nonzero_avx2(scan, in, u, idx, val)
                                     : gather_nonzero(scan, in, u, idx, val);
    total += scratch.counts[u];
    if ((u >= 7 || u + 1 == tokens) && 3 * total > (u + 1) * n) {
      multiply_rows(n, mt, tokens, in, out);
      return;
    }
  }
  for (std::size_t u = 0; u < tokens; ++u) {
    const std::uint32_t* idx = scratch.nonzero.data() + u * n;
    const float* val = scratch.values.data() + u * n;
    const bool flagged =
        avx512 ? sparse_token(16, kSparseAvx512, n, mt.data(), idx, val, scratch.counts[u], out, u)
               : sparse_token(8, kSparseAvx2, n, mt.data(), idx, val, scratch.counts[u], out, u);
    if (flagged) redo_negative_zeros(n, mt.data(), in, out, u);
  }
}

void multiply_rows(std::size_t n, std::span<const float> mt, std::size_t tokens,
                   HalfRows<const float> in, HalfRows<float> out) noexcept {
  if (g_simd_transform && n % 16 == 0 && out.half % 16 == 0 && avx512_enabled()) {
    multiply_avx512(n, mt.data(), tokens, in, out);
  } else if (g_simd_transform && n % 8 == 0 && out.half % 8 == 0 && cpu_has_avx2_f16c()) {
    multiply_avx2(n, mt.data(), tokens, in, out);
  } else {
    multiply_scalar(n, mt.data(), tokens, in, out);
  }
}

}  // namespace codec

void KvTransform::unrotated(std::uint32_t position, const float* k, const float* v,
                            float* z) const {
  std::vector<codec::CosSin> angles;
  codec::rope_table(position, 1, frequencies, angles);
  std::memcpy(z + channels, v, channels * sizeof(float));
  if (frequencies.empty()) {
    std::memcpy(z, k, channels * sizeof(float));
    return;
  }
  codec::RopeTurns turns;
  codec::rope_turns(*this, angles, 1, -1.0f, turns);
  codec::turn_keys(*this, turns, 0, 1, k, channels, z, channels);
}

}  // namespace kvstream
