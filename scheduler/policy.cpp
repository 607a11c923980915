#include "policy.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <limits>
#include <numeric>
#include <utility>
#include <vector>

#include "planner.hpp"

namespace kvstream::scheduler {

namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

class PlannerPolicy final : public Policy {
 public:
  PlannerPolicy(double margin, double tolerance) : margin_(margin), tolerance_(tolerance) {}
  std::string name() const override { return "planner"; }
  bool probes_first() const override { return true; }
  bool revokes_late_recomputes() const override { return true; }
  bool upgrades() const override { return true; }
  Decision decide(const Situation& s) override {
    if (!(s.estimate.low_bytes_per_s > 0)) {
      // Nothing known about the link (no seed, nothing landed): the first chunk probes it at its
      // smallest size.
      return {Choice::fetch(s.ctx->chunks[s.next()].smallest_level()), kNan, kNan};
    }
    PlanInput in;
    in.ctx = s.ctx;
    in.rates = s.rates;
    in.rates.link_bytes_per_s = std::min(
        s.estimate.low_bytes_per_s > 0 ? s.estimate.bound(s.ctx->chunk_count() - s.next()) : 0.0,
        s.estimate.bytes_per_s);
    in.lanes = s.lanes;
    in.deadline = deadline_in_hand(s.deadline, s.now, margin_);
    in.first = s.first;
    in.committed = s.committed;
    in.done_loss = s.done_loss;
    // What earlier choices gave up counts against the tolerance: it bounds the whole context's.
    in.tolerance = std::max(0.0, tolerance_ - given_up_);
    Plan p = plan_rest(in);
    if (!p.meets_deadline && s.estimate.samples > 0 &&
        s.estimate.recent_bytes_per_s > in.rates.link_bytes_per_s) {
      // Nothing fits the conservative bound: plan with the rate the link has shown lately, whose
      // plan (meeting the deadline or the fastest) is the likelier to be right. Not the mean of
      // the window, which after a step down still holds the faster chunks before it, and not a
      // seed alone, which can be the interface's nominal rate.
      in.rates.link_bytes_per_s = s.estimate.recent_bytes_per_s;
      p = plan_rest(in);
    }
    given_up_ += p.first_given_up;
    return {p.choices.front(), p.finish, p.loss};
  }

 private:
  double margin_, tolerance_;
  double given_up_ = 0;  // by the choices made so far
};

class FixedPolicy final : public Policy {
 public:
  FixedPolicy(std::uint32_t level, std::string name) : level_(level), name_(std::move(name)) {}
  std::string name() const override { return name_; }
  Decision decide(const Situation&) override { return {Choice::fetch(level_), kNan, kNan}; }

 private:
  std::uint32_t level_;
  std::string name_;
};

class RecomputePolicy final : public Policy {
 public:
  std::string name() const override { return "recompute"; }
  Decision decide(const Situation&) override { return {Choice::recomputed(), kNan, kNan}; }
};

class CacheGenPolicy final : public Policy {
 public:
  std::string name() const override { return "cachegen"; }
  Decision decide(const Situation& s) override {
    const ContextCosts& ctx = *s.ctx;
    const std::uint32_t next = s.next();
    const double share = (s.deadline - s.now) / static_cast<double>(ctx.chunk_count() - next);
    const double rate = s.last_throughput > 0 ? s.last_throughput : s.estimate.bytes_per_s;
    std::vector<std::uint32_t> order(ctx.levels());
    std::iota(order.begin(), order.end(), 0u);
    std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) {
      return ctx.level_loss[a] < ctx.level_loss[b];
    });
    const ChunkCosts& c = ctx.chunks[next];
    for (std::uint32_t l : order) {
      if (rate > 0 && static_cast<double>(c.level_bytes[l]) / rate <= share)
        return {Choice::fetch(l), kNan, kNan};
    }
    if (s.rates.recompute_tokens_per_s > 0) return {Choice::recomputed(), kNan, kNan};
    return {Choice::fetch(c.smallest_level()), kNan, kNan};
  }
};

}  // namespace

std::unique_ptr<Policy> planner_policy(double margin, double tolerance) {
  return std::make_unique<PlannerPolicy>(margin, tolerance);
}
std::unique_ptr<Policy> fixed_policy(std::uint32_t level, std::string name) {
  return std::make_unique<FixedPolicy>(level, std::move(name));
}
std::unique_ptr<Policy> recompute_policy() {
  return std::make_unique<RecomputePolicy>();
}
std::unique_ptr<Policy> cachegen_policy() {
  return std::make_unique<CacheGenPolicy>();
}

}  // namespace kvstream::scheduler
