// The decode kernel: one warp per task of decode_logic.hpp, four warps a block.
#include "decode_kernel.hpp"

namespace kvstream::gpu {
namespace {

// decode_logic's team on the device: the lanes are the warp's threads.
struct WarpTeam {
  unsigned lane;
  template <class T>
  struct Var {
    T v;
    __device__ T& operator[](unsigned) { return v; }
  };
  template <class F>
  __device__ void each(F&& f) {
    f(lane);
  }
  template <class P>
  __device__ std::uint32_t ballot(P&& pred) {
    return __ballot_sync(0xFFFFFFFFu, pred(lane));
  }
  __device__ void sync() { __syncwarp(); }
  __device__ void report(std::uint32_t* at, std::uint32_t code) { atomicMax(at, code); }
};

constexpr unsigned kWarpsPerBlock = 4;

__global__ void __launch_bounds__(32 * kWarpsPerBlock) decode_kernel(const DecodeArgs a) {
  const std::uint32_t task = blockIdx.x * kWarpsPerBlock + threadIdx.x / 32;
  if (task >= a.task_count) return;  // the whole warp leaves together
  WarpTeam team{threadIdx.x % 32};
  decode_task(team, a, task);
}

}  // namespace

cudaError_t launch_decode(const DecodeArgs& args, cudaStream_t stream) {
  if (args.task_count == 0) return cudaSuccess;
  const unsigned blocks = (args.task_count + kWarpsPerBlock - 1) / kWarpsPerBlock;
  decode_kernel<<<blocks, 32 * kWarpsPerBlock, 0, stream>>>(args);
  return cudaGetLastError();
}

}  // namespace kvstream::gpu
