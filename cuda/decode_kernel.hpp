// The launchers of decode_kernel.cu: the decode kernel runs decode_logic.hpp, the synthesis
// kernel synthesis_logic.hpp.
#pragma once

#include <cuda_runtime.h>

#include "decode_logic.hpp"
#include "synthesis_logic.hpp"

namespace kvstream::gpu {

// Enqueues the decode of every task of `args` (a chunk of coding `coding`) on `stream`; the
// launch's error, if any.
cudaError_t launch_decode(const DecodeArgs& args, std::uint32_t coding, cudaStream_t stream);

// Enqueues a transform-coded chunk's synthesis (one thread per work item) on `stream`.
cudaError_t launch_synthesis(const SynthesisArgs& args, cudaStream_t stream);

}  // namespace kvstream::gpu
