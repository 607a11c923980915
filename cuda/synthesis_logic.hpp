// The per-thread logic of GPU transform decoding (FORMAT.md "Transform coding"), for nvcc and
// the CPU tests alike: one work item rebuilds either one rotated K pair of a token (both
// channels' z = S y chains, then the RoPE turn) or one other K or V channel, and stores it.
#pragma once

#include <cmath>
#include <cstdint>

#include "decode_logic.hpp"

namespace kvstream::gpu {

struct SynthesisArgs {
  // The decoded coefficients, fp32, laid out as a contiguous KV cache of the chunk's tokens
  // ([layer][K|V][token][C]): segment "K" of a layer holds coefficients 0..C-1, "V" C..2C-1.
  const float* coefficients = nullptr;
  std::uint32_t coefficient_tokens = 0;  // the layout's tokens (at least the chunk's)
  // Per layer S transposed, (2C)^2 floats: S[i][j] at j * 2C + i, so that neighbouring items
  // read neighbouring floats.
  const float* synthesis_t = nullptr;
  // (cos, sin) of each token's pairs, [token][pair], fp32 as FORMAT.md computes them; null when
  // the transform has no frequencies (K is not rotated).
  const float* angles = nullptr;
  std::uint32_t channels = 0, head_dim = 0, layers = 0, tokens = 0;
  bool halves = false;  // RoPE pairing: (i, i + head_dim / 2), else (2i, 2i + 1)
  ViewDesc dst;
  std::uint32_t token_begin = 0;

  KVS_HD std::uint32_t key_items() const { return angles != nullptr ? channels / 2 : channels; }
  // Work items per (layer, token), and in all.
  KVS_HD std::uint32_t items_per_token() const { return key_items() + channels; }
  KVS_HD std::uint64_t items() const { return std::uint64_t{items_per_token()} * tokens * layers; }
};

// z_i of token t of a layer: FORMAT.md's chain acc = fmaf(S[i][j], y_j, acc), j ascending.
KVS_HD float synthesized(const SynthesisArgs& a, std::uint32_t layer, std::uint32_t t,
                         std::uint32_t i) {
  const std::uint32_t C = a.channels, n = 2 * C;
  const float* yk = a.coefficients + (std::uint64_t{2 * layer} * a.coefficient_tokens + t) * C;
  const float* yv = yk + std::uint64_t{a.coefficient_tokens} * C;
  const float* s = a.synthesis_t + std::uint64_t{layer} * n * n + i;
  float acc = 0.0f;
  for (std::uint32_t j = 0; j < C; ++j)
    acc = fmaf(s[std::uint64_t{j} * n], yk[j], acc);
  for (std::uint32_t j = 0; j < C; ++j)
    acc = fmaf(s[std::uint64_t{C + j} * n], yv[j], acc);
  return acc;
}

// Work item `item` (of a.items()): layer-major, then token, then the token's items.
KVS_HD void synthesize_item(const SynthesisArgs& a, std::uint64_t item) {
  const std::uint32_t per = a.items_per_token();
  const auto q = static_cast<std::uint32_t>(item % per);
  const auto t = static_cast<std::uint32_t>((item / per) % a.tokens);
  const auto layer = static_cast<std::uint32_t>(item / per / a.tokens);
  const std::uint32_t token = a.token_begin + t;
  if (q >= a.key_items()) {  // a V channel, or
    const std::uint32_t c = q - a.key_items();
    store_float(a.dst.row(2 * layer + 1, token), c, a.dst.dtype,
                synthesized(a, layer, t, a.channels + c));
    return;
  }
  std::byte* key_row = a.dst.row(2 * layer, token);
  if (a.angles == nullptr) {  // a K channel that RoPE does not turn, or
    store_float(key_row, q, a.dst.dtype, synthesized(a, layer, t, q));
    return;
  }
  // a K pair, turned by its angle: k_a = fmaf(z_a, c, -(z_b s)), k_b = fmaf(z_b, c, z_a s).
  const std::uint32_t half = a.head_dim / 2, head = q / half, i = q % half;
  const std::uint32_t ca = head * a.head_dim + (a.halves ? i : 2 * i);
  const std::uint32_t cb = head * a.head_dim + (a.halves ? i + half : 2 * i + 1);
  const float* cs = a.angles + 2 * (std::uint64_t{t} * half + i);
  const float za = synthesized(a, layer, t, ca), zb = synthesized(a, layer, t, cb);
  store_float(key_row, ca, a.dst.dtype, fmaf(za, cs[0], -(zb * cs[1])));
  store_float(key_row, cb, a.dst.dtype, fmaf(zb, cs[0], za * cs[1]));
}

}  // namespace kvstream::gpu
