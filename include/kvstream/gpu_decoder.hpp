// Decoding chunks on an NVIDIA GPU, straight into device KV memory (contiguous or paged), with the
// same output as the CPU decoder bit for bit. Built only when a CUDA toolkit is found
// (target kvstream::cuda); this header needs no CUDA headers.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "kvstream/codec.hpp"
#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream {

// How many CUDA devices this process can use; an error saying why when it can use none (no
// driver, no device), so that callers and tests can say why they skip.
Expected<int> gpu_device_count();

// One decoder per CUDA stream: it owns the stream, the format's table bank on the device and
// scratch memory that grows to the largest chunk seen. Not thread-safe.
class GpuDecoder {
 public:
  static Expected<GpuDecoder> create(int device = 0);
  ~GpuDecoder();
  GpuDecoder(GpuDecoder&&) noexcept;
  GpuDecoder& operator=(GpuDecoder&&) noexcept;
  GpuDecoder(const GpuDecoder&) = delete;
  GpuDecoder& operator=(const GpuDecoder&) = delete;

  // Decodes `chunk` (host memory) into tokens [token_begin, +count) of `dst`, a view whose
  // buffer, pools and block table entries address device memory (the pool list and the block
  // table themselves are host arrays, as KvView::paged keeps them). Validation is the CPU
  // decoder's; a hostile chunk that passes it but fails while decoding leaves those tokens
  // unspecified and says so. A transform-coded chunk needs the profile holding its transform,
  // as decode_chunk does. Returns when the tokens are written.
  Status decode(std::span<const std::byte> chunk, const KvView& dst,
                const CodecProfile* profile = nullptr);

  // decode() in three steps, for pipelines and benchmarks: stage() validates the chunk and copies
  // it and its decode tables to the device; launch() enqueues the decode of the staged chunk on
  // the decoder's stream (it may be launched again); wait() waits for it and reports its status.
  Status stage(std::span<const std::byte> chunk, const CodecProfile* profile = nullptr);
  Status launch(const KvView& dst);
  Status wait();
  // Whether the launched decode has completed, without blocking (cudaStreamQuery); wait() then
  // returns at once with its status.
  Expected<bool> finished();
  // After wait(): how long the last launch's kernels ran on the device (CUDA events), in ms.
  Expected<double> decode_ms();

  std::string device_name() const;
  void* native_stream() const noexcept;  // the cudaStream_t decodes run on

  struct Impl;  // its state (gpu_decoder.cpp)

 private:
  explicit GpuDecoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Chunks decoded on `depth` GpuDecoders, one CUDA stream each (cuda/decode_ring.hpp): a
// receiver hands over each chunk as it lands (its memory is free again once submit returns)
// and goes on receiving while earlier chunks copy and decode; it waits only when every stream
// holds a chunk. ready(id, times) reports decoded chunks in the order they were submitted,
// with what each cost. The first failed decode ends the ring (its error names the chunk);
// chunks reported before stay valid.
struct DecodeTimes {
  double staging_ms = 0;  // on the host: validation, planning and the copy to the device
  double kernel_ms = 0;   // on the device (CUDA events)
};
class GpuDecodeRing {
 public:
  using Ready = std::function<void(std::size_t id, const DecodeTimes& times)>;
  static Expected<GpuDecodeRing> create(int device = 0, std::size_t depth = 3);
  ~GpuDecodeRing();
  GpuDecodeRing(GpuDecodeRing&&) noexcept;
  GpuDecodeRing& operator=(GpuDecodeRing&&) noexcept;
  GpuDecodeRing(const GpuDecodeRing&) = delete;
  GpuDecodeRing& operator=(const GpuDecodeRing&) = delete;

  Status submit(std::size_t id, std::span<const std::byte> chunk, const KvView& dst,
                const CodecProfile* profile, const Ready& ready);
  Status poll(const Ready& ready);   // reports what has finished; does not block
  Status drain(const Ready& ready);  // waits for everything submitted

  struct Impl;

 private:
  explicit GpuDecodeRing(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// `bytes` of pinned (page-locked) host memory on `device`'s context, zeroed, freed with the last
// owner: receive slots from which a chunk's copy to the device is a DMA.
Expected<std::shared_ptr<std::byte[]>> allocate_pinned(std::size_t bytes, int device = 0);

// A contiguous KV cache in device memory (cudaMalloc on `device`), for a decoder to write into:
// the receiving end of a stream decoded on the GPU. Move-only; frees its memory.
class DeviceKvBuffer {
 public:
  static Expected<DeviceKvBuffer> create(const KvLayout& layout, int device = 0);
  ~DeviceKvBuffer();
  DeviceKvBuffer(DeviceKvBuffer&&) noexcept;
  DeviceKvBuffer& operator=(DeviceKvBuffer&&) noexcept;
  DeviceKvBuffer(const DeviceKvBuffer&) = delete;
  DeviceKvBuffer& operator=(const DeviceKvBuffer&) = delete;
  // A view of device memory: for GpuDecoder, never for host code to read.
  const KvView& view() const noexcept;

  struct Impl;

 private:
  explicit DeviceKvBuffer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstream
