// The launchers of encode_kernel.cu: one thread per item of encode_logic.hpp's passes.
#pragma once

#include <cuda_runtime.h>

#include "encode_logic.hpp"

namespace kvstream::gpu {

// A transform's source check over every (layer, part, channel): the least bad-value key goes
// to *bad (which starts at kNoBadValue).
cudaError_t launch_check(const ViewDesc& src, std::uint32_t begin, std::uint32_t tokens,
                         std::uint32_t channels, std::uint32_t layers, std::uint64_t* bad,
                         cudaStream_t stream);

// The transform's z rows, then its coefficients.
cudaError_t launch_analysis(const AnalysisArgs& args, cudaStream_t stream);

// Statistics of every (segment, channel): sums (and, lossy, deviations); the least bad-value key
// goes to *bad.
cudaError_t launch_statistics(const EncodeArgs& args, std::uint64_t* bad, cudaStream_t stream);

// Tokens and a table per (segment, channel), then the rANS coding of every substream.
cudaError_t launch_coding(const EncodeArgs& args, cudaStream_t stream);

// Substream s's words (region s of args.words, from args.word_begin[s]) to packed + at[s].
cudaError_t launch_pack(const EncodeArgs& args, const std::uint64_t* at, std::uint16_t* packed,
                        cudaStream_t stream);

}  // namespace kvstream::gpu
