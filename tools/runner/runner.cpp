#include "runner/runner.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace kvstream::runner {

namespace {

// Eight partial sums: deterministic, and lets the compiler vectorise without -ffast-math.
float dot(const float* a, const float* b, std::size_t n) {
  float acc[8] = {};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (std::size_t j = 0; j < 8; ++j)
      acc[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i)
    acc[i % 8] += a[i] * b[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// out[d] = W[d][:] . x for W row-major [rows][cols].
void matvec(float* out, const float* w, const float* x, std::size_t rows, std::size_t cols) {
  for (std::size_t r = 0; r < rows; ++r)
    out[r] = dot(w + r * cols, x, cols);
}

void rmsnorm(float* out, const float* x, const float* weight, std::size_t n) {
  float ss = dot(x, x, n) / static_cast<float>(n) + 1e-5f;
  ss = 1.0f / std::sqrt(ss);
  for (std::size_t i = 0; i < n; ++i)
    out[i] = weight[i] * (ss * x[i]);
}

void softmax(float* x, std::size_t n) {
  const float mx = *std::max_element(x, x + n);
  float sum = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - mx);
    sum += x[i];
  }
  for (std::size_t i = 0; i < n; ++i)
    x[i] /= sum;
}

void rope(float* vec, std::size_t heads, std::size_t head_dim, const float* cos, const float* sin) {
  for (std::size_t h = 0; h < heads; ++h) {
    float* v = vec + h * head_dim;
    for (std::size_t i = 0; i < head_dim / 2; ++i) {
      const float v0 = v[2 * i];
      const float v1 = v[2 * i + 1];
      v[2 * i] = v0 * cos[i] - v1 * sin[i];
      v[2 * i + 1] = v0 * sin[i] + v1 * cos[i];
    }
  }
}

}  // namespace

// A layout that Model::load already validated cannot fail here, so value() is safe.
Runner::Runner(const Model& model)
    : model_(&model),
      cache_(KvBuffer::create(model.kv_layout(model.config().seq_len, DType::f32)).value()) {
  const ModelConfig& c = model.config();
  x_.resize(c.dim);
  xb_.resize(c.dim);
  xb2_.resize(c.dim);
  q_.resize(c.dim);
  hb_.resize(c.hidden_dim);
  hb2_.resize(c.hidden_dim);
  att_.resize(c.seq_len);
  logits_.resize(c.vocab);
}

Expected<std::span<const float>> Runner::step(std::int32_t token) {
  const ModelConfig& c = model_->config();
  if (token < 0 || static_cast<std::uint32_t>(token) >= c.vocab) {
    return Status(Errc::out_of_range,
                  fmt::format("token id {} outside the vocabulary of {}", token, c.vocab));
  }
  if (length_ >= c.seq_len) {
    return Status(Errc::out_of_range,
                  fmt::format("position {} past the model's seq_len {}", length_, c.seq_len));
  }
  const std::uint32_t pos = length_;
  const std::size_t dim = c.dim, hidden = c.hidden_dim, hd = c.head_dim(), kv_dim = c.kv_dim();
  const std::size_t kv_mul = c.heads / c.kv_heads;
  const float inv_sqrt_hd = 1.0f / std::sqrt(static_cast<float>(hd));
  const KvView cache = cache_.view();
  std::copy_n(model_->token_embedding() + std::size_t(token) * dim, dim, x_.begin());

  for (std::uint32_t l = 0; l < c.layers; ++l) {
    const LayerWeights& w = model_->layer(l);
    auto* k = reinterpret_cast<float*>(cache.row(l, KvPart::key, pos));
    auto* v = reinterpret_cast<float*>(cache.row(l, KvPart::value, pos));
    rmsnorm(xb_.data(), x_.data(), w.rms_att, dim);
    matvec(q_.data(), w.wq, xb_.data(), dim, dim);
    matvec(k, w.wk, xb_.data(), kv_dim, dim);
    matvec(v, w.wv, xb_.data(), kv_dim, dim);
    rope(q_.data(), c.heads, hd, model_->rope_cos(pos), model_->rope_sin(pos));
    rope(k, c.kv_heads, hd, model_->rope_cos(pos), model_->rope_sin(pos));

    for (std::size_t h = 0; h < c.heads; ++h) {
      const float* qh = q_.data() + h * hd;
      const std::size_t kvh = h / kv_mul;
      for (std::uint32_t t = 0; t <= pos; ++t) {
        const auto* kt = reinterpret_cast<const float*>(cache.row(l, KvPart::key, t)) + kvh * hd;
        att_[t] = dot(qh, kt, hd) * inv_sqrt_hd;
      }
      softmax(att_.data(), pos + 1);
      float* out = xb_.data() + h * hd;
      std::fill_n(out, hd, 0.0f);
      for (std::uint32_t t = 0; t <= pos; ++t) {
        const auto* vt = reinterpret_cast<const float*>(cache.row(l, KvPart::value, t)) + kvh * hd;
        const float a = att_[t];
        for (std::size_t i = 0; i < hd; ++i)
          out[i] += a * vt[i];
      }
    }
    matvec(xb2_.data(), w.wo, xb_.data(), dim, dim);
    for (std::size_t i = 0; i < dim; ++i)
      x_[i] += xb2_[i];

    rmsnorm(xb_.data(), x_.data(), w.rms_ffn, dim);
    matvec(hb_.data(), w.w1, xb_.data(), hidden, dim);
    matvec(hb2_.data(), w.w3, xb_.data(), hidden, dim);
    for (std::size_t i = 0; i < hidden; ++i) {
      const float g = hb_[i];
      hb_[i] = g / (1.0f + std::exp(-g)) * hb2_[i];  // SiLU(w1 x) * (w3 x)
    }
    matvec(xb2_.data(), w.w2, hb_.data(), dim, hidden);
    for (std::size_t i = 0; i < dim; ++i)
      x_[i] += xb2_[i];
  }
  rmsnorm(x_.data(), x_.data(), model_->rms_final(), dim);
  matvec(logits_.data(), model_->classifier(), x_.data(), c.vocab, dim);
  ++length_;
  return std::span<const float>(logits_);
}

Status Runner::load_kv(const KvView& src, std::uint32_t count) {
  if (count > model_->config().seq_len) {
    return Status(Errc::out_of_range, fmt::format("KV of {} tokens exceeds the model's seq_len {}",
                                                  count, model_->config().seq_len));
  }
  KVS_RETURN_IF_ERROR(copy_tokens(src, 0, cache_.view(), 0, count));
  length_ = count;
  return Status::ok();
}

Status Runner::store_kv(std::uint32_t begin, std::uint32_t count, const KvView& dst,
                        std::uint32_t dst_begin) const {
  if (std::uint64_t{begin} + count > length_) {
    return Status(Errc::out_of_range,
                  fmt::format("positions [{}, {}) not computed (runner holds {})", begin,
                              std::uint64_t{begin} + count, length_));
  }
  return copy_tokens(cache_.view(), begin, dst, dst_begin, count);
}

Status capture_kv(Runner& runner, std::span<const std::int32_t> tokens, const KvView& out) {
  KVS_RETURN_IF_ERROR(out.check_range(0, static_cast<std::uint32_t>(tokens.size())));
  runner.reset();
  for (std::int32_t t : tokens)
    KVS_RETURN_IF_ERROR(runner.step(t).status());
  return runner.store_kv(0, runner.length(), out, 0);
}

Expected<std::vector<float>> continue_from(Runner& runner, const KvView& prefix,
                                           std::uint32_t prefix_len,
                                           std::span<const std::int32_t> tokens) {
  KVS_RETURN_IF_ERROR(runner.load_kv(prefix, prefix_len));
  const std::size_t vocab = runner.model().config().vocab;
  std::vector<float> logits;
  logits.reserve(tokens.size() * vocab);
  for (std::int32_t t : tokens) {
    KVS_ASSIGN_OR_RETURN(std::span<const float> row, runner.step(t));
    logits.insert(logits.end(), row.begin(), row.end());
  }
  return logits;
}

Status recompute_kv(Runner& runner, const KvView& kv, std::uint32_t begin,
                    std::span<const std::int32_t> chunk_tokens) {
  const auto n = static_cast<std::uint32_t>(chunk_tokens.size());
  KVS_RETURN_IF_ERROR(kv.check_range(begin, n));
  KVS_RETURN_IF_ERROR(runner.load_kv(kv, begin));
  for (std::int32_t t : chunk_tokens)
    KVS_RETURN_IF_ERROR(runner.step(t).status());
  return runner.store_kv(begin, n, kv, begin);
}

}  // namespace kvstream::runner
