#include "cli/transform_fit.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace kvstream::cli {

namespace {

// The first `tokens` tokens of a cache in fp32, so that values read as plain floats.
KvBuffer as_f32(const KvBuffer& kv, std::uint32_t tokens) {
  KvLayout l = kv.layout();
  l.dtype = DType::f32;
  l.tokens = tokens;
  KvBuffer out = std::move(*KvBuffer::create(l));
  copy_tokens(kv.view(), 0, out.view(), 0, tokens).ignore();  // same shape, tokens in range
  return out;
}

float value_at(const KvView& v, std::uint32_t layer, KvPart part, std::uint32_t token,
               std::size_t c) {
  return reinterpret_cast<const float*>(v.row(layer, part, token))[c];
}

}  // namespace

std::vector<double> channel_spreads(std::span<const KvBuffer> caches, std::uint32_t tokens,
                                    std::uint32_t chunk) {
  const KvLayout& l = caches.front().layout();
  const std::size_t C = l.row_values();
  std::vector<double> sum_sq(std::size_t{2} * l.layers * C, 0.0);
  std::size_t chunks = 0;
  std::vector<double> mean(C), mad(C);
  for (const KvBuffer& cache : caches) {
    const KvBuffer kv = as_f32(cache, tokens);
    const KvView v = kv.view();
    for (std::uint32_t s = 0; s < tokens; s += chunk) {
      const std::uint32_t n = std::min(chunk, tokens - s);
      for (std::uint32_t lp = 0; lp < 2 * l.layers; ++lp) {
        const auto part = static_cast<KvPart>(lp % 2);
        std::fill(mean.begin(), mean.end(), 0.0);
        std::fill(mad.begin(), mad.end(), 0.0);
        for (std::uint32_t t = s; t < s + n; ++t)
          for (std::size_t c = 0; c < C; ++c)
            mean[c] += double{value_at(v, lp / 2, part, t, c)} / n;
        for (std::uint32_t t = s; t < s + n; ++t)
          for (std::size_t c = 0; c < C; ++c)
            mad[c] += std::fabs(value_at(v, lp / 2, part, t, c) - mean[c]) / n;
        for (std::size_t c = 0; c < C; ++c) {
          const double sigma = mad[c] * std::sqrt(std::acos(-1.0) / 2);
          sum_sq[lp * C + c] += sigma * sigma;
        }
      }
      ++chunks;
    }
  }
  for (double& x : sum_sq)
    x = std::sqrt(x / static_cast<double>(chunks));
  return sum_sq;
}

void symmetric_eigen(std::vector<double>& a, std::size_t n, std::vector<double>& values,
                     std::vector<double>& vectors) {
  vectors.assign(n * n, 0.0);
  for (std::size_t i = 0; i < n; ++i)
    vectors[i * n + i] = 1.0;
  for (int sweep = 0; sweep < 100; ++sweep) {
    double off = 0.0, total = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        total += a[i * n + j] * a[i * n + j];
        if (i != j) off += a[i * n + j] * a[i * n + j];
      }
    }
    if (off <= 1e-30 * total) break;
    for (std::size_t p = 0; p + 1 < n; ++p) {
      for (std::size_t q = p + 1; q < n; ++q) {
        const double apq = a[p * n + q];
        if (apq == 0.0) continue;
        // The rotation that zeroes a[p][q] (Golub and Van Loan, algorithm 8.4.1).
        const double tau = (a[q * n + q] - a[p * n + p]) / (2 * apq);
        const double t = (tau >= 0 ? 1.0 : -1.0) / (std::fabs(tau) + std::sqrt(1 + tau * tau));
        const double c = 1 / std::sqrt(1 + t * t), s = t * c;
        for (std::size_t k = 0; k < n; ++k) {
          const double akp = a[k * n + p], akq = a[k * n + q];
          a[k * n + p] = c * akp - s * akq;
          a[k * n + q] = s * akp + c * akq;
        }
        for (std::size_t k = 0; k < n; ++k) {
          const double apk = a[p * n + k], aqk = a[q * n + k];
          a[p * n + k] = c * apk - s * aqk;
          a[q * n + k] = s * apk + c * aqk;
        }
        for (std::size_t k = 0; k < n; ++k) {
          const double vkp = vectors[k * n + p], vkq = vectors[k * n + q];
          vectors[k * n + p] = c * vkp - s * vkq;
          vectors[k * n + q] = s * vkp + c * vkq;
        }
      }
    }
  }
  std::vector<std::size_t> order(n);
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(),
            [&](std::size_t x, std::size_t y) { return a[x * n + x] > a[y * n + y]; });
  values.resize(n);
  std::vector<double> sorted(n * n);
  for (std::size_t j = 0; j < n; ++j) {
    values[j] = a[order[j] * n + order[j]];
    for (std::size_t k = 0; k < n; ++k)
      sorted[k * n + j] = vectors[k * n + order[j]];
  }
  vectors = std::move(sorted);
}

Expected<KvTransform> fit_transform(const TransformFitInput& in) {
  if (in.caches.empty() || in.chunk == 0 || in.tokens == 0) {
    return Status(Errc::invalid_argument, "transform fit: no calibration tokens");
  }
  const KvLayout& l = in.caches.front().layout();
  const std::size_t C = l.row_values(), n = 2 * C;
  KvTransform t;
  t.channels = static_cast<std::uint32_t>(C);
  t.head_dim = l.head_dim;
  t.pairs = in.pairs;
  t.frequencies = in.frequencies;
  if (in.weights.size() != l.layers * n) {
    return Status(Errc::invalid_argument,
                  fmt::format("transform fit: {} weights for {} layers x {} channels",
                              in.weights.size(), l.layers, n));
  }
  const std::size_t hd = l.head_dim, heads = l.kv_heads;
  if (!in.value_metrics.empty() && in.value_metrics.size() != l.layers * heads * hd * hd) {
    return Status(Errc::invalid_argument,
                  fmt::format("transform fit: {} value metric entries for {} layers x {} heads "
                              "of {} x {}",
                              in.value_metrics.size(), l.layers, heads, hd, hd));
  }
  t.analysis.resize(l.layers * n * n);
  t.synthesis.resize(l.layers * n * n);
  std::vector<float> k(C), v(C);
  std::vector<double> cov(n * n), mean(n), g(n * n), root(n * n), inverse_root(n * n),
      weighted(n * n), values, vectors;
  std::vector<float> chunk_z;
  std::vector<KvBuffer> caches;  // in fp32, once for every layer
  for (const KvBuffer& cache : in.caches)
    caches.push_back(as_f32(cache, in.tokens));
  for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
    // The metric G of the error in z: K's channel weights (a rotated pair shares one), and V's,
    // or per V head the given metric scaled to the same total weight.
    std::fill(g.begin(), g.end(), 0.0);
    for (std::size_t c = 0; c < n; ++c) {
      const double w = in.weights[layer * n + c];
      if (!(w > 0) || !std::isfinite(w)) {
        return Status(Errc::invalid_argument,
                      fmt::format("transform fit: weight {} of layer {} value {}", w, layer, c));
      }
      g[c * n + c] = w;
    }
    if (!t.frequencies.empty()) {
      for (std::size_t h = 0; h < C; h += hd) {
        for (std::uint32_t i = 0; i < t.frequencies.size(); ++i) {
          std::uint32_t a = 0, b = 0;
          rope_pair(t.pairs, l.head_dim, i, a, b);
          g[(h + a) * n + h + a] = g[(h + b) * n + h + b] =
              0.5 * (g[(h + a) * n + h + a] + g[(h + b) * n + h + b]);
        }
      }
    }
    if (!in.value_metrics.empty()) {
      for (std::size_t h = 0; h < heads; ++h) {
        const double* m = &in.value_metrics[((layer * heads) + h) * hd * hd];
        const std::size_t base = C + h * hd;
        double total = 0, trace = 0;
        for (std::size_t a = 0; a < hd; ++a) {
          total += g[(base + a) * n + base + a];
          trace += m[a * hd + a];
        }
        if (!(trace > 0)) continue;  // keep the diagonal weights
        for (std::size_t a = 0; a < hd; ++a)
          for (std::size_t b = 0; b < hd; ++b)
            g[(base + a) * n + base + b] = m[a * hd + b] * total / trace;
      }
    }
    // G^(1/2) and G^(-1/2), from G's eigenvectors (its eigenvalues floored, for a metric that
    // is singular in some direction).
    symmetric_eigen(g, n, values, vectors);
    const double floor = std::max(values.front(), 1e-300) * 1e-12;
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        double r = 0, ir = 0;
        for (std::size_t e = 0; e < n; ++e) {
          const double lambda = std::max(values[e], floor);
          const double p = vectors[i * n + e] * vectors[j * n + e];
          r += p * std::sqrt(lambda);
          ir += p / std::sqrt(lambda);
        }
        root[i * n + j] = r;
        inverse_root[i * n + j] = ir;
      }
    }
    // Covariance of z within chunks.
    std::fill(cov.begin(), cov.end(), 0.0);
    std::size_t samples = 0;
    for (const KvBuffer& kv : caches) {
      const KvView view = kv.view();
      for (std::uint32_t s = 0; s < in.tokens; s += in.chunk) {
        const std::uint32_t count = std::min(in.chunk, in.tokens - s);
        chunk_z.resize(count * n);
        std::fill(mean.begin(), mean.end(), 0.0);
        for (std::uint32_t i = 0; i < count; ++i) {
          for (std::size_t c = 0; c < C; ++c) {
            k[c] = value_at(view, layer, KvPart::key, s + i, c);
            v[c] = value_at(view, layer, KvPart::value, s + i, c);
          }
          t.unrotated(s + i, k.data(), v.data(), &chunk_z[i * n]);
          for (std::size_t c = 0; c < n; ++c)
            mean[c] += double{chunk_z[i * n + c]} / count;
        }
        for (std::uint32_t i = 0; i < count; ++i) {
          for (std::size_t a = 0; a < n; ++a) {
            const double xa = chunk_z[i * n + a] - mean[a];
            for (std::size_t b = 0; b <= a; ++b)
              cov[a * n + b] += xa * (chunk_z[i * n + b] - mean[b]);
          }
        }
        samples += count;
      }
    }
    for (std::size_t a = 0; a < n; ++a)
      for (std::size_t b = 0; b <= a; ++b)
        cov[b * n + a] = cov[a * n + b] /= static_cast<double>(samples);
    // The weighted covariance G^(1/2) cov G^(1/2), and its eigenvectors U.
    const auto multiply = [n](const std::vector<double>& x, const std::vector<double>& y,
                              std::vector<double>& out) {
      out.assign(n * n, 0.0);
      for (std::size_t i = 0; i < n; ++i)
        for (std::size_t a = 0; a < n; ++a)
          for (std::size_t j = 0; j < n; ++j)
            out[i * n + j] += x[i * n + a] * y[a * n + j];
    };
    multiply(root, cov, g);  // g is free again: it holds root * cov
    multiply(g, root, weighted);
    symmetric_eigen(weighted, n, values, vectors);
    // y = U^T G^(1/2) z and z = G^(-1/2) U y.
    float* A = t.analysis.data() + layer * n * n;
    float* S = t.synthesis.data() + layer * n * n;
    for (std::size_t i = 0; i < n; ++i) {
      for (std::size_t j = 0; j < n; ++j) {
        double a = 0, s_ij = 0;
        for (std::size_t e = 0; e < n; ++e) {
          a += vectors[e * n + i] * root[e * n + j];
          s_ij += inverse_root[i * n + e] * vectors[e * n + j];
        }
        A[i * n + j] = static_cast<float>(a);
        S[i * n + j] = static_cast<float>(s_ij);
      }
    }
  }
  KVS_RETURN_IF_ERROR(t.validate());
  return t;
}

}  // namespace kvstream::cli
