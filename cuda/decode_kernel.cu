// The decode kernel: a persistent grid of 16-warp blocks; each block gathers the chunk's tables
// into shared memory once, then each warp runs decode_logic.hpp's tasks one after another.
#include "decode_kernel.hpp"
#include "warp_team.cuh"

namespace kvstream::gpu {
namespace {

constexpr unsigned kWarps = 16, kThreads = 32 * kWarps;

std::size_t shared_bytes(std::uint32_t tables) {
  return std::size_t{tables} * (64 * 4 + kBuckets) + 256 * 4;
}

template <std::uint32_t kCoding, std::uint32_t kOut>
__global__ void __launch_bounds__(kThreads, 2) decode_kernel(const DecodeArgs a) {
  // Shared memory: per table its 64 token words, then the 256 steps, then per table its
  // 2048 buckets (copied as 512 words).
  extern __shared__ std::uint32_t smem[];
  std::uint32_t* tokens = smem;
  float* steps = reinterpret_cast<float*>(smem + a.table_count * 64);
  auto* buckets = reinterpret_cast<std::uint32_t*>(steps + 256);
  const auto* bank_buckets = reinterpret_cast<const std::uint32_t*>(a.bank_buckets);
  for (std::uint32_t i = threadIdx.x; i < a.table_count * 64; i += kThreads)
    tokens[i] = a.bank_tokens[a.tables[i / 64] * 64 + i % 64];
  for (std::uint32_t i = threadIdx.x; i < 256; i += kThreads)
    steps[i] = a.steps[i];
  for (std::uint32_t i = threadIdx.x; i < a.table_count * (kBuckets / 4); i += kThreads)
    buckets[i] = bank_buckets[a.tables[i / (kBuckets / 4)] * (kBuckets / 4) + i % (kBuckets / 4)];
  __syncthreads();
  const Luts luts{reinterpret_cast<const std::uint8_t*>(buckets), tokens, steps};
  WarpTeam team{threadIdx.x % 32};
  // Warps take tasks from a counter, so that none idles while another has two left.
  for (;;) {
    std::uint32_t task = 0;
    if (team.lane == 0) task = atomicAdd(a.next_task, 1u);
    task = __shfl_sync(0xFFFFFFFFu, task, 0);
    if (task >= a.task_count) break;
    decode_task<kCoding, kOut>(team, a, luts, task);
  }
}

__global__ void __launch_bounds__(256) synthesis_kernel(const SynthesisArgs a) {
  const std::uint64_t item = std::uint64_t{blockIdx.x} * 256 + threadIdx.x;
  if (item < a.items()) synthesize_item(a, item);
}

}  // namespace

cudaError_t launch_synthesis(const SynthesisArgs& args, cudaStream_t stream) {
  const std::uint64_t blocks = (args.items() + 255) / 256;
  if (blocks == 0) return cudaSuccess;
  if (blocks > 0x7FFFFFFFu) return cudaErrorInvalidConfiguration;
  synthesis_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(args);
  return cudaGetLastError();
}

cudaError_t launch_decode(const DecodeArgs& args, std::uint32_t coding, cudaStream_t stream) {
  if (args.task_count == 0) return cudaSuccess;
  cudaError_t e = cudaSuccess;
  dispatch(coding, args.dst.dtype, [&]<std::uint32_t kCoding, std::uint32_t kOut>() {
    const auto kernel = decode_kernel<kCoding, kOut>;
    const std::size_t smem = shared_bytes(args.table_count);
    int device = 0, sms = 0, per_sm = 0;
    if ((e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(smem))) != cudaSuccess ||
        (e = cudaGetDevice(&device)) != cudaSuccess ||
        (e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device)) != cudaSuccess ||
        (e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem)) !=
            cudaSuccess) {
      return;
    }
    const unsigned wanted = (args.task_count + kWarps - 1) / kWarps;
    const unsigned resident = static_cast<unsigned>(sms * (per_sm > 0 ? per_sm : 1));
    const unsigned grid = wanted < resident ? wanted : resident;
    kernel<<<grid, kThreads, smem, stream>>>(args);
    e = cudaGetLastError();
  });
  return e;
}

}  // namespace kvstream::gpu
