// Quality of a KV cache as DESIGN.md measures it: teacher-force a continuation after the
// prefix whose KV is given, and score the model's predictions of the continuation's tokens.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"
#include "runner/runner.hpp"

namespace kvstream::runner {

struct ContinuationScore {
  double nll_sum = 0.0;         // natural-log negative log-likelihood, summed
  std::uint64_t predicted = 0;  // tokens scored
};

// log-softmax of `logits` at `token`, computed in double.
double log_prob(std::span<const float> logits, std::int32_t token);

// `context` is a whole token sequence; `prefix_kv` holds the KV of its first `ctx` tokens
// (lossless or decoded). Feeds context[ctx .. n-2] at positions ctx.. and scores the
// predictions of context[ctx+1 .. n-1]: n - ctx - 1 tokens.
Expected<ContinuationScore> score_continuation(Runner& runner, const KvView& prefix_kv,
                                               std::span<const std::int32_t> context,
                                               std::uint32_t ctx);

// How a continuation's predictions under a test KV cache compare with those under a reference
// cache, position by position (DESIGN.md's quality measures).
struct LogitComparison {
  double nll_sum = 0.0;         // of the targets under the test logits
  double ref_nll_sum = 0.0;     // of the targets under the reference logits
  double kl_sum = 0.0;          // sum over positions of KL(reference || test), nats
  std::uint64_t top1_same = 0;  // positions whose argmax agrees
  std::uint64_t positions = 0;
  void add(const LogitComparison& o);
};

// `reference` and `test` are [positions][vocab]; `targets[i]` is the token that position i
// predicts.
LogitComparison compare_logits(std::span<const float> reference, std::span<const float> test,
                               std::span<const std::int32_t> targets, std::size_t vocab);

// How the prefix KV is held while scored: its dtype, and contiguous (page_block 0) or paged
// with blocks of `page_block` tokens placed in reverse order in the pools.
struct KvFormat {
  DType dtype = DType::f32;
  std::uint32_t page_block = 0;
};

struct PooledScore {
  std::size_t contexts = 0;
  std::uint64_t predicted = 0;
  double nll_sum = 0.0;
  // exp(sum NLL / tokens scored): pooled over all contexts, not a mean of per-context PPLs.
  double ppl() const;
};

// Scores every context as score_continuation does, with the prefix KV captured into `format`,
// spread over `threads` threads. The sum is taken in context order, so the result does not
// depend on the thread count. `on_context_done` (optional) is called once per context, from
// any thread.
Expected<PooledScore> score_contexts(const Model& model,
                                     std::span<const std::vector<std::int32_t>> contexts,
                                     std::uint32_t ctx, KvFormat format, unsigned threads,
                                     const std::function<void()>& on_context_done = {});

// Reads contexts, one per line as token ids separated by spaces (blank lines skipped).
// A malformed line is corrupt_data naming the file, line and offending text.
Expected<std::vector<std::vector<std::int32_t>>> read_token_file(const std::string& path);

}  // namespace kvstream::runner
