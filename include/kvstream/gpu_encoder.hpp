// Encoding chunks on an NVIDIA GPU from device KV memory (contiguous or paged): push mode, where a
// prefill node encodes the level each receiver asks for without copying its cache to the host.
// The chunk's bytes are encode_chunk's, byte for byte. Built only when a CUDA toolkit is found
// (target kvstream::cuda); this header needs no CUDA headers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvstream/codec.hpp"
#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream {

// One encoder per CUDA stream: it owns the stream, the format's tables on the device and
// scratch memory that grows to the largest chunk seen. Not thread-safe.
class GpuEncoder {
 public:
  static Expected<GpuEncoder> create(int device = 0);
  ~GpuEncoder();
  GpuEncoder(GpuEncoder&&) noexcept;
  GpuEncoder& operator=(GpuEncoder&&) noexcept;
  GpuEncoder(const GpuEncoder&) = delete;
  GpuEncoder& operator=(const GpuEncoder&) = delete;

  // As encode_chunk, from `src`, a view whose buffer, pools and block table entries address
  // device memory (the pool list and block table themselves are host arrays, as KvView::paged
  // keeps them), into `out` in host memory. The statistics come back to the host once, for
  // the choices the CPU encoder makes there; the chunk is assembled on the host.
  Status encode(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                const EncodeOptions& options, std::vector<std::byte>& out);

  // After encode(): how long its kernels and copies ran on the device (CUDA events around
  // each of its two device phases, summed), in ms.
  double device_ms() const noexcept;

  std::string device_name() const;

  struct Impl;  // its state (gpu_encoder.cpp)

 private:
  explicit GpuEncoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstream
