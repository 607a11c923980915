#include "cli/calibration.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string_view>

#include "cli/common.hpp"
#include "cli/transform_fit.hpp"
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
          KVS_RETURN_IF_ERROR(wk.decoder.decode(wk.chunk, wk.decoded->view(), &profile));
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

Expected<std::vector<double>> parse_targets(std::string_view text) {
  KVS_ASSIGN_OR_RETURN(std::vector<double> out, parse_numbers(text, "target"));
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] <= 0)
      return Status(Errc::invalid_argument, fmt::format("target {} is not > 0", out[i]));
    if (i > 0 && out[i] <= out[i - 1]) {
      return Status(Errc::invalid_argument,
                    fmt::format("targets must ascend: {} after {}", out[i], out[i - 1]));
    }
  }
  if (out.size() > 15) {
    return Status(Errc::invalid_argument,
                  fmt::format("{} targets (at most 15, one per lossy level)", out.size()));
  }
  return out;
}

namespace {
// Relative step that leaves a segment effectively lossless while the others are probed.
constexpr float kNearLossless = 1e-3f;
// Past ~8 spreads every value rounds to the channel's center; larger steps change nothing.
constexpr float kMaxRelativeStep = 16.0f;
}  // namespace

namespace {

// Finds, for each target in turn, the largest scale k whose profile make(k) measures within the
// target (KL grows about as k^2), never below the previous level's. Returns every level's k.
Expected<std::vector<double>> search_scales(
    KlMeter& meter, const CalibrationOptions& o, double first_guess,
    const std::function<Expected<CodecProfile>(double)>& make,
    const std::function<void(const std::string&)>& log) {
  std::vector<double> scales;
  double k_floor = 0.0;
  for (std::size_t level = 0; level < o.targets.size(); ++level) {
    const double target = o.targets[level];
    double k = std::max(k_floor, first_guess * std::sqrt(target / o.targets.front()));
    double best_k = 0.0;
    for (int it = 0; it < o.iterations; ++it) {
      KVS_ASSIGN_OR_RETURN(CodecProfile p, make(k));
      KVS_ASSIGN_OR_RETURN(double kl, meter.measure(p, 1));
      log(fmt::format("level {} target KL {:.3e}: scale {:.4g} -> KL {:.3e}", level + 1, target, k,
                      kl));
      if (kl <= target) best_k = std::max(best_k, k);
      k *= std::clamp(std::sqrt(target / std::max(kl, 1e-12)), 0.5, 2.0);
      if (best_k > 0 && k < best_k) k = best_k * 1.02;
    }
    if (best_k == 0.0) best_k = std::max(k_floor, k / 4);  // never met: stay finer
    k_floor = best_k;
    scales.push_back(best_k);
  }
  return scales;
}

// Transform levels: every coefficient weighs the same, so one step each, from the format's table
// (8 per octave, so KL moves by 20-30% from one code to the next). Walks from a guess to the
// coarsest code whose KL meets each target (never finer than the previous level's), then moves
// as many channel groups one code coarser as still meet it. Returns every level's steps.
Expected<std::vector<float>> search_steps(KlMeter& meter, const CalibrationOptions& o,
                                          std::uint32_t layers, std::uint32_t groups,
                                          const KvTransform& transform,
                                          const std::function<void(const std::string&)>& log) {
  const auto table = quantization_steps();
  const std::uint32_t segments = 2 * layers * groups;
  // Steps with the first `coarser` groups at code + 1 and the rest at code.
  const auto steps_of = [&](int code, std::uint32_t coarser) {
    std::vector<float> steps(segments, table[code]);
    std::fill_n(steps.begin(), coarser, table[std::min(code + 1, 255)]);
    return steps;
  };
  const auto measure = [&](const std::vector<float>& steps) -> Expected<double> {
    KVS_ASSIGN_OR_RETURN(CodecProfile p, CodecProfile::from_steps(layers, groups, 1, steps));
    KVS_RETURN_IF_ERROR(p.set_transform(transform));
    return meter.measure(p, 1);
  };
  std::map<int, double> measured;  // step code -> KL
  const auto kl_of = [&](int code) -> Expected<double> {
    if (auto it = measured.find(code); it != measured.end()) return it->second;
    KVS_ASSIGN_OR_RETURN(double kl, measure(steps_of(code, 0)));
    log(fmt::format("step {:.4g} (code {}) -> KL {:.3e}", table[code], code, kl));
    measured[code] = kl;
    return kl;
  };
  // The weights are in units of KL per squared error, so that KL ~ coefficients * step^2.
  const double coefficients = 2.0 * transform.channels * layers;
  const auto code_near = [&](double step) {
    const auto it = std::lower_bound(table.begin(), table.end(), static_cast<float>(step));
    return static_cast<int>(std::clamp<std::ptrdiff_t>(it - table.begin(), 0, 255));
  };
  std::vector<float> steps;
  int floor_code = 0;
  double guess = std::sqrt(o.targets.front() / coefficients);
  for (std::size_t level = 0; level < o.targets.size(); ++level) {
    const double target = o.targets[level];
    int code = std::max(floor_code, code_near(guess));
    KVS_ASSIGN_OR_RETURN(double kl, kl_of(code));
    if (kl <= target) {
      while (code < 255) {
        KVS_ASSIGN_OR_RETURN(double next, kl_of(code + 1));
        if (next > target) break;
        ++code;
      }
    } else {
      while (code > floor_code) {
        --code;
        KVS_ASSIGN_OR_RETURN(kl, kl_of(code));
        if (kl <= target) break;
      }
    }
    // Between two codes: as many groups as still meet the target take the coarser one.
    std::uint32_t lo = 0, hi = segments;  // lo meets the target, hi does not
    double kl_lo = measured[code];
    while (code < 255 && hi - lo > 1) {
      const std::uint32_t mid = (lo + hi) / 2;
      KVS_ASSIGN_OR_RETURN(double kl_mid, measure(steps_of(code, mid)));
      log(fmt::format("step {:.4g} in {} groups, {:.4g} in {} -> KL {:.3e}", table[code + 1], mid,
                      table[code], segments - mid, kl_mid));
      (kl_mid <= target ? lo : hi) = mid;
      if (kl_mid <= target) kl_lo = kl_mid;
    }
    log(
        fmt::format("level {} target KL {:.3e}: step {:.4g} (code {}), {} groups one code "
                    "coarser, KL {:.3e}",
                    level + 1, target, table[code], code, lo, kl_lo));
    const auto level_steps = steps_of(code, lo);
    steps.insert(steps.end(), level_steps.begin(), level_steps.end());
    floor_code = code;
    // The next target, if KL grows as step^2 from here.
    if (level + 1 < o.targets.size()) {
      guess = table[code] * std::sqrt(o.targets[level + 1] / std::max(measured[code], 1e-12));
    }
  }
  return steps;
}

// Per (layer, K|V, channel): the KL per unit of squared error implied by the group
// sensitivities (KL per squared relative step, shared by the group's channels) and the
// channels' spreads.
std::vector<double> channel_weights(const KlMeter& meter, std::uint32_t layers,
                                    std::uint32_t groups, std::span<const double> sensitivity) {
  const std::vector<double> spread =
      channel_spreads(meter.references(), meter.ctx(), meter.chunk());
  const std::size_t C = spread.size() / (2 * layers);
  std::vector<double> w(spread.size());
  for (std::size_t i = 0; i < w.size(); ++i) {
    const std::size_t lp = i / C, c = i % C;
    const double sigma = std::max(spread[i], 1e-6);
    w[i] = sensitivity[lp * groups + c * groups / C] /
           (static_cast<double>(C / groups) * sigma * sigma);
  }
  return w;
}

// Per (layer, KV head): W_o^T W_o restricted to the head's V dims, summed over the query heads
// that read it. An error e in a token's V moves each of those heads' attention output by
// (attention weight) x e, and the layer's output by W_o of that: its first-order cost.
std::vector<double> value_metrics(const runner::Model& model) {
  const runner::ModelConfig& c = model.config();
  const std::size_t hd = c.head_dim(), dim = c.dim, group = c.heads / c.kv_heads;
  std::vector<double> m(std::size_t{c.layers} * c.kv_heads * hd * hd, 0.0);
  for (std::uint32_t l = 0; l < c.layers; ++l) {
    const float* wo = model.layer(l).wo;  // [dim][dim]: out x (head, dim)
    for (std::size_t q = 0; q < c.heads; ++q) {
      double* block = &m[((std::size_t{l} * c.kv_heads) + q / group) * hd * hd];
      for (std::size_t a = 0; a < hd; ++a)
        for (std::size_t b = 0; b < hd; ++b)
          for (std::size_t i = 0; i < dim; ++i)
            block[a * hd + b] += double{wo[i * dim + q * hd + a]} * wo[i * dim + q * hd + b];
    }
  }
  return m;
}

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
  const auto levels = static_cast<std::uint32_t>(o.targets.size());
  std::vector<float> all;
  CodecProfile profile;
  if (o.transform) {
    TransformFitInput in;
    in.caches = meter.references();
    in.tokens = meter.ctx();
    in.chunk = meter.chunk();
    in.frequencies = o.rope_frequencies;
    in.pairs = o.rope_pairs;
    in.weights = channel_weights(meter, layers, groups, sensitivity);
    in.value_metrics = value_metrics(meter.model());
    KVS_ASSIGN_OR_RETURN(KvTransform fitted, fit_transform(in));
    log(fmt::format("transform fitted: {} layers of {} x {} (id {:08x})", layers,
                    2 * fitted.channels, 2 * fitted.channels, fitted.id()));
    // Every coefficient weighs the same, so one step per level, from the format's table.
    KVS_ASSIGN_OR_RETURN(all, search_steps(meter, o, layers, groups, fitted, log));
    KVS_ASSIGN_OR_RETURN(profile, CodecProfile::from_steps(layers, groups, levels, all));
    KVS_RETURN_IF_ERROR(profile.set_transform(std::move(fitted)));
  } else {
    const auto steps_for = [&](double k) {
      std::vector<float> steps(segments);
      for (std::uint32_t i = 0; i < segments; ++i) {
        steps[i] =
            static_cast<float>(std::min<double>(k / std::sqrt(sensitivity[i]), kMaxRelativeStep));
      }
      return steps;
    };
    const auto with_scale = [&](double k) {
      return CodecProfile::from_steps(layers, groups, 1, steps_for(k));
    };
    // Additive model: KL = sum_i s_i * step_i^2 = segments * k^2.
    KVS_ASSIGN_OR_RETURN(
        std::vector<double> scales,
        search_scales(meter, o, std::sqrt(o.targets.front() / segments), with_scale, log));
    for (double k : scales) {
      const auto steps = steps_for(k);
      all.insert(all.end(), steps.begin(), steps.end());
    }
    KVS_ASSIGN_OR_RETURN(profile, CodecProfile::from_steps(layers, groups, levels, all));
  }
  profile.set_targets(o.targets);
  return profile;
}

}  // namespace kvstream::cli
