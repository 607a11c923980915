// Device memory for a KV cache (DeviceKvBuffer), and pinned host memory for receive slots.
#include <cstring>

#include "cuda_handles.hpp"
#include "kvstream/gpu_decoder.hpp"

namespace kvstream {

struct DeviceKvBuffer::Impl {
  gpu::DeviceBuffer memory;
  KvView view;
};

Expected<DeviceKvBuffer> DeviceKvBuffer::create(const KvLayout& layout, int device) {
  KVS_RETURN_IF_ERROR(layout.validate());
  KVS_RETURN_IF_ERROR(gpu::use_device(device));
  auto impl = std::make_unique<Impl>();
  KVS_RETURN_IF_ERROR(impl->memory.reserve(layout.total_bytes()));
  KVS_ASSIGN_OR_RETURN(impl->view,
                       KvView::contiguous(impl->memory.get(), layout.total_bytes(), layout));
  return DeviceKvBuffer(std::move(impl));
}

DeviceKvBuffer::DeviceKvBuffer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DeviceKvBuffer::~DeviceKvBuffer() = default;
DeviceKvBuffer::DeviceKvBuffer(DeviceKvBuffer&&) noexcept = default;
DeviceKvBuffer& DeviceKvBuffer::operator=(DeviceKvBuffer&&) noexcept = default;

const KvView& DeviceKvBuffer::view() const noexcept {
  return impl_->view;
}

Expected<std::shared_ptr<std::byte[]>> allocate_pinned(std::size_t bytes, int device) {
  KVS_RETURN_IF_ERROR(gpu::use_device(device));
  void* p = nullptr;
  KVS_CUDA(cudaMallocHost(&p, bytes == 0 ? 1 : bytes));
  std::memset(p, 0, bytes);
  return std::shared_ptr<std::byte[]>(static_cast<std::byte*>(p),
                                      [](std::byte* q) { cudaFreeHost(q); });
}

}  // namespace kvstream
