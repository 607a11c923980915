// A recompute the engine has not started is not a commitment yet. The planner may hand a chunk to
// the engine on a pessimistic link estimate (one slow first landing, which also paid for the
// connection's start), and the engine takes chunks one at a time, each after the chunks before
// it: such a chunk can end up waiting far past the deadline while the link, faster than feared,
// falls idle. Before each request the fetch asks whether a queued recompute should be fetched
// instead.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "costs.hpp"

namespace kvstream::scheduler {

struct RevokeInput {
  const ContextCosts* ctx = nullptr;
  double now = 0, deadline = 0;
  // The engine's queue, in order, without the chunk it is running; and when it is free of that
  // one (at least now).
  std::span<const std::uint32_t> queued;
  double engine_free = 0;
  // When the link is free of the chunks in flight (at least now), and the rates to plan with.
  double link_free = 0;
  Rates rates;
  // What the link must still carry for the chunks not decided yet, at their smallest levels:
  // the revoked chunk's bytes come before theirs.
  double rest_bytes = 0;
};

struct Revoke {
  std::size_t index = 0;  // in `queued`
  std::uint32_t level = 0;
};

// The first queued chunk whose recompute cannot end by the deadline (even if the chunks before
// it were ready now), fetched now instead: at the least lossy level with which it, and the
// undecided rest after it, still make the deadline; else at its smallest level, if that ends
// the fetch sooner than waiting for the engine would. Nothing when no recompute is late.
std::optional<Revoke> revoke_late_recompute(const RevokeInput& in);

}  // namespace kvstream::scheduler
