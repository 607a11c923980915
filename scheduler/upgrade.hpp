// Time the deadline leaves once every chunk is decided buys quality back. The planner's first
// fetch is a probe sized for the slowest link the deadline allows, and a chunk decided on a
// pessimistic estimate goes at a coarser level than the link turned out to allow: fetched again
// at a better level and decoded over its first copy, it costs bytes the link would otherwise not
// carry, and nothing else, as long as it is ready by the deadline. So, after the last chunk is
// decided, the fetch asks for the upgrade that saves the most loss and is still ready in time.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <span>

#include "costs.hpp"
#include "estimator.hpp"

namespace kvstream::scheduler {

// How much longer than predicted an upgrade may take and still be ready by the deadline. An
// upgrade only ever risks the deadline, and what a prediction misses grows with what it
// predicts (the link's rate moves while the chunk is on it; its decode waits behind the
// others'): in eight sweeps of the shaped-link bench, 6 of the 453 upgrades the fetch asked
// for were ready after the deadline (2 to 11 ms), each making its fetch miss; at this overrun
// 5 of the 6 are refused, and 71 of the 447 that were in time (one of the chunk's smaller
// upgrades is still open to them). README: Adaptive streaming's measurements.
inline constexpr double kUpgradeOverrun = 0.5;

struct UpgradeInput {
  const ContextCosts* ctx = nullptr;
  // Every chunk's choice as its KV will hold it once what is in flight lands: a fetched level
  // (an upgrade in flight counts at its level), or a recompute.
  std::span<const Choice> held;
  double now = 0;
  double deadline = 0;  // less any margin the caller keeps in hand
  // When the link is free of the transfers in flight and the decoder of the chunks landed or
  // in flight (at least now).
  double link_free = 0, decode_free = 0;
  // The rate to plan with (upgrade_rate), decode as measured, the per-request overhead.
  Rates rates;
  // An upgrade predicted ready at `ready` is taken only if now + (1 + overrun) × (ready - now)
  // is still by the deadline.
  double overrun = kUpgradeOverrun;
};

struct Upgrade {
  std::uint32_t chunk = 0;
  std::uint32_t level = 0;
  double ready = 0;  // when it is predicted ready
};

// The link rate to plan an upgrade with. An upgrade is optional, and one that lands late breaks
// a deadline the fetch had met: the lower of the bound for one transfer and the slowest recent
// transfer, so that it is in time even if the link repeats the worst it has shown lately.
inline double upgrade_rate(const Estimate& e) {
  return std::min(e.bound(1), e.slowest_bytes_per_s);
}

// The upgrade (a fetched chunk, a level losing less than the one it holds) predicted ready by
// the deadline, with the overrun, that saves the most token-weighted loss; ties to fewer bytes,
// then to the earlier chunk. None for a chunk with a recompute after it: the engine computed that
// chunk's KV from the copy it holds, and a new copy would no longer match it. Nothing when no rate
// is known.
std::optional<Upgrade> choose_upgrade(const UpgradeInput& in);

}  // namespace kvstream::scheduler
