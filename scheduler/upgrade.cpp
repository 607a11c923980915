#include "upgrade.hpp"

#include <algorithm>

namespace kvstream::scheduler {

std::optional<Upgrade> choose_upgrade(const UpgradeInput& in) {
  const ContextCosts& ctx = *in.ctx;
  const double rate = in.rates.link_bytes_per_s;
  if (!(rate > 0) || in.held.size() != ctx.chunk_count()) return {};
  // Chunks after the last recompute only.
  std::uint32_t from = 0;
  for (std::uint32_t c = 0; c < in.held.size(); ++c)
    if (in.held[c].recompute()) from = c + 1;
  const double start = std::max(in.link_free, in.now) + in.rates.chunk_overhead_s;
  std::optional<Upgrade> best;
  double best_saved = 0;
  std::uint64_t best_bytes = 0;
  for (std::uint32_t c = from; c < in.held.size(); ++c) {
    if (!in.held[c].fetched()) continue;
    const ChunkCosts& cc = ctx.chunks[c];
    const double held_loss = ctx.level_loss[in.held[c].level];
    for (std::uint32_t l = 0; l < ctx.levels(); ++l) {
      const double saved = (held_loss - ctx.level_loss[l]) * cc.tokens;
      if (!(saved > 0)) continue;
      const std::uint64_t bytes = cc.level_bytes[l];
      const double ready = std::max(start + static_cast<double>(bytes) / rate, in.decode_free) +
                           in.rates.decode_s(cc, l);
      if (in.now + (1 + in.overrun) * (ready - in.now) > in.deadline) continue;
      if (!best || saved > best_saved || (saved == best_saved && bytes < best_bytes)) {
        best = Upgrade{c, l, ready};
        best_saved = saved;
        best_bytes = bytes;
      }
    }
  }
  return best;
}

}  // namespace kvstream::scheduler
