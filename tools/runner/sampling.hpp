// Token choice: greedy, and llama2.c's temperature + top-p sampler with its xorshift RNG, so
// sampled contexts are reproducible from a seed on any machine and thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "kvstream/status.hpp"
#include "runner/runner.hpp"

namespace kvstream::runner {

inline constexpr std::int32_t kBosToken = 1;

std::int32_t argmax(std::span<const float> logits);

class Sampler {
 public:
  // Contexts sampled with the same (seed, stream) are identical; different streams are
  // independent, so context i of a batch does not depend on how the batch is split.
  Sampler(std::uint64_t seed, std::uint64_t stream, float temperature, float top_p);
  std::int32_t sample(std::span<const float> logits);

 private:
  float next_unit();
  std::uint64_t state_;
  float temperature_;
  float top_p_;
  std::vector<float> probs_;
  std::vector<std::int32_t> order_;
};

// Starting at BOS, samples a context of `length` tokens (BOS included) from a fresh runner.
Expected<std::vector<std::int32_t>> sample_context(Runner& runner, Sampler& sampler,
                                                   std::uint32_t length);

struct SampleOptions {
  std::uint32_t length = 512;  // tokens per context, BOS included
  std::uint64_t seed = 1;
  float temperature = 1.0f;
  float top_p = 0.9f;
};

// Samples `count` contexts on up to `threads` threads; context i is sampled with stream i, so
// the result does not depend on the thread count. `on_context_done` (optional) is called once
// per context, from any thread.
Expected<std::vector<std::vector<std::int32_t>>> sample_contexts(
    const Model& model, std::size_t count, const SampleOptions& options, unsigned threads,
    const std::function<void()>& on_context_done = {});

}  // namespace kvstream::runner
