#include "runner/scoring.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>

#include "runner/parallel.hpp"

namespace kvstream::runner {

double log_prob(std::span<const float> logits, std::int32_t token) {
  const double mx = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (float l : logits)
    sum += std::exp(double{l} - mx);
  return double{logits[static_cast<std::size_t>(token)]} - mx - std::log(sum);
}

Expected<ContinuationScore> score_continuation(Runner& runner, const KvView& prefix_kv,
                                               std::span<const std::int32_t> context,
                                               std::uint32_t ctx) {
  if (ctx == 0 || std::size_t{ctx} + 2 > context.size()) {
    return Status(Errc::invalid_argument,
                  fmt::format("a context of {} tokens has nothing to score after a prefix of {} "
                              "(needs at least prefix + 2 tokens)",
                              context.size(), ctx));
  }
  const auto fed = context.subspan(ctx, context.size() - ctx - 1);
  KVS_ASSIGN_OR_RETURN(std::vector<float> logits, continue_from(runner, prefix_kv, ctx, fed));
  const std::size_t vocab = runner.model().config().vocab;
  ContinuationScore s;
  for (std::size_t i = 0; i < fed.size(); ++i) {
    const std::int32_t target = context[ctx + 1 + i];
    if (target < 0 || static_cast<std::size_t>(target) >= vocab) {
      return Status(Errc::out_of_range,
                    fmt::format("token id {} outside the vocabulary of {}", target, vocab));
    }
    s.nll_sum -= log_prob(std::span<const float>(logits).subspan(i * vocab, vocab), target);
    ++s.predicted;
  }
  return s;
}

void LogitComparison::add(const LogitComparison& o) {
  nll_sum += o.nll_sum;
  ref_nll_sum += o.ref_nll_sum;
  kl_sum += o.kl_sum;
  top1_same += o.top1_same;
  positions += o.positions;
}

LogitComparison compare_logits(std::span<const float> reference, std::span<const float> test,
                               std::span<const std::int32_t> targets, std::size_t vocab) {
  LogitComparison r;
  std::vector<double> lp_ref(vocab), lp_test(vocab);
  const auto log_softmax = [vocab](std::span<const float> z, std::vector<double>& out) {
    const double mx = *std::max_element(z.begin(), z.end());
    double sum = 0.0;
    for (std::size_t k = 0; k < vocab; ++k)
      sum += std::exp(double{z[k]} - mx);
    const double lse = mx + std::log(sum);
    for (std::size_t k = 0; k < vocab; ++k)
      out[k] = double{z[k]} - lse;
  };
  for (std::size_t i = 0; i < targets.size(); ++i) {
    const auto zr = reference.subspan(i * vocab, vocab);
    const auto zt = test.subspan(i * vocab, vocab);
    log_softmax(zr, lp_ref);
    log_softmax(zt, lp_test);
    const auto target = static_cast<std::size_t>(targets[i]);
    r.nll_sum -= lp_test[target];
    r.ref_nll_sum -= lp_ref[target];
    double kl = 0.0;
    for (std::size_t k = 0; k < vocab; ++k)
      kl += std::exp(lp_ref[k]) * (lp_ref[k] - lp_test[k]);
    r.kl_sum += kl;
    r.top1_same += std::max_element(zr.begin(), zr.end()) - zr.begin() ==
                   std::max_element(zt.begin(), zt.end()) - zt.begin();
    ++r.positions;
  }
  return r;
}

double PooledScore::ppl() const {
  return predicted == 0 ? 0.0 : std::exp(nll_sum / static_cast<double>(predicted));
}

namespace {

// Captures the prefix KV of one context in `format`, then scores its continuation.
Expected<ContinuationScore> score_in_format(Runner& runner, std::span<const std::int32_t> context,
                                            std::uint32_t ctx, KvFormat format) {
  const KvLayout layout = runner.model().kv_layout(ctx, format.dtype);
  const auto prefix = context.first(ctx);
  if (format.page_block == 0) {
    KVS_ASSIGN_OR_RETURN(KvBuffer kv, KvBuffer::create(layout));
    KVS_RETURN_IF_ERROR(capture_kv(runner, prefix, kv.view()));
    return score_continuation(runner, kv.view(), context, ctx);
  }
  const std::uint32_t blocks = (ctx + format.page_block - 1) / format.page_block;
  std::vector<std::uint32_t> table(blocks);
  for (std::uint32_t i = 0; i < blocks; ++i)
    table[i] = blocks - 1 - i;
  KVS_ASSIGN_OR_RETURN(PagedKvBuffer kv,
                       PagedKvBuffer::create(layout, format.page_block, blocks, table));
  KVS_RETURN_IF_ERROR(capture_kv(runner, prefix, kv.view()));
  return score_continuation(runner, kv.view(), context, ctx);
}

}  // namespace

Expected<PooledScore> score_contexts(const Model& model,
                                     std::span<const std::vector<std::int32_t>> contexts,
                                     std::uint32_t ctx, KvFormat format, unsigned threads,
                                     const std::function<void()>& on_context_done) {
  std::vector<ContinuationScore> scores(contexts.size());
  std::vector<std::unique_ptr<Runner>> runners(std::max(1u, threads));
  const Status s = parallel_for(contexts.size(), threads, [&](unsigned worker, std::size_t i) {
    if (!runners[worker]) runners[worker] = std::make_unique<Runner>(model);
    const std::span<const std::int32_t> context = contexts[i];
    if (ctx == 0 || std::size_t{ctx} + 2 > context.size()) {
      return Status(Errc::invalid_argument,
                    fmt::format("context {} has {} tokens; a prefix of {} needs at least {}", i,
                                context.size(), ctx, std::size_t{ctx} + 2));
    }
    Expected<ContinuationScore> score = score_in_format(*runners[worker], context, ctx, format);
    if (on_context_done) on_context_done();
    if (!score) return score.error().with_context(fmt::format("context {}", i));
    scores[i] = *score;
    return Status::ok();
  });
  KVS_RETURN_IF_ERROR(s);
  PooledScore pooled;
  for (const ContinuationScore& c : scores) {
    pooled.nll_sum += c.nll_sum;
    pooled.predicted += c.predicted;
  }
  pooled.contexts = contexts.size();
  return pooled;
}

Expected<std::vector<std::vector<std::int32_t>>> read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(Errc::not_found, fmt::format("cannot open token file '{}'", path));
  std::vector<std::vector<std::int32_t>> contexts;
  std::string line;
  for (std::size_t lineno = 1; std::getline(in, line); ++lineno) {
    std::vector<std::int32_t> tokens;
    const char* p = line.data();
    const char* end = p + line.size();
    while (true) {
      while (p != end && (*p == ' ' || *p == '\t' || *p == '\r'))
        ++p;
      if (p == end) break;
      std::int32_t v = 0;
      const auto [next, ec] = std::from_chars(p, end, v);
      if (ec != std::errc() || v < 0 ||
          (next != end && *next != ' ' && *next != '\t' && *next != '\r')) {
        const char* word_end =
            std::find_if(p, end, [](char ch) { return ch == ' ' || ch == '\t'; });
        return Status(Errc::corrupt_data, fmt::format("{}:{}: '{}' is not a token id", path, lineno,
                                                      std::string_view(p, word_end)));
      }
      tokens.push_back(v);
      p = next;
    }
    if (!tokens.empty()) contexts.push_back(std::move(tokens));
  }
  if (in.bad()) return Status(Errc::io_error, fmt::format("reading token file '{}' failed", path));
  if (contexts.empty()) {
    return Status(Errc::corrupt_data, fmt::format("token file '{}' holds no contexts", path));
  }
  return contexts;
}

}  // namespace kvstream::runner
