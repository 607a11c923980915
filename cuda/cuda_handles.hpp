// RAII owners of CUDA runtime objects, and CUDA errors as Status naming the call that failed.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <string>
#include <utility>

#include "kvstream/status.hpp"

namespace kvstream::gpu {

inline Status cuda_status(cudaError_t e, const char* call) {
  if (e == cudaSuccess) return Status::ok();
  const Errc code = e == cudaErrorMemoryAllocation ? Errc::resource_exhausted
                    : e == cudaErrorNoDevice || e == cudaErrorInsufficientDriver ? Errc::unsupported
                                                                                 : Errc::internal;
  return Status(
      code, std::string(call) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

#define KVS_CUDA(call) KVS_RETURN_IF_ERROR(::kvstream::gpu::cuda_status((call), #call))

// A move-only owner of one CUDA object of type T, released by Traits::release.
template <typename T, typename Traits>
class CudaHandle {
 public:
  CudaHandle() = default;
  ~CudaHandle() { reset(); }
  CudaHandle(CudaHandle&& o) noexcept : h_(std::exchange(o.h_, T{})) {}
  CudaHandle& operator=(CudaHandle&& o) noexcept {
    if (this != &o) {
      reset();
      h_ = std::exchange(o.h_, T{});
    }
    return *this;
  }
  CudaHandle(const CudaHandle&) = delete;
  CudaHandle& operator=(const CudaHandle&) = delete;

  T get() const noexcept { return h_; }

 protected:
  void reset() noexcept {
    if (h_ != T{}) Traits::release(h_);
    h_ = T{};
  }
  T h_{};
};

struct DeviceMemory {
  static cudaError_t allocate(void** p, std::size_t n) { return cudaMalloc(p, n); }
  static void release(void* p) { cudaFree(p); }
  static constexpr const char* kAllocate = "cudaMalloc";
};
struct PinnedMemory {  // page-locked host memory: what asynchronous copies need
  static cudaError_t allocate(void** p, std::size_t n) { return cudaMallocHost(p, n); }
  static void release(void* p) { cudaFreeHost(p); }
  static constexpr const char* kAllocate = "cudaMallocHost";
};

// Memory that grows on demand and never shrinks.
template <typename Memory>
class CudaBuffer : public CudaHandle<void*, Memory> {
 public:
  // Ensures room for `bytes`; the contents are lost when it grows.
  Status reserve(std::size_t bytes) {
    if (bytes <= n_ && this->h_ != nullptr) return Status::ok();
    this->reset();
    n_ = 0;
    KVS_RETURN_IF_ERROR(
        cuda_status(Memory::allocate(&this->h_, bytes == 0 ? 1 : bytes), Memory::kAllocate));
    n_ = bytes;
    return Status::ok();
  }
  template <typename T = void>
  T* get() const noexcept {
    return static_cast<T*>(this->h_);
  }
  std::size_t size() const noexcept { return n_; }

 private:
  std::size_t n_ = 0;
};
using DeviceBuffer = CudaBuffer<DeviceMemory>;
using PinnedBuffer = CudaBuffer<PinnedMemory>;

struct StreamTraits {
  static void release(cudaStream_t s) { cudaStreamDestroy(s); }
};
class Stream : public CudaHandle<cudaStream_t, StreamTraits> {
 public:
  static Expected<Stream> create() {
    Stream s;
    KVS_CUDA(cudaStreamCreateWithFlags(&s.h_, cudaStreamNonBlocking));
    return s;
  }
};

struct EventTraits {
  static void release(cudaEvent_t e) { cudaEventDestroy(e); }
};
class Event : public CudaHandle<cudaEvent_t, EventTraits> {
 public:
  static Expected<Event> create() {
    Event e;
    KVS_CUDA(cudaEventCreate(&e.h_));
    return e;
  }
};

// Checks that this process can use CUDA device `device` and makes it the thread's current one.
Status use_device(int device);

}  // namespace kvstream::gpu
