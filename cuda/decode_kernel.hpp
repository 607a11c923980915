// The decode kernel's launcher (decode_kernel.cu); the kernel runs decode_logic.hpp.
#pragma once

#include <cuda_runtime.h>

#include "decode_logic.hpp"

namespace kvstream::gpu {

// Enqueues the decode of every task of `args` (a chunk of coding `coding`) on `stream`; the
// launch's error, if any.
cudaError_t launch_decode(const DecodeArgs& args, std::uint32_t coding, cudaStream_t stream);

}  // namespace kvstream::gpu
