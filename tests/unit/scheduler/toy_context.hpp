// A three-chunk context small enough to plan by hand: 100 tokens and 1000 decoded bytes per
// chunk; 800, 400 or 200 bytes on the wire at levels 0, 1, 2, which lose 0, 1 and 4 (ΔPPL %).
#pragma once

#include "costs.hpp"

namespace kvstream::scheduler::testing {

inline ContextCosts toy_context(std::uint32_t chunks = 3) {
  ContextCosts ctx;
  ctx.level_loss = {0, 1, 4};
  for (std::uint32_t i = 0; i < chunks; ++i)
    ctx.chunks.push_back({100, 1000, {800, 400, 200}});
  return ctx;
}

}  // namespace kvstream::scheduler::testing
