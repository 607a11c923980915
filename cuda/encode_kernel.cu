// The encode kernels: plain grids of one thread per item (encode_logic.hpp). The passes that
// walk a channel's tokens read neighbouring channels of one row per warp, so their loads
// coalesce.
#include "encode_kernel.hpp"
#include "warp_team.cuh"

namespace kvstream::gpu {
namespace {

constexpr unsigned kThreads = 256;

__device__ void report_bad(std::uint64_t* bad, std::uint64_t key) {
  if (key != kNoBadValue) {
    atomicMin(reinterpret_cast<unsigned long long*>(bad), static_cast<unsigned long long>(key));
  }
}

__device__ std::uint64_t item_index() {
  return std::uint64_t{blockIdx.x} * kThreads + threadIdx.x;
}

__global__ void __launch_bounds__(kThreads)
    check_kernel(const ViewDesc src, std::uint32_t begin, std::uint32_t tokens,
                 std::uint32_t channels, std::uint32_t layers, std::uint64_t* bad) {
  const std::uint64_t i = item_index();
  if (i >= std::uint64_t{layers} * 2 * channels) return;
  const auto c = static_cast<std::uint32_t>(i % channels);
  const auto lp = static_cast<std::uint32_t>(i / channels);
  report_bad(bad, check_item(src, begin, tokens, channels, lp / 2, lp % 2, c));
}

// One item per (layer, token, value of 2C): RoPE undone (z rows), or the analysis.
template <bool kAnalysis>
__global__ void __launch_bounds__(kThreads) analysis_kernel(const AnalysisArgs a) {
  const std::uint64_t i = item_index(), n = 2 * a.channels;
  if (i >= std::uint64_t{a.layers} * a.tokens * n) return;
  const auto layer = static_cast<std::uint32_t>(i / n / a.tokens);
  const auto t = static_cast<std::uint32_t>(i / n % a.tokens);
  const auto q = static_cast<std::uint32_t>(i % n);
  if constexpr (kAnalysis) {
    analysis_item(a, layer, t, q);
  } else {
    unturn_item(a, layer, t, q);
  }
}

__global__ void __launch_bounds__(kThreads)
    statistics_kernel(const EncodeArgs a, std::uint64_t* bad) {
  const std::uint64_t i = item_index();
  if (i >= std::uint64_t{a.segments} * a.channels) return;
  const auto s = static_cast<std::uint32_t>(i / a.channels);
  const auto c = static_cast<std::uint32_t>(i % a.channels);
  const std::uint64_t key = sums_item(a, s, c);
  report_bad(bad, key);
  if (key == kNoBadValue && a.coding == 0) deviations_item(a, s, c);
}

// Histograms in shared memory, interleaved (Histogram): kTokenThreads x 64 counters.
constexpr unsigned kTokenThreads = 128;

__global__ void __launch_bounds__(kTokenThreads) tokens_kernel(const EncodeArgs a) {
  __shared__ std::uint32_t counts[codec::kTokens * kTokenThreads];
  const std::uint64_t i = std::uint64_t{blockIdx.x} * kTokenThreads + threadIdx.x;
  if (i >= std::uint64_t{a.segments} * a.channels) return;
  const auto s = static_cast<std::uint32_t>(i / a.channels);
  const auto c = static_cast<std::uint32_t>(i % a.channels);
  const Histogram h{counts + threadIdx.x, kTokenThreads};
  tokenize_item(a, s, c, h);
  table_item(a, s, c, h);
}

// One warp per substream, a thread per rANS lane.
__global__ void __launch_bounds__(kThreads) substreams_kernel(const EncodeArgs a) {
  const std::uint64_t s = item_index() / 32;
  if (s >= std::uint64_t{a.segments} * a.substreams) return;  // the whole warp
  WarpTeam team{threadIdx.x % 32};
  substream_task(team, a, static_cast<std::uint32_t>(s / a.substreams),
                 static_cast<std::uint32_t>(s % a.substreams));
}

// One block per substream.
__global__ void __launch_bounds__(kThreads)
    pack_kernel(const EncodeArgs a, const std::uint64_t* at, std::uint16_t* packed) {
  const std::uint64_t s = blockIdx.x;
  const std::uint16_t* from = a.words + s * a.region_words + a.word_begin[s];
  const std::uint64_t n = a.region_words - a.word_begin[s];
  for (std::uint64_t k = threadIdx.x; k < n; k += kThreads)
    packed[at[s] + k] = from[k];
}

cudaError_t grid_for(std::uint64_t items, unsigned& blocks) {
  const std::uint64_t b = (items + kThreads - 1) / kThreads;
  if (b > 0x7FFFFFFFu) return cudaErrorInvalidConfiguration;
  blocks = static_cast<unsigned>(b);
  return cudaSuccess;
}

}  // namespace

cudaError_t launch_check(const ViewDesc& src, std::uint32_t begin, std::uint32_t tokens,
                         std::uint32_t channels, std::uint32_t layers, std::uint64_t* bad,
                         cudaStream_t stream) {
  unsigned blocks = 0;
  if (cudaError_t e = grid_for(std::uint64_t{layers} * 2 * channels, blocks); e != cudaSuccess) {
    return e;
  }
  if (blocks == 0) return cudaSuccess;
  check_kernel<<<blocks, kThreads, 0, stream>>>(src, begin, tokens, channels, layers, bad);
  return cudaGetLastError();
}

cudaError_t launch_analysis(const AnalysisArgs& args, cudaStream_t stream) {
  unsigned blocks = 0;
  if (cudaError_t e =
          grid_for(std::uint64_t{args.layers} * args.tokens * 2 * args.channels, blocks);
      e != cudaSuccess) {
    return e;
  }
  if (blocks == 0) return cudaSuccess;
  analysis_kernel<false><<<blocks, kThreads, 0, stream>>>(args);
  analysis_kernel<true><<<blocks, kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_statistics(const EncodeArgs& args, std::uint64_t* bad, cudaStream_t stream) {
  unsigned blocks = 0;
  if (cudaError_t e = grid_for(std::uint64_t{args.segments} * args.channels, blocks);
      e != cudaSuccess) {
    return e;
  }
  if (blocks == 0) return cudaSuccess;
  statistics_kernel<<<blocks, kThreads, 0, stream>>>(args, bad);
  return cudaGetLastError();
}

cudaError_t launch_coding(const EncodeArgs& args, cudaStream_t stream) {
  const std::uint64_t channels = std::uint64_t{args.segments} * args.channels;
  const std::uint64_t blocks = (channels + kTokenThreads - 1) / kTokenThreads;
  unsigned sub_blocks = 0;
  if (cudaError_t e = grid_for(std::uint64_t{args.segments} * args.substreams * 32, sub_blocks);
      e != cudaSuccess) {
    return e;
  }
  if (blocks > 0x7FFFFFFFu) return cudaErrorInvalidConfiguration;
  if (blocks == 0 || sub_blocks == 0) return cudaSuccess;
  tokens_kernel<<<static_cast<unsigned>(blocks), kTokenThreads, 0, stream>>>(args);
  substreams_kernel<<<sub_blocks, kThreads, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_pack(const EncodeArgs& args, const std::uint64_t* at, std::uint16_t* packed,
                        cudaStream_t stream) {
  const std::uint64_t substreams = std::uint64_t{args.segments} * args.substreams;
  if (substreams == 0) return cudaSuccess;
  if (substreams > 0x7FFFFFFFu) return cudaErrorInvalidConfiguration;
  pack_kernel<<<static_cast<unsigned>(substreams), kThreads, 0, stream>>>(args, at, packed);
  return cudaGetLastError();
}

}  // namespace kvstream::gpu
