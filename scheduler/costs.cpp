#include "costs.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvstream::scheduler {

std::uint32_t ChunkCosts::smallest_level() const {
  return static_cast<std::uint32_t>(std::min_element(level_bytes.begin(), level_bytes.end()) -
                                    level_bytes.begin());
}

std::uint64_t ContextCosts::smallest_bytes(std::uint32_t from) const {
  std::uint64_t n = 0;
  for (std::uint32_t c = from; c < chunks.size(); ++c)
    n += chunks[c].level_bytes[chunks[c].smallest_level()];
  return n;
}

std::uint64_t ContextCosts::total_tokens() const {
  std::uint64_t n = 0;
  for (const ChunkCosts& c : chunks)
    n += c.tokens;
  return n;
}

Status ContextCosts::check() const {
  if (chunks.empty()) return Status(Errc::invalid_argument, "context costs: no chunks");
  if (level_loss.empty()) return Status(Errc::invalid_argument, "context costs: no levels");
  for (std::size_t l = 0; l < level_loss.size(); ++l) {
    if (!std::isfinite(level_loss[l]) || level_loss[l] < 0) {
      return Status(Errc::invalid_argument,
                    fmt::format("context costs: level {} has loss {}", l, level_loss[l]));
    }
  }
  for (std::size_t i = 0; i < chunks.size(); ++i) {
    if (chunks[i].tokens == 0)
      return Status(Errc::invalid_argument, fmt::format("context costs: chunk {} is empty", i));
    if (chunks[i].level_bytes.size() != level_loss.size()) {
      return Status(Errc::invalid_argument,
                    fmt::format("context costs: chunk {} has sizes for {} levels, not {}", i,
                                chunks[i].level_bytes.size(), level_loss.size()));
    }
  }
  return Status::ok();
}

std::string to_string(Choice c) {
  if (c.recompute()) return "recompute";
  return c.ready() ? std::string("ready") : fmt::format("L{}", c.level);
}

double finish_time(const ContextCosts& ctx, const Rates& rates, Lanes lanes, std::uint32_t first,
                   std::span<const Choice> plan) {
  double ready = std::max(lanes.decode, lanes.recompute);  // of every chunk so far
  double all_before = -std::numeric_limits<double>::infinity();
  for (std::size_t k = 0; k < plan.size(); ++k) {
    if (plan[k].ready()) continue;
    const ChunkCosts& c = ctx.chunks[first + k];
    double done = 0;
    if (plan[k].recompute()) {
      if (rates.recompute_tokens_per_s <= 0) return std::numeric_limits<double>::infinity();
      lanes.recompute = std::max(lanes.recompute, all_before) +
                        static_cast<double>(c.tokens) / rates.recompute_tokens_per_s;
      done = lanes.recompute;
    } else {
      lanes.link += static_cast<double>(c.level_bytes[plan[k].level]) / rates.link_bytes_per_s +
                    rates.chunk_overhead_s;
      lanes.decode = std::max(lanes.decode, lanes.link) + rates.decode_s(c, plan[k].level);
      done = lanes.decode;
    }
    all_before = std::max(all_before, done);
    ready = std::max(ready, done);
  }
  return ready;
}

double plan_loss(const ContextCosts& ctx, std::uint32_t first, std::span<const Choice> plan,
                 double done_loss) {
  const double total = static_cast<double>(ctx.total_tokens());
  double loss = done_loss;
  for (std::size_t k = 0; k < plan.size(); ++k) {
    if (!plan[k].fetched()) continue;
    loss += ctx.level_loss[plan[k].level] * ctx.chunks[first + k].tokens / total;
  }
  return loss;
}

}  // namespace kvstream::scheduler
