// A llama2.c legacy checkpoint loaded into memory: configuration, weights and RoPE tables.
// Immutable after load, so one Model serves any number of Runner threads.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <vector>

#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream::runner {

struct ModelConfig {
  std::uint32_t dim = 0;
  std::uint32_t hidden_dim = 0;
  std::uint32_t layers = 0;
  std::uint32_t heads = 0;
  std::uint32_t kv_heads = 0;
  std::uint32_t vocab = 0;
  std::uint32_t seq_len = 0;
  bool shared_classifier = true;

  std::uint32_t head_dim() const noexcept { return dim / heads; }
  std::uint32_t kv_dim() const noexcept { return kv_heads * head_dim(); }
};

// Weights of one layer, row-major [out][in] as llama2.c stores them.
struct LayerWeights {
  const float* rms_att;
  const float* wq;  // [dim][dim]
  const float* wk;  // [kv_dim][dim]
  const float* wv;  // [kv_dim][dim]
  const float* wo;  // [dim][dim]
  const float* rms_ffn;
  const float* w1;  // [hidden][dim]
  const float* w2;  // [dim][hidden]
  const float* w3;  // [hidden][dim]
};

class Model {
 public:
  // Reads and validates a checkpoint: a missing file is not_found, a truncated, oversized or
  // inconsistent one (bad dimensions, non-finite weights) is corrupt_data naming what is wrong.
  static Expected<Model> load(const std::filesystem::path& path);

  Model(Model&&) noexcept = default;
  Model& operator=(Model&&) noexcept = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const noexcept { return config_; }
  const std::filesystem::path& path() const noexcept { return path_; }

  // The layout of this model's KV cache for `tokens` tokens.
  KvLayout kv_layout(std::uint32_t tokens, DType dtype) const noexcept {
    return KvLayout{config_.layers, config_.kv_heads, config_.head_dim(), dtype, tokens};
  }

  const float* token_embedding() const noexcept { return embedding_; }
  const LayerWeights& layer(std::uint32_t l) const noexcept { return layers_[l]; }
  const float* rms_final() const noexcept { return rms_final_; }
  const float* classifier() const noexcept { return classifier_; }
  // The angle per position of each of the head_dim / 2 rotated pairs (2i, 2i + 1).
  const std::vector<float>& rope_frequencies() const noexcept { return rope_frequencies_; }
  // cos and sin of position `pos` for each of the head_dim / 2 rotated pairs.
  const float* rope_cos(std::uint32_t pos) const noexcept {
    return rope_cos_.data() + std::size_t{pos} * (config_.head_dim() / 2);
  }
  const float* rope_sin(std::uint32_t pos) const noexcept {
    return rope_sin_.data() + std::size_t{pos} * (config_.head_dim() / 2);
  }

 private:
  Model() = default;

  ModelConfig config_;
  std::filesystem::path path_;
  std::vector<float> weights_;
  std::vector<LayerWeights> layers_;
  const float* embedding_ = nullptr;
  const float* rms_final_ = nullptr;
  const float* classifier_ = nullptr;
  std::vector<float> rope_frequencies_;
  std::vector<float> rope_cos_;
  std::vector<float> rope_sin_;
};

// Where the project's checkpoints live: $KVSTREAM_MODELS, else the build's default
// (../shared/models beside the source tree).
std::filesystem::path models_dir();

}  // namespace kvstream::runner
