// The transform fit (tools/cli/transform_fit.hpp) on KV with known structure.
#include "cli/transform_fit.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace kvstream::cli {
namespace {

double noise(std::uint64_t key) {  // deterministic, roughly uniform in [-1, 1)
  key = (key ^ (key >> 33)) * 0xff51afd7ed558ccdULL;
  key = (key ^ (key >> 33)) * 0xc4ceb9fe1a85ec53ULL;
  return static_cast<double>((key ^ (key >> 33)) >> 11) / 4503599627370496.0 - 1.0;
}

TEST(TransformFit, SymmetricEigenDecomposes) {
  const std::size_t n = 5;
  std::vector<double> a(n * n);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t j = 0; j <= i; ++j)
      a[i * n + j] = a[j * n + i] = noise(i * 7 + j) + (i == j ? 3.0 : 0.0);
  const std::vector<double> original = a;
  std::vector<double> values, vectors;
  symmetric_eigen(a, n, values, vectors);
  for (std::size_t e = 0; e + 1 < n; ++e)
    EXPECT_GE(values[e], values[e + 1]);
  for (std::size_t e = 0; e < n; ++e) {  // A v = lambda v
    for (std::size_t i = 0; i < n; ++i) {
      double av = 0;
      for (std::size_t j = 0; j < n; ++j)
        av += original[i * n + j] * vectors[j * n + e];
      EXPECT_NEAR(av, values[e] * vectors[i * n + e], 1e-9);
    }
  }
}

// V is a mix of K (undone RoPE) plus a little noise: the fitted coefficients must be
// uncorrelated on the data, S must invert A, and most of the variance must sit in the first
// coefficients.
TEST(TransformFit, DecorrelatesCorrelatedKeysAndValues) {
  const KvLayout layout{2, 2, 4, DType::f32, 64};
  const std::size_t C = 8, n = 16;
  std::vector<KvBuffer> caches;
  const std::vector<float> frequencies = {1.0f, 0.01f};  // RoPE of the keys
  std::vector<float> z(n), k(C), v(C);
  for (int i = 0; i < 6; ++i) {
    auto kv = KvBuffer::create(layout);
    ASSERT_TRUE(kv);
    for (std::uint32_t l = 0; l < 2; ++l) {
      for (std::uint32_t t = 0; t < 64; ++t) {
        for (std::size_t c = 0; c < C; ++c)
          k[c] = static_cast<float>((c + 1) * noise(i * 100000 + l * 10000 + t * 100 + c));
        for (std::size_t c = 0; c < C; ++c)
          v[c] = 0.5f * k[(c + 3) % C] - 0.25f * k[c] +
                 0.01f * static_cast<float>(noise(7 + i * 100000 + l * 10000 + t * 100 + c));
        // The cache holds K turned by RoPE (pairs (0, 1) and (2, 3) of each head).
        std::vector<float> turned(C);
        for (std::size_t h = 0; h < C; h += 4) {
          for (std::uint32_t p = 0; p < 2; ++p) {
            const double th = t * double{frequencies[p]};
            const double ka = k[h + 2 * p], kb = k[h + 2 * p + 1];
            turned[h + 2 * p] = static_cast<float>(ka * std::cos(th) - kb * std::sin(th));
            turned[h + 2 * p + 1] = static_cast<float>(ka * std::sin(th) + kb * std::cos(th));
          }
        }
        std::memcpy(kv->view().row(l, KvPart::key, t), turned.data(), C * sizeof(float));
        std::memcpy(kv->view().row(l, KvPart::value, t), v.data(), C * sizeof(float));
      }
    }
    caches.push_back(std::move(*kv));
  }
  TransformFitInput in;
  in.caches = caches;
  in.tokens = 64;
  in.chunk = 32;
  in.frequencies = frequencies;
  in.weights.assign(2 * n, 1.0);
  in.value_metrics.assign(2 * 2 * 4 * 4, 0.0);
  for (std::size_t b = 0; b < 4; ++b)  // each V head: weight 2 on one direction, 1 elsewhere
    for (std::size_t a = 0; a < 4; ++a)
      in.value_metrics[b * 16 + a * 4 + a] = a == 0 ? 2.0 : 1.0;
  auto fitted = fit_transform(in);
  ASSERT_TRUE(fitted) << fitted.error().to_string();
  ASSERT_TRUE(fitted->validate().is_ok());
  for (std::uint32_t l = 0; l < 2; ++l) {
    const float* A = &fitted->analysis[l * n * n];
    const float* S = &fitted->synthesis[l * n * n];
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        double sa = 0;
        for (std::size_t e = 0; e < n; ++e)
          sa += double{S[i * n + e]} * A[e * n + j];
        EXPECT_NEAR(sa, i == j ? 1.0 : 0.0, 1e-4) << "S A at layer " << l;
      }
    }
    // Coefficient covariance on the data (within chunks, as fitted).
    std::vector<double> cov(n * n, 0.0), sum(n, 0.0);
    std::vector<std::vector<double>> ys;
    for (const KvBuffer& kv : caches) {
      for (std::uint32_t t = 0; t < 64; ++t) {
        fitted->unrotated(t, reinterpret_cast<const float*>(kv.view().row(l, KvPart::key, t)),
                          reinterpret_cast<const float*>(kv.view().row(l, KvPart::value, t)),
                          z.data());
        std::vector<double> y(n, 0.0);
        for (std::size_t i = 0; i < n; ++i)
          for (std::size_t j = 0; j < n; ++j)
            y[i] += double{A[i * n + j]} * z[j];
        ys.push_back(y);
      }
    }
    for (std::size_t c0 = 0; c0 < ys.size(); c0 += 32) {
      std::vector<double> mean(n, 0.0);
      for (std::size_t r = c0; r < c0 + 32; ++r)
        for (std::size_t i = 0; i < n; ++i)
          mean[i] += ys[r][i] / 32;
      for (std::size_t r = c0; r < c0 + 32; ++r)
        for (std::size_t i = 0; i < n; ++i)
          for (std::size_t j = 0; j < n; ++j)
            cov[i * n + j] += (ys[r][i] - mean[i]) * (ys[r][j] - mean[j]) / ys.size();
    }
    // Uncorrelated, up to the fp32 rounding of A (relative to the largest variance).
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        if (i == j) continue;
        EXPECT_LT(std::fabs(cov[i * n + j]),
                  1e-2 * std::sqrt(cov[i * n + i] * cov[j * n + j]) + 1e-6 * cov[0])
            << "coefficients " << i << " and " << j << " correlate";
      }
    }
    for (std::size_t i = 0; i + 1 < n; ++i)
      EXPECT_GE(cov[i * n + i] * (1 + 1e-6), cov[(i + 1) * n + i + 1]);
    // V is nearly a function of K: the last C coefficients carry almost nothing.
    EXPECT_LT(cov[(n - 1) * n + n - 1], 1e-3 * cov[0]);
  }
}

}  // namespace
}  // namespace kvstream::cli
