#include "cli/quality_meter.hpp"

#include <fmt/format.h>

#include <cmath>

#include "cli/eval_methods.hpp"
#include "runner/parallel.hpp"
#include "runner/runner.hpp"
#include "runner/scoring.hpp"

namespace kvstream::cli {

Expected<std::unique_ptr<QualityMeter>> QualityMeter::create(
    const runner::Model& model, std::vector<std::vector<std::int32_t>> contexts, std::uint32_t ctx,
    std::uint32_t chunk, const CodecProfile& profile, std::span<const std::string> methods,
    unsigned threads) {
  if (contexts.empty()) return Status(Errc::invalid_argument, "quality meter: no contexts");
  if (chunk == 0) return Status(Errc::invalid_argument, "quality meter: chunks of 0 tokens");
  for (std::size_t i = 0; i < contexts.size(); ++i) {
    if (contexts[i].size() < std::size_t{ctx} + 2) {
      return Status(Errc::invalid_argument,
                    fmt::format("quality meter: context {} has {} tokens; ctx {} needs {}", i,
                                contexts[i].size(), ctx, ctx + 2));
    }
  }
  // Which of codec eval's methods each name is.
  std::vector<std::size_t> which;
  {
    const auto all = make_eval_methods(profile);
    for (const std::string& name : methods) {
      std::size_t k = 0;
      while (k < all.size() && all[k]->name() != name)
        ++k;
      if (k == all.size())
        return Status(Errc::invalid_argument, fmt::format("quality meter: no method '{}'", name));
      which.push_back(k);
    }
  }
  std::unique_ptr<QualityMeter> m(new QualityMeter());
  m->model_ = &model;
  m->ctx_ = ctx;
  m->chunk_ = chunk;
  m->names_.assign(methods.begin(), methods.end());
  m->contexts_.resize(contexts.size());
  const KvLayout layout = model.kv_layout(ctx, DType::f16);
  std::vector<std::vector<std::unique_ptr<EvalMethod>>> per_worker(threads);
  KVS_RETURN_IF_ERROR(
      runner::parallel_for(contexts.size(), threads, [&](unsigned w, std::size_t i) -> Status {
        if (per_worker[w].empty()) per_worker[w] = make_eval_methods(profile);
        Context& c = m->contexts_[i];
        c.tokens = std::move(contexts[i]);
        runner::Runner runner(model);
        KVS_ASSIGN_OR_RETURN(KvBuffer reference, KvBuffer::create(layout));
        c.reference = std::move(reference);
        KVS_RETURN_IF_ERROR(
            runner::capture_kv(runner, std::span(c.tokens).first(ctx), c.reference->view()));
        const auto fed = std::span(c.tokens).subspan(ctx, c.tokens.size() - ctx - 1);
        KVS_ASSIGN_OR_RETURN(c.reference_logits,
                             runner::continue_from(runner, c.reference->view(), ctx, fed));
        Encoded scratch;
        for (std::size_t k : which) {
          EvalMethod& method = *per_worker[w][k];
          KVS_ASSIGN_OR_RETURN(KvBuffer out, KvBuffer::create(layout));
          for (std::uint32_t s = 0; s < ctx; s += chunk) {
            const std::uint32_t n = std::min(chunk, ctx - s);
            KVS_RETURN_IF_ERROR(method.encode(c.reference->view(), s, n, scratch));
            KVS_RETURN_IF_ERROR(method.decode(scratch, out.view(), s, n));
          }
          c.decoded.push_back(std::move(out));
        }
        return Status::ok();
      }));
  return m;
}

Expected<QualityScore> QualityMeter::measure(std::span<const int> per_chunk,
                                             unsigned threads) const {
  if (per_chunk.size() != chunks()) {
    return Status(Errc::invalid_argument, fmt::format("quality meter: {} choices for {} chunks",
                                                      per_chunk.size(), chunks()));
  }
  for (int k : per_chunk) {
    if (k != kExact && (k < 0 || static_cast<std::size_t>(k) >= names_.size()))
      return Status(Errc::invalid_argument, fmt::format("quality meter: no method {}", k));
  }
  std::vector<runner::LogitComparison> scores(contexts_.size());
  const KvLayout layout = model_->kv_layout(ctx_, DType::f16);
  KVS_RETURN_IF_ERROR(
      runner::parallel_for(contexts_.size(), threads, [&](unsigned, std::size_t i) -> Status {
        const Context& c = contexts_[i];
        KVS_ASSIGN_OR_RETURN(KvBuffer kv, KvBuffer::create(layout));
        for (std::uint32_t k = 0; k < chunks(); ++k) {
          const std::uint32_t s = k * chunk_, n = std::min(chunk_, ctx_ - s);
          const KvBuffer& from = per_chunk[k] == kExact
                                     ? *c.reference
                                     : c.decoded[static_cast<std::size_t>(per_chunk[k])];
          KVS_RETURN_IF_ERROR(copy_tokens(from.view(), s, kv.view(), s, n));
        }
        runner::Runner runner(*model_);
        const auto fed = std::span(c.tokens).subspan(ctx_, c.tokens.size() - ctx_ - 1);
        KVS_ASSIGN_OR_RETURN(const std::vector<float> logits,
                             runner::continue_from(runner, kv.view(), ctx_, fed));
        scores[i] =
            runner::compare_logits(c.reference_logits, logits,
                                   std::span(c.tokens).subspan(ctx_ + 1), model_->config().vocab);
        return Status::ok();
      }));
  runner::LogitComparison total;
  for (const auto& s : scores)
    total.add(s);  // in context order: the same sum for any thread count
  const auto positions = static_cast<double>(total.positions);
  QualityScore q;
  q.positions = total.positions;
  q.delta_ppl_pct = 100.0 * (std::exp((total.nll_sum - total.ref_nll_sum) / positions) - 1.0);
  q.top1 = static_cast<double>(total.top1_same) / positions;
  q.kl = total.kl_sum / positions;
  return q;
}

}  // namespace kvstream::cli
