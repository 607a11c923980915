#include "runner/sampling.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include "runner/parallel.hpp"

namespace kvstream::runner {

std::int32_t argmax(std::span<const float> logits) {
  return static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

namespace {
std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
}  // namespace

Sampler::Sampler(std::uint64_t seed, std::uint64_t stream, float temperature, float top_p)
    : state_(splitmix64(seed ^ splitmix64(stream)) | 1u),  // xorshift needs a non-zero state
      temperature_(temperature),
      top_p_(top_p) {}

float Sampler::next_unit() {
  // llama2.c's random_u32 / random_f32.
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  const auto r = static_cast<std::uint32_t>((state_ * 0x2545F4914F6CDD1Dull) >> 32);
  return static_cast<float>(r >> 8) / 16777216.0f;
}

std::int32_t Sampler::sample(std::span<const float> logits) {
  const std::size_t n = logits.size();
  if (temperature_ <= 0.0f || n < 2) return argmax(logits);
  probs_.resize(n);
  const float mx = *std::max_element(logits.begin(), logits.end());
  float sum = 0.0f;
  for (std::size_t i = 0; i < n; ++i) {
    probs_[i] = std::exp((logits[i] - mx) / temperature_);
    sum += probs_[i];
  }
  for (float& p : probs_)
    p /= sum;
  const float coin = next_unit();

  // Top-p (nucleus) as llama2.c does it: drop tokens that cannot be in the nucleus, sort the
  // rest by probability, keep the smallest prefix whose mass exceeds top_p, sample inside it.
  // Ties are broken by token id so that the order never depends on the sort algorithm.
  const float cutoff = (1.0f - top_p_) / static_cast<float>(n - 1);
  order_.clear();
  for (std::size_t i = 0; i < n; ++i) {
    if (probs_[i] >= cutoff) order_.push_back(static_cast<std::int32_t>(i));
  }
  if (order_.empty()) return argmax(logits);
  std::sort(order_.begin(), order_.end(), [&](std::int32_t a, std::int32_t b) {
    return probs_[a] != probs_[b] ? probs_[a] > probs_[b] : a < b;
  });
  float cumulative = 0.0f;
  std::size_t last = order_.size() - 1;
  for (std::size_t i = 0; i < order_.size(); ++i) {
    cumulative += probs_[order_[i]];
    if (cumulative > top_p_) {
      last = i;
      break;
    }
  }
  const float r = coin * cumulative;
  float cdf = 0.0f;
  for (std::size_t i = 0; i <= last; ++i) {
    cdf += probs_[order_[i]];
    if (r < cdf) return order_[i];
  }
  return order_[last];  // rounding
}

Expected<std::vector<std::int32_t>> sample_context(Runner& runner, Sampler& sampler,
                                                   std::uint32_t length) {
  if (length == 0 || length > runner.model().config().seq_len) {
    return Status(Errc::invalid_argument,
                  fmt::format("context length {} outside 1..{} (the model's seq_len)", length,
                              runner.model().config().seq_len));
  }
  runner.reset();
  std::vector<std::int32_t> tokens{kBosToken};
  while (tokens.size() < length) {
    KVS_ASSIGN_OR_RETURN(std::span<const float> logits, runner.step(tokens.back()));
    tokens.push_back(sampler.sample(logits));
  }
  return tokens;
}

Expected<std::vector<std::vector<std::int32_t>>> sample_contexts(
    const Model& model, std::size_t count, const SampleOptions& options, unsigned threads,
    const std::function<void()>& on_context_done) {
  std::vector<std::vector<std::int32_t>> contexts(count);
  std::vector<std::unique_ptr<Runner>> runners(std::max(1u, threads));
  KVS_RETURN_IF_ERROR(parallel_for(count, threads, [&](unsigned worker, std::size_t i) {
    if (!runners[worker]) runners[worker] = std::make_unique<Runner>(model);
    Sampler sampler(options.seed, i, options.temperature, options.top_p);
    KVS_ASSIGN_OR_RETURN(contexts[i], sample_context(*runners[worker], sampler, options.length));
    if (on_context_done) on_context_done();
    return Status::ok();
  }));
  return contexts;
}

}  // namespace kvstream::runner
