#include "kvstream/kv_cache.hpp"

#include <fmt/format.h>

#include <cstring>
#include <limits>

#include "kvstream/half.hpp"

namespace kvstream {

std::string_view dtype_name(DType t) noexcept {
  switch (t) {
    case DType::f32:
      return "f32";
    case DType::f16:
      return "f16";
    case DType::bf16:
      return "bf16";
  }
  return "unknown";
}

Expected<DType> parse_dtype(std::string_view name) {
  if (name == "f32" || name == "fp32" || name == "float32") return DType::f32;
  if (name == "f16" || name == "fp16" || name == "float16") return DType::f16;
  if (name == "bf16" || name == "bfloat16") return DType::bf16;
  return Status(Errc::invalid_argument,
                fmt::format("unknown dtype '{}' (expected f32, f16 or bf16)", name));
}

Status KvLayout::validate() const {
  if (layers == 0 || kv_heads == 0 || head_dim == 0) {
    return Status(
        Errc::invalid_argument,
        fmt::format("KV layout has a zero dimension (layers {}, kv_heads {}, head_dim {})", layers,
                    kv_heads, head_dim));
  }
  if (dtype != DType::f32 && dtype != DType::f16 && dtype != DType::bf16) {
    return Status(Errc::invalid_argument, "KV layout has an unknown dtype");
  }
  // Every byte offset of the view must fit in size_t; bound the product before computing it.
  constexpr auto kMax = std::numeric_limits<std::size_t>::max() / 8;
  std::size_t acc = 2 * std::size_t{layers};
  for (std::size_t f :
       {std::size_t{kv_heads}, std::size_t{head_dim}, std::size_t{tokens == 0 ? 1u : tokens}}) {
    if (acc > kMax / f) return Status(Errc::invalid_argument, "KV layout size overflows");
    acc *= f;
  }
  return Status::ok();
}

Status KvView::check_range(std::uint32_t begin, std::uint32_t count) const {
  if (std::uint64_t{begin} + count > layout_.tokens) {
    return Status(Errc::out_of_range,
                  fmt::format("tokens [{}, {}) outside a view of {} tokens", begin,
                              std::uint64_t{begin} + count, layout_.tokens));
  }
  return Status::ok();
}

namespace {

bool aligned_for(const void* p, DType t) {
  return reinterpret_cast<std::uintptr_t>(p) % dtype_size(t) == 0;
}

}  // namespace

Expected<KvView> KvView::contiguous(void* base, std::size_t bytes, const KvLayout& layout) {
  KVS_RETURN_IF_ERROR(layout.validate());
  if (base == nullptr && layout.tokens != 0) {
    return Status(Errc::invalid_argument, "contiguous KV view over a null pointer");
  }
  if (bytes < layout.total_bytes()) {
    return Status(Errc::invalid_argument,
                  fmt::format("contiguous KV view needs {} bytes, buffer has {}",
                              layout.total_bytes(), bytes));
  }
  if (!aligned_for(base, layout.dtype)) {
    return Status(Errc::invalid_argument, "contiguous KV view base is not aligned to its dtype");
  }
  KvView v;
  v.layout_ = layout;
  v.base_ = static_cast<std::byte*>(base);
  return v;
}

Expected<KvView> KvView::paged(std::span<void* const> pools, std::size_t pool_bytes,
                               std::uint32_t block_size, std::span<const std::uint32_t> block_table,
                               const KvLayout& layout) {
  KVS_RETURN_IF_ERROR(layout.validate());
  if (block_size == 0) return Status(Errc::invalid_argument, "paged KV view with block size 0");
  if (pools.size() != 2 * std::size_t{layout.layers}) {
    return Status(Errc::invalid_argument,
                  fmt::format("paged KV view needs {} pools (K and V per layer), got {}",
                              2 * std::size_t{layout.layers}, pools.size()));
  }
  const std::size_t blocks_needed = (std::size_t{layout.tokens} + block_size - 1) / block_size;
  if (block_table.size() < blocks_needed) {
    return Status(Errc::invalid_argument,
                  fmt::format("paged KV view of {} tokens needs {} table entries, got {}",
                              layout.tokens, blocks_needed, block_table.size()));
  }
  const std::size_t block_bytes = std::size_t{block_size} * layout.row_bytes();
  const std::size_t pool_blocks = pool_bytes / block_bytes;
  for (std::size_t i = 0; i < blocks_needed; ++i) {
    if (block_table[i] >= pool_blocks) {
      return Status(Errc::out_of_range,
                    fmt::format("block table entry {} is block {}, but pools hold {} blocks", i,
                                block_table[i], pool_blocks));
    }
  }
  KvView v;
  v.layout_ = layout;
  v.block_size_ = block_size;
  v.block_table_.assign(block_table.begin(), block_table.begin() + blocks_needed);
  v.pools_.reserve(pools.size());
  for (std::size_t i = 0; i < pools.size(); ++i) {
    if (pools[i] == nullptr || !aligned_for(pools[i], layout.dtype)) {
      return Status(Errc::invalid_argument,
                    fmt::format("paged KV pool {} (layer {}, {}) is null or misaligned", i, i / 2,
                                i % 2 == 0 ? "K" : "V"));
    }
    v.pools_.push_back(static_cast<std::byte*>(pools[i]));
  }
  return v;
}

Expected<KvBuffer> KvBuffer::create(const KvLayout& layout) {
  KVS_RETURN_IF_ERROR(layout.validate());
  KvBuffer b;
  b.layout_ = layout;
  b.storage_.resize(layout.total_bytes());
  KVS_ASSIGN_OR_RETURN(b.view_, KvView::contiguous(b.storage_.data(), b.storage_.size(), layout));
  return b;
}

Expected<PagedKvBuffer> PagedKvBuffer::create(const KvLayout& layout, std::uint32_t block_size,
                                              std::uint32_t pool_blocks,
                                              std::span<const std::uint32_t> block_table) {
  KVS_RETURN_IF_ERROR(layout.validate());
  if (block_size == 0 || pool_blocks == 0) {
    return Status(Errc::invalid_argument, "paged KV buffer needs a non-zero block size and count");
  }
  PagedKvBuffer b;
  const std::size_t pool_bytes = std::size_t{pool_blocks} * block_size * layout.row_bytes();
  b.pools_.resize(2 * std::size_t{layout.layers});
  std::vector<void*> pointers;
  for (auto& pool : b.pools_) {
    pool.resize(pool_bytes);
    pointers.push_back(pool.data());
  }
  KVS_ASSIGN_OR_RETURN(b.view_,
                       KvView::paged(pointers, pool_bytes, block_size, block_table, layout));
  return b;
}

namespace {

float load_value(const std::byte* p, DType t) {
  switch (t) {
    case DType::f32: {
      float f;
      std::memcpy(&f, p, sizeof f);
      return f;
    }
    case DType::f16:
    case DType::bf16: {
      std::uint16_t h;
      std::memcpy(&h, p, sizeof h);
      return t == DType::f16 ? half_to_float(h) : bf16_to_float(h);
    }
  }
  return 0.0f;
}

void store_value(std::byte* p, DType t, float f) {
  switch (t) {
    case DType::f32:
      std::memcpy(p, &f, sizeof f);
      return;
    case DType::f16:
    case DType::bf16: {
      const std::uint16_t h = t == DType::f16 ? float_to_half(f) : float_to_bf16(f);
      std::memcpy(p, &h, sizeof h);
      return;
    }
  }
}

void convert_row(const std::byte* src, DType st, std::byte* dst, DType dt, std::size_t n) {
  const std::size_t ss = dtype_size(st);
  const std::size_t ds = dtype_size(dt);
  for (std::size_t i = 0; i < n; ++i)
    store_value(dst + i * ds, dt, load_value(src + i * ss, st));
}

}  // namespace

Status copy_tokens(const KvView& src, std::uint32_t src_begin, const KvView& dst,
                   std::uint32_t dst_begin, std::uint32_t count) {
  const KvLayout& sl = src.layout();
  const KvLayout& dl = dst.layout();
  if (!sl.same_shape(dl)) {
    return Status(
        Errc::invalid_argument,
        fmt::format("KV copy between shapes {}x{}x{} and {}x{}x{} (layers x heads x dim)",
                    sl.layers, sl.kv_heads, sl.head_dim, dl.layers, dl.kv_heads, dl.head_dim));
  }
  KVS_RETURN_IF_ERROR(src.check_range(src_begin, count).with_context("KV copy source"));
  KVS_RETURN_IF_ERROR(dst.check_range(dst_begin, count).with_context("KV copy destination"));
  const bool same_dtype = sl.dtype == dl.dtype;
  for (std::uint32_t layer = 0; layer < sl.layers; ++layer) {
    for (KvPart part : {KvPart::key, KvPart::value}) {
      for (std::uint32_t t = 0; t < count; ++t) {
        const std::byte* s = src.row(layer, part, src_begin + t);
        std::byte* d = dst.row(layer, part, dst_begin + t);
        if (same_dtype) {
          std::memmove(d, s, sl.row_bytes());
        } else {
          convert_row(s, sl.dtype, d, dl.dtype, sl.row_values());
        }
      }
    }
  }
  return Status::ok();
}

Status copy_kv(const KvView& src, const KvView& dst) {
  if (src.layout().tokens != dst.layout().tokens) {
    return Status(Errc::invalid_argument, fmt::format("KV copy between views of {} and {} tokens",
                                                      src.layout().tokens, dst.layout().tokens));
  }
  return copy_tokens(src, 0, dst, 0, src.layout().tokens);
}

}  // namespace kvstream
