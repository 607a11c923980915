#include "cli/calibration.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "runner/parallel.hpp"
#include "runner/scoring.hpp"

namespace kvstream::cli {

Expected<std::unique_ptr<KlMeter>> KlMeter::create(
    const runner::Model& model, std::span<const std::vector<std::int32_t>> contexts,
    std::uint32_t ctx, std::uint32_t chunk, unsigned threads) {
  std::unique_ptr<KlMeter> m(new KlMeter());
  m->model_ = &model;
  m->contexts_ = contexts;
  m->ctx_ = ctx;
  m->chunk_ = chunk;
  m->threads_ = threads;
  m->workers_.resize(threads);
  const KvLayout layout = model.kv_layout(ctx, DType::f16);
  for (std::size_t i = 0; i < contexts.size(); ++i) {
    if (contexts[i].size() < std::size_t{ctx} + 2) {
      return Status(Errc::invalid_argument,
                    fmt::format("context {} has {} tokens; --ctx {} needs at least {}", i,
                                contexts[i].size(), ctx, ctx + 2));
    }
    KVS_ASSIGN_OR_RETURN(KvBuffer kv, KvBuffer::create(layout));
    m->refs_.push_back(std::move(kv));
  }
  m->ref_logits_.resize(contexts.size());
  KVS_RETURN_IF_ERROR(
      runner::parallel_for(contexts.size(), threads, [&](unsigned w, std::size_t i) {
        Worker& wk = m->workers_[w];
        if (!wk.runner) wk.runner = std::make_unique<runner::Runner>(model);
        const std::span<const std::int32_t> tokens = contexts[i];
        KVS_RETURN_IF_ERROR(runner::capture_kv(*wk.runner, tokens.first(ctx), m->refs_[i].view()));
        KVS_ASSIGN_OR_RETURN(m->ref_logits_[i],
                             runner::continue_from(*wk.runner, m->refs_[i].view(), ctx,
                                                   tokens.subspan(ctx, tokens.size() - ctx - 1)));
        return Status::ok();
      }));
  return m;
}

Expected<double> KlMeter::measure(const CodecProfile& profile, std::uint8_t level) {
  std::vector<runner::LogitComparison> per(contexts_.size());
  EncodeOptions options;
  options.level = level;
  options.profile = &profile;
  KVS_RETURN_IF_ERROR(
      runner::parallel_for(contexts_.size(), threads_, [&](unsigned w, std::size_t i) {
        Worker& wk = workers_[w];
        if (!wk.decoded) {
          KVS_ASSIGN_OR_RETURN(KvBuffer b, KvBuffer::create(model_->kv_layout(ctx_, DType::f16)));
          wk.decoded = std::make_unique<KvBuffer>(std::move(b));
        }
        for (std::uint32_t s = 0; s < ctx_; s += chunk_) {
          KVS_RETURN_IF_ERROR(
              wk.encoder.encode(refs_[i].view(), s, std::min(chunk_, ctx_ - s), options, wk.chunk));
          KVS_RETURN_IF_ERROR(wk.decoder.decode(wk.chunk, wk.decoded->view()));
        }
        const std::span<const std::int32_t> tokens = contexts_[i];
        KVS_ASSIGN_OR_RETURN(std::vector<float> logits,
                             runner::continue_from(*wk.runner, wk.decoded->view(), ctx_,
                                                   tokens.subspan(ctx_, tokens.size() - ctx_ - 1)));
        per[i] = runner::compare_logits(ref_logits_[i], logits, tokens.subspan(ctx_ + 1),
                                        model_->config().vocab);
        return Status::ok();
      }));
  runner::LogitComparison total;
  for (const auto& p : per)
    total.add(p);
  return total.kl_sum / static_cast<double>(total.positions);
}

namespace {
// Relative step that leaves a segment effectively lossless while the others are probed.
constexpr float kNearLossless = 1e-3f;
// Past ~8 spreads every value rounds to the channel's center; larger steps change nothing.
constexpr float kMaxRelativeStep = 16.0f;
}  // namespace

Expected<CodecProfile> calibrate(KlMeter& meter, std::uint32_t layers, std::uint32_t groups,
                                 const CalibrationOptions& o,
                                 const std::function<void(const std::string&)>& log) {
  // One unit per (layer, K|V, channel group), in the profile's step order.
  const std::uint32_t segments = 2 * layers * groups;
  std::vector<double> sensitivity(segments);
  for (std::uint32_t i = 0; i < segments; ++i) {
    std::vector<float> steps(segments, kNearLossless);
    steps[i] = o.probe_step;
    KVS_ASSIGN_OR_RETURN(CodecProfile probe, CodecProfile::from_steps(layers, groups, 1, steps));
    KVS_ASSIGN_OR_RETURN(double kl, meter.measure(probe, 1));
    sensitivity[i] = std::max(kl, 1e-12) / (double{o.probe_step} * o.probe_step);
    log(fmt::format("sensitivity layer {} {} group {}: KL {:.3e} at relative step {} -> {:.3e}",
                    i / (2 * groups), (i / groups) % 2 == 0 ? "K" : "V", i % groups, kl,
                    o.probe_step, sensitivity[i]));
  }

  const auto steps_for = [&](double k) {
    std::vector<float> steps(segments);
    for (std::uint32_t i = 0; i < segments; ++i) {
      steps[i] =
          static_cast<float>(std::min<double>(k / std::sqrt(sensitivity[i]), kMaxRelativeStep));
    }
    return steps;
  };
  std::vector<float> all;
  double k_floor = 0.0;
  for (std::size_t level = 0; level < o.targets.size(); ++level) {
    const double target = o.targets[level];
    // Additive model: KL = sum_i s_i * step_i^2 = segments * k^2.
    double k = std::max(k_floor, std::sqrt(target / segments));
    double best_k = 0.0;
    for (int it = 0; it < o.iterations; ++it) {
      KVS_ASSIGN_OR_RETURN(CodecProfile p,
                           CodecProfile::from_steps(layers, groups, 1, steps_for(k)));
      KVS_ASSIGN_OR_RETURN(double kl, meter.measure(p, 1));
      log(fmt::format("level {} target KL {:.3e}: scale {:.4g} -> KL {:.3e}", level + 1, target, k,
                      kl));
      if (kl <= target) best_k = std::max(best_k, k);
      // KL grows about as the square of the steps.
      k *= std::clamp(std::sqrt(target / std::max(kl, 1e-12)), 0.5, 2.0);
      if (best_k > 0 && k < best_k) k = best_k * 1.02;
    }
    if (best_k == 0.0) best_k = std::max(k_floor, k / 4);  // never met: stay finer
    k_floor = best_k;
    const auto steps = steps_for(best_k);
    all.insert(all.end(), steps.begin(), steps.end());
  }
  KVS_ASSIGN_OR_RETURN(
      CodecProfile profile,
      CodecProfile::from_steps(layers, groups, static_cast<std::uint32_t>(o.targets.size()), all));
  profile.set_targets(o.targets);
  return profile;
}

}  // namespace kvstream::cli
