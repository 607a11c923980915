// The reference transformer: llama2.c's forward pass (RMSNorm, RoPE, grouped-query attention,
// SwiGLU) in fp32, one token at a time, with its own fp32 KV cache. One Runner per thread;
// many Runners may share one Model.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"
#include "runner/model.hpp"

namespace kvstream::runner {

class Runner {
 public:
  explicit Runner(const Model& model);

  const Model& model() const noexcept { return *model_; }
  // Positions [0, length()) hold KV; the next token goes to position length().
  std::uint32_t length() const noexcept { return length_; }
  void reset() noexcept { length_ = 0; }

  // Runs `token` at position length(), caches its K (after RoPE) and V, and returns the logits
  // predicting the next token. The span is valid until the next call.
  Expected<std::span<const float>> step(std::int32_t token);

  // Replaces the cached KV with tokens [0, count) of `src` (any dtype or layout of this model's
  // shape): what a decode engine does when a KV cache arrives instead of being computed.
  Status load_kv(const KvView& src, std::uint32_t count);
  // Writes cached positions [begin, begin + count) into tokens [dst_begin, ...) of `dst`.
  Status store_kv(std::uint32_t begin, std::uint32_t count, const KvView& dst,
                  std::uint32_t dst_begin) const;

 private:
  const Model* model_;
  KvBuffer cache_;  // fp32, seq_len tokens
  std::uint32_t length_ = 0;
  std::vector<float> x_, xb_, xb2_, q_, hb_, hb2_, att_, logits_;
};

// Runs `tokens` from position 0 and writes their KV cache into tokens [0, n) of `out`.
Status capture_kv(Runner& runner, std::span<const std::int32_t> tokens, const KvView& out);

// Given the KV of a prefix (tokens [0, prefix_len) of `prefix`), feeds `tokens` at positions
// prefix_len.. and returns their logits, row-major [tokens.size()][vocab].
Expected<std::vector<float>> continue_from(Runner& runner, const KvView& prefix,
                                           std::uint32_t prefix_len,
                                           std::span<const std::int32_t> tokens);

// The scheduler's recompute path: given tokens [0, begin) of `kv`, computes the KV of
// `chunk_tokens` at positions begin.. and writes it into tokens [begin, begin + n) of `kv`.
Status recompute_kv(Runner& runner, const KvView& kv, std::uint32_t begin,
                    std::span<const std::int32_t> chunk_tokens);

}  // namespace kvstream::runner
