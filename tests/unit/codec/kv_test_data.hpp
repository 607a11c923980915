// Deterministic synthetic KV data for codec tests and golden files: per-channel offsets and
// spreads like real K/V (some outlier channels), values from a portable hash, not from
// <random> distributions whose output differs between standard libraries.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

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

}  // namespace kvstream::testing_data
