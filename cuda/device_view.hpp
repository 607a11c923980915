// A KvView's addressing where a kernel runs: the GPU decoder writes through it, the GPU encoder
// reads through it.
#pragma once

#include <cstring>
#include <vector>

#include "cuda_handles.hpp"
#include "decode_plan.hpp"

namespace kvstream::gpu {

// The kernel's ViewDesc of `view` (device memory). A paged view's pool list and block table are
// host arrays: they are copied into `arrays` on `stream` (through `host`, kept between calls),
// and the call returns once the copy is done.
inline Expected<ViewDesc> device_view(const KvView& view, DeviceBuffer& arrays,
                                      std::vector<std::byte>& host, cudaStream_t stream) {
  if (!view.is_paged()) return view_desc(view, nullptr, nullptr);
  const std::size_t pool_bytes = view.pools().size() * sizeof(std::byte*);
  const std::size_t block_bytes = view.block_table().size() * 4;
  host.resize(pool_bytes + block_bytes);
  std::memcpy(host.data(), view.pools().data(), pool_bytes);
  std::memcpy(host.data() + pool_bytes, view.block_table().data(), block_bytes);
  KVS_RETURN_IF_ERROR(arrays.reserve(host.size()));
  KVS_CUDA(cudaMemcpyAsync(arrays.get(), host.data(), host.size(), cudaMemcpyHostToDevice, stream));
  KVS_CUDA(cudaStreamSynchronize(stream));  // `host` is pageable and reused
  return view_desc(view, arrays.get<std::byte* const>(),
                   reinterpret_cast<const std::uint32_t*>(arrays.get<std::byte>() + pool_bytes));
}

}  // namespace kvstream::gpu
