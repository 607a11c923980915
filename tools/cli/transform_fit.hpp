// Fitting a profile's KvTransform (codec/FORMAT.md "Transform coding") to calibration KV
// caches: weigh every channel by what its error costs the model, undo RoPE on K, and rotate
// each layer's weighted K and V into uncorrelated coefficients (a Karhunen-Loeve transform).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "kvstream/codec.hpp"
#include "kvstream/kv_cache.hpp"

namespace kvstream::cli {

struct TransformFitInput {
  std::span<const KvBuffer> caches;  // the calibration contexts' KV caches
  std::uint32_t tokens = 0;          // their first `tokens` tokens are used
  std::uint32_t chunk = 0;           // statistics are taken within chunks of this many tokens
  std::vector<float> frequencies;    // RoPE of the model (empty: K is not rotated)
  RopePairs pairs = RopePairs::interleaved;
  // Per (layer, K|V, channel), layer-major: the quality lost per unit of squared error in the
  // channel (any common unit). Coefficients of the transform are equally important in it.
  std::vector<double> weights;
  // Optional, per (layer, KV head): how an error in the head's V dims costs (head_dim x
  // head_dim, up to scale; W_o^T W_o over the query heads that read it). It replaces V's
  // diagonal weights, keeping their total.
  std::vector<double> value_metrics;
};

Expected<KvTransform> fit_transform(const TransformFitInput& in);

// Per (layer, K|V, channel): the channel's spread within chunks (the root mean square over
// chunks of the chunk's mean absolute deviation times sqrt(pi / 2)), as the encoder measures
// it for its relative steps.
std::vector<double> channel_spreads(std::span<const KvBuffer> caches, std::uint32_t tokens,
                                    std::uint32_t chunk);

// Eigenvalues (descending) and eigenvectors (column j of `vectors`, row-major n x n) of the
// symmetric n x n matrix `a` (cyclic Jacobi; `a` is destroyed).
void symmetric_eigen(std::vector<double>& a, std::size_t n, std::vector<double>& values,
                     std::vector<double>& vectors);

}  // namespace kvstream::cli
