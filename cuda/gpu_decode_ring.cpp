// GpuDecodeRing: decode_ring.hpp over GpuDecoders.
#include "decode_ring.hpp"
#include "kvstream/gpu_decoder.hpp"

namespace kvstream {

struct GpuDecodeRing::Impl {
  explicit Impl(std::vector<GpuDecoder> decoders) : ring(std::move(decoders)) {}
  gpu::DecodeRing<GpuDecoder> ring;
};

Expected<GpuDecodeRing> GpuDecodeRing::create(int device, std::size_t depth) {
  if (depth == 0) return Status(Errc::invalid_argument, "a decode ring of depth 0");
  std::vector<GpuDecoder> decoders;
  decoders.reserve(depth);
  for (std::size_t i = 0; i < depth; ++i) {
    KVS_ASSIGN_OR_RETURN(GpuDecoder d, GpuDecoder::create(device));
    decoders.push_back(std::move(d));
  }
  return GpuDecodeRing(std::make_unique<Impl>(std::move(decoders)));
}

GpuDecodeRing::GpuDecodeRing(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuDecodeRing::~GpuDecodeRing() = default;
GpuDecodeRing::GpuDecodeRing(GpuDecodeRing&&) noexcept = default;
GpuDecodeRing& GpuDecodeRing::operator=(GpuDecodeRing&&) noexcept = default;

Status GpuDecodeRing::submit(std::size_t id, std::span<const std::byte> chunk, const KvView& dst,
                             const CodecProfile* profile, const Ready& ready) {
  return impl_->ring.submit(id, chunk, dst, profile, ready);
}

Status GpuDecodeRing::poll(const Ready& ready) {
  return impl_->ring.poll(ready);
}

Status GpuDecodeRing::drain(const Ready& ready) {
  return impl_->ring.drain(ready);
}

}  // namespace kvstream
