// A KV cache with a large model's shape and real values, for throughput measurements: a small
// checkpoint's KV of several sampled contexts tiled across the channels (each block of the small
// model's row width is one of its layers, of one context) and, past the contexts' length, across
// the tokens. The values are real; only their arrangement is made up.
#pragma once

#include <cstdint>

#include "kvstream/kv_cache.hpp"
#include "model.hpp"

namespace kvstream::runner {

// `shape` (any layers, heads, head_dim, tokens; dtype f16 or bf16 or f32) filled from
// `contexts` contexts of `model` sampled with `seed` (each min(shape.tokens, seq_len) long).
Expected<KvBuffer> model_shaped_kv(const Model& model, const KvLayout& shape,
                                   std::uint32_t contexts, std::uint64_t seed);

}  // namespace kvstream::runner
