#include "runner/model.hpp"

#include <fmt/format.h>
#include <fmt/std.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>

namespace kvstream::runner {

namespace {

constexpr std::size_t kHeaderBytes = 7 * sizeof(std::int32_t);
// Far above any checkpoint this runner is meant for, low enough that size arithmetic
// cannot overflow 64 bits.
constexpr std::int64_t kMaxDim = 1 << 20;
constexpr std::int64_t kMaxLayers = 1024;

struct FileCloser {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

Status corrupt(const std::filesystem::path& path, std::string what) {
  return Status(Errc::corrupt_data, fmt::format("checkpoint {}: {}", path, what));
}

Status check_header(const std::filesystem::path& path, const std::array<std::int32_t, 7>& h) {
  static constexpr std::array<const char*, 7> kNames = {
      "dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"};
  for (std::size_t i = 0; i < h.size(); ++i) {
    const std::int64_t v = i == 5 ? std::abs(std::int64_t{h[i]}) : h[i];
    const std::int64_t limit = i == 2 ? kMaxLayers : kMaxDim;
    if (v <= 0 || v > limit) {
      return corrupt(path,
                     fmt::format("header field {} is {} (expected 1..{})", kNames[i], h[i], limit));
    }
  }
  const auto [dim, hidden, layers, heads, kv_heads, vocab, seq_len] = h;
  if (dim % heads != 0) {
    return corrupt(path, fmt::format("dim {} is not a multiple of n_heads {}", dim, heads));
  }
  if (heads % kv_heads != 0) {
    return corrupt(path,
                   fmt::format("n_heads {} is not a multiple of n_kv_heads {}", heads, kv_heads));
  }
  if ((dim / heads) % 2 != 0) {
    return corrupt(path, fmt::format("head_dim {} is odd; RoPE rotates pairs", dim / heads));
  }
  return Status::ok();
}

}  // namespace

Expected<Model> Model::load(const std::filesystem::path& path) {
  std::error_code ec;
  const auto file_size = std::filesystem::file_size(path, ec);
  if (ec) {
    return Status(ec == std::errc::no_such_file_or_directory ? Errc::not_found : Errc::io_error,
                  fmt::format("checkpoint {}: {}", path, ec.message()));
  }
  std::unique_ptr<std::FILE, FileCloser> file(std::fopen(path.c_str(), "rb"));
  if (!file) return Status(Errc::io_error, fmt::format("checkpoint {}: cannot open", path));
  if (file_size < kHeaderBytes) {
    return corrupt(
        path, fmt::format("{} bytes, shorter than the {}-byte header", file_size, kHeaderBytes));
  }
  std::array<std::int32_t, 7> h{};
  if (std::fread(h.data(), sizeof(std::int32_t), h.size(), file.get()) != h.size()) {
    return Status(Errc::io_error, fmt::format("checkpoint {}: header read failed", path));
  }
  KVS_RETURN_IF_ERROR(check_header(path, h));

  Model m;
  m.path_ = path;
  ModelConfig& c = m.config_;
  c.dim = static_cast<std::uint32_t>(h[0]);
  c.hidden_dim = static_cast<std::uint32_t>(h[1]);
  c.layers = static_cast<std::uint32_t>(h[2]);
  c.heads = static_cast<std::uint32_t>(h[3]);
  c.kv_heads = static_cast<std::uint32_t>(h[4]);
  c.shared_classifier = h[5] > 0;
  c.vocab = static_cast<std::uint32_t>(std::abs(h[5]));
  c.seq_len = static_cast<std::uint32_t>(h[6]);

  const std::size_t dim = c.dim, hidden = c.hidden_dim, layers = c.layers, kv_dim = c.kv_dim();
  const std::size_t half_head = c.head_dim() / 2;
  // llama2.c's legacy order; every group holds all layers in turn.
  const std::size_t per_layer[9] = {dim, dim * dim,    dim * kv_dim, dim * kv_dim, dim * dim,
                                    dim, hidden * dim, dim * hidden, hidden * dim};
  std::size_t floats = std::size_t{c.vocab} * dim;
  for (std::size_t n : per_layer)
    floats += layers * n;
  floats += dim;                                     // rms_final
  floats += 2 * std::size_t{c.seq_len} * half_head;  // RoPE tables (unused: computed below)
  if (!c.shared_classifier) floats += std::size_t{c.vocab} * dim;
  const std::size_t expected = kHeaderBytes + floats * sizeof(float);
  if (file_size != expected) {
    return corrupt(path,
                   fmt::format("{} bytes, but its header ({}x{} dim, {} layers, {} heads, {} "
                               "KV heads, vocab {}, seq_len {}) needs {} bytes{}",
                               file_size, c.dim, c.hidden_dim, c.layers, c.heads, c.kv_heads, h[5],
                               c.seq_len, expected, file_size < expected ? " (truncated)" : ""));
  }

  m.weights_.resize(floats);
  if (std::fread(m.weights_.data(), sizeof(float), floats, file.get()) != floats) {
    return Status(Errc::io_error, fmt::format("checkpoint {}: weight read failed", path));
  }
  for (std::size_t i = 0; i < floats; ++i) {
    if (!std::isfinite(m.weights_[i])) {
      return corrupt(path, fmt::format("weight {} (byte offset {}) is not finite", i,
                                       kHeaderBytes + i * sizeof(float)));
    }
  }

  const float* p = m.weights_.data();
  m.embedding_ = p;
  p += std::size_t{c.vocab} * dim;
  m.layers_.resize(layers);
  const float* LayerWeights::*fields[9] = {
      &LayerWeights::rms_att, &LayerWeights::wq, &LayerWeights::wk,
      &LayerWeights::wv,      &LayerWeights::wo, &LayerWeights::rms_ffn,
      &LayerWeights::w1,      &LayerWeights::w2, &LayerWeights::w3};
  for (std::size_t f = 0; f < 9; ++f) {
    for (std::size_t l = 0; l < layers; ++l) {
      m.layers_[l].*fields[f] = p;
      p += per_layer[f];
    }
  }
  m.rms_final_ = p;
  p += dim;
  p += 2 * std::size_t{c.seq_len} * half_head;
  m.classifier_ = c.shared_classifier ? m.embedding_ : p;

  // RoPE exactly as llama2.c's run.c computes it (float math), so our logits match it.
  m.rope_frequencies_.resize(half_head);
  for (std::size_t i = 0; i < half_head; ++i) {
    m.rope_frequencies_[i] =
        1.0f / std::pow(10000.0f, static_cast<float>(2 * i) / static_cast<float>(c.head_dim()));
  }
  m.rope_cos_.resize(std::size_t{c.seq_len} * half_head);
  m.rope_sin_.resize(m.rope_cos_.size());
  for (std::uint32_t pos = 0; pos < c.seq_len; ++pos) {
    for (std::size_t i = 0; i < half_head; ++i) {
      const float val = static_cast<float>(pos) * m.rope_frequencies_[i];
      m.rope_cos_[pos * half_head + i] = std::cos(val);
      m.rope_sin_[pos * half_head + i] = std::sin(val);
    }
  }
  return m;
}

std::filesystem::path models_dir() {
  if (const char* env = std::getenv("KVSTREAM_MODELS"); env != nullptr && *env != '\0') {
    return env;
  }
  return KVSTREAM_DEFAULT_MODELS_DIR;
}

}  // namespace kvstream::runner
