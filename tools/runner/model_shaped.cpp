// Tiling a small model's real KV into a large model's shape.
#include "model_shaped.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "runner.hpp"
#include "sampling.hpp"

namespace kvstream::runner {

Expected<KvBuffer> model_shaped_kv(const Model& model, const KvLayout& shape,
                                   std::uint32_t contexts, std::uint64_t seed) {
  KVS_RETURN_IF_ERROR(shape.validate().with_context("model-shaped cache"));
  if (contexts == 0) return Status(Errc::invalid_argument, "model-shaped cache: no contexts");
  const std::uint32_t length = std::min(shape.tokens, model.config().seq_len);
  const KvLayout small = model.kv_layout(length, DType::f32);
  std::vector<KvBuffer> kv;
  for (std::uint32_t i = 0; i < contexts; ++i) {
    Runner sampling(model);
    Sampler sampler(seed + i, 0, 1.0f, 0.9f);
    KVS_ASSIGN_OR_RETURN(const auto tokens, sample_context(sampling, sampler, length));
    KVS_ASSIGN_OR_RETURN(KvBuffer one, KvBuffer::create(small));
    Runner capture(model);
    KVS_RETURN_IF_ERROR(capture_kv(capture, tokens, one.view()));
    kv.push_back(std::move(one));
  }
  KvLayout wide = shape;
  wide.dtype = DType::f32;
  KVS_ASSIGN_OR_RETURN(KvBuffer out, KvBuffer::create(wide));
  const std::size_t width = small.row_values();
  for (std::uint32_t l = 0; l < wide.layers; ++l) {
    for (KvPart p : {KvPart::key, KvPart::value}) {
      for (std::uint32_t t = 0; t < wide.tokens; ++t) {
        auto* row = reinterpret_cast<float*>(out.view().row(l, p, t));
        for (std::size_t c = 0; c < wide.row_values(); c += width) {
          // Neighbouring blocks and layers come from different contexts and layers, so that no
          // two blocks of a row repeat each other.
          const std::size_t block = c / width;
          const KvBuffer& src = kv[(block + 3 * l) % contexts];
          const auto* from = reinterpret_cast<const float*>(src.view().row(
              static_cast<std::uint32_t>((l + block) % small.layers), p, t % length));
          std::memcpy(row + c, from, std::min(width, wide.row_values() - c) * sizeof(float));
        }
      }
    }
  }
  if (shape.dtype == DType::f32) return out;
  KVS_ASSIGN_OR_RETURN(KvBuffer converted, KvBuffer::create(shape));
  KVS_RETURN_IF_ERROR(copy_kv(out.view(), converted.view()));
  return converted;
}

}  // namespace kvstream::runner
