#include "revoke.hpp"

#include <algorithm>

namespace kvstream::scheduler {

std::optional<Revoke> revoke_late_recompute(const RevokeInput& in) {
  const ContextCosts& ctx = *in.ctx;
  if (!(in.rates.recompute_tokens_per_s > 0) || !(in.rates.link_bytes_per_s > 0)) return {};
  double engine = std::max(in.engine_free, in.now);
  for (std::size_t i = 0; i < in.queued.size(); ++i) {
    const ChunkCosts& c = ctx.chunks[in.queued[i]];
    engine += static_cast<double>(c.tokens) / in.rates.recompute_tokens_per_s;
    if (engine <= in.deadline) continue;
    // Fetched now: after the bytes in flight and before the undecided rest, then decoded.
    const double rate = in.rates.link_bytes_per_s;
    const double start = std::max(in.link_free, in.now);
    const auto ends = [&](std::uint32_t l) {
      return start + (static_cast<double>(c.level_bytes[l]) + in.rest_bytes) / rate +
             in.rates.decode_s(c, l);
    };
    std::optional<std::uint32_t> best;
    for (std::uint32_t l = 0; l < ctx.levels(); ++l) {
      if (ends(l) <= in.deadline &&
          (!best || ctx.level_loss[l] < ctx.level_loss[*best] ||
           (ctx.level_loss[l] == ctx.level_loss[*best] && ends(l) < ends(*best))))
        best = l;
    }
    if (best) return Revoke{i, *best};
    // Nothing makes the deadline: the sooner end, the engine's or the link's.
    const double waiting = std::max(engine, start + in.rest_bytes / rate);
    if (ends(c.smallest_level()) < waiting) return Revoke{i, c.smallest_level()};
    // The engine is the sooner for this one; those behind it end later still.
  }
  return {};
}

}  // namespace kvstream::scheduler
