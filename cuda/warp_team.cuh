// The logic headers' team on the device (decode_logic.hpp, encode_logic.hpp): the lanes are the
// warp's threads, as HostTeam's are the iterations of a loop on the CPU.
#pragma once

#include <cstdint>

namespace kvstream::gpu {

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
  template <class Get, class Src, class Put>
  __device__ void shuffle(std::uint32_t width, Get&& get, Src&& src, Put&& put) {
    put(lane, __shfl_sync(0xFFFFFFFFu, get(lane), src(lane), static_cast<int>(width)));
  }
  __device__ void sync() { __syncwarp(); }
  __device__ void report(std::uint32_t* at, std::uint32_t code) { atomicMax(at, code); }
};

}  // namespace kvstream::gpu
