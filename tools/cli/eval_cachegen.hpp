// CacheGen (SIGCOMM 2024) as `kvstream codec eval` baselines: the algorithm LMCache released,
// and the one the paper describes. Both sizes come from an ideal coder (the empirical entropy
// of what they would code), so neither is timed.
#pragma once

#include <memory>
#include <vector>

#include "cli/eval_methods.hpp"

namespace kvstream::cli {

// `cachegen` (as released), then `cachegen-paper-1..3` (the paper's algorithm at three
// quantization settings, finest first).
std::vector<std::unique_ptr<EvalMethod>> make_cachegen_methods();

}  // namespace kvstream::cli
