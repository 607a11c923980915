// Deterministic synthetic KV data for codec tests and golden files: per-channel offsets and
// spreads like real K/V (some outlier channels), values from a portable hash, not from
// <random> distributions whose output differs between standard libraries.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <vector>

#include "kvstream/codec.hpp"
#include "kvstream/half.hpp"
#include "kvstream/kv_cache.hpp"

namespace kvstream::testing_data {

inline std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Roughly standard normal: a sum of four uniforms, centred and scaled.
inline double gaussish(std::uint64_t key) {
  double s = 0;
  for (int i = 0; i < 4; ++i)
    s += static_cast<double>(mix(key * 4 + i) >> 11) * 0x1p-53;
  return (s - 2.0) * std::sqrt(3.0);
}

inline void store(const KvView& v, std::uint32_t l, KvPart p, std::uint32_t t, std::size_t c,
                  float f) {
  std::byte* row = v.row(l, p, t);
  switch (v.layout().dtype) {
    case DType::f32:
      std::memcpy(row + 4 * c, &f, 4);
      break;
    case DType::f16: {
      const std::uint16_t h = float_to_half(f);
      std::memcpy(row + 2 * c, &h, 2);
      break;
    }
    case DType::bf16: {
      const std::uint16_t h = float_to_bf16(f);
      std::memcpy(row + 2 * c, &h, 2);
      break;
    }
  }
}

inline double float_at(const KvView& v, std::uint32_t l, KvPart p, std::uint32_t t, std::size_t c) {
  const std::byte* row = v.row(l, p, t);
  switch (v.layout().dtype) {
    case DType::f32: {
      float f;
      std::memcpy(&f, row + 4 * c, 4);
      return f;
    }
    case DType::f16:
    case DType::bf16: {
      std::uint16_t h;
      std::memcpy(&h, row + 2 * c, 2);
      return v.layout().dtype == DType::f16 ? half_to_float(h) : bf16_to_float(h);
    }
  }
  return 0;
}

// Fills every token of `v`. With `specials`, a few values are NaN, +-Inf, -0 and subnormal.
inline void fill_synthetic(const KvView& v, std::uint64_t seed, bool specials) {
  const KvLayout& L = v.layout();
  const std::size_t C = L.row_values();
  for (std::uint32_t l = 0; l < L.layers; ++l) {
    for (KvPart p : {KvPart::key, KvPart::value}) {
      const std::uint64_t seg = mix(seed * 1000 + l * 2 + static_cast<unsigned>(p));
      for (std::size_t c = 0; c < C; ++c) {
        const double offset = gaussish(seg + c * 7) * (p == KvPart::key ? 1.5 : 0.2);
        const double spread = (c % 11 == 3 ? 6.0 : 0.6) * std::exp(0.5 * gaussish(seg + c * 13));
        for (std::uint32_t t = 0; t < L.tokens; ++t) {
          const double x = offset + spread * gaussish(seg ^ mix(c * 65537 + t));
          store(v, l, p, t, c, static_cast<float>(x));
        }
      }
    }
  }
  if (specials && L.tokens >= 8 && C >= 5) {
    store(v, 0, KvPart::key, 1, 0, std::numeric_limits<float>::quiet_NaN());
    store(v, 0, KvPart::value, 2, 1, std::numeric_limits<float>::infinity());
    store(v, L.layers - 1, KvPart::key, 3, 2, -std::numeric_limits<float>::infinity());
    store(v, 0, KvPart::key, 4, 3, -0.0f);
    store(v, 0, KvPart::key, 5, 4, 1e-7f);  // subnormal in fp16
  }
}

// KV whose neighbouring tokens are close, as in models where a token's K and V drift slowly
// (an AR(1) walk per channel, correlation 0.97 between neighbours): the previous-token
// predictor pays on it.
// With keys_only, V keeps what it held, so that a chunk mixes predicted and plain segments.
inline void fill_smooth(const KvView& v, std::uint64_t seed, bool keys_only = false) {
  const KvLayout& L = v.layout();
  for (std::uint32_t l = 0; l < L.layers; ++l) {
    for (KvPart p : {KvPart::key, KvPart::value}) {
      if (keys_only && p == KvPart::value) continue;
      const std::uint64_t seg = mix(seed * 1000 + l * 2 + static_cast<unsigned>(p));
      for (std::size_t c = 0; c < L.row_values(); ++c) {
        const double offset = gaussish(seg + c * 7);
        double x = 0;
        for (std::uint32_t t = 0; t < L.tokens; ++t) {
          x = 0.97 * x + 0.25 * gaussish(seg ^ mix(c * 65537 + t));
          store(v, l, p, t, c, static_cast<float>(offset + x));
        }
      }
    }
  }
}

// Makes the last channels of each segment (layer, part) constant over the tokens: kTailWidths,
// cycled segment by segment, give how many, each segment at its own value (0 for some), so that
// a lossy chunk's segments have constant tails (codec/FORMAT.md) of different widths.
inline constexpr std::uint32_t kTailWidths[] = {0, 8, 21, 64, 40, 3};
inline void fill_constant_tails(const KvView& v) {
  const KvLayout& L = v.layout();
  for (std::uint32_t s = 0; s < 2 * L.layers; ++s) {
    const std::size_t C = L.row_values();
    const std::size_t width = std::min<std::size_t>(kTailWidths[s % 6], C);
    const float value = s % 3 == 0 ? 0.0f : 0.375f * static_cast<float>(s);
    for (std::uint32_t t = 0; t < L.tokens; ++t)
      for (std::size_t c = C - width; c < C; ++c)
        store(v, s / 2, static_cast<KvPart>(s % 2), t, c, value);
  }
}

// A transform for KV of this shape (codec/FORMAT.md "Transform coding") from arithmetic alone,
// so that golden files do not depend on a libm: S = D U with U a product of Householder
// reflections and D a diagonal scale, A = U^T D^-1; RoPE frequencies 1, 1/8, 1/64, ...
inline KvTransform make_test_transform(std::uint32_t layers, std::uint32_t kv_heads,
                                       std::uint32_t head_dim, std::uint64_t seed) {
  KvTransform t;
  t.channels = kv_heads * head_dim;
  t.head_dim = head_dim;
  t.pairs = RopePairs::interleaved;
  for (std::uint32_t i = 0; i < head_dim / 2; ++i)
    t.frequencies.push_back(1.0f / static_cast<float>(1u << std::min(3 * i, 30u)));
  const std::size_t n = 2 * std::size_t{t.channels};
  for (std::uint32_t l = 0; l < layers; ++l) {
    std::vector<double> u(n * n, 0.0), v(n);
    for (std::size_t i = 0; i < n; ++i)
      u[i * n + i] = 1.0;
    for (int r = 0; r < 3; ++r) {  // u <- u (I - 2 v v^T / v^T v)
      double vv = 0;
      for (std::size_t i = 0; i < n; ++i) {
        v[i] = static_cast<double>(mix(seed * 977 + l * 31 + r * 7 + i) % 2001) / 1000.0 - 1.0;
        vv += v[i] * v[i];
      }
      for (std::size_t i = 0; i < n; ++i) {
        double uv = 0;
        for (std::size_t k = 0; k < n; ++k)
          uv += u[i * n + k] * v[k];
        for (std::size_t k = 0; k < n; ++k)
          u[i * n + k] -= 2 * uv * v[k] / vv;
      }
    }
    const auto d = [&](std::size_t i) { return 0.5 + static_cast<double>((i + l) % 5) / 4; };
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        t.synthesis.push_back(static_cast<float>(d(i) * u[i * n + j]));
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        t.analysis.push_back(static_cast<float>(u[j * n + i] / d(j)));
  }
  return t;
}

// A profile of three transform-coded levels (coefficient steps 1/64, 1/16, 1/4) for that
// transform.
inline CodecProfile make_transform_profile(std::uint32_t layers, std::uint32_t kv_heads,
                                           std::uint32_t head_dim, std::uint64_t seed) {
  std::vector<float> steps;
  for (float step : {1.0f / 64, 1.0f / 16, 1.0f / 4})
    steps.insert(steps.end(), 2 * std::size_t{layers}, step);
  auto p = CodecProfile::from_steps(layers, 1, 3, steps);
  const Status st = p->set_transform(make_test_transform(layers, kv_heads, head_dim, seed));
  if (!st.is_ok()) std::abort();
  return *p;
}

}  // namespace kvstream::testing_data
