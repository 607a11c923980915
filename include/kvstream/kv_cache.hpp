// KV cache layouts and views: how kvstream sees an engine's KV memory without owning it.
//
// Two layouts are supported, both with one token's [kv_head][head_dim] row contiguous:
//  - contiguous: one buffer laid out [layer][K|V][token][kv_head][head_dim];
//  - paged: per (layer, K|V) a pool of fixed-size token blocks [block][token_in_block][head][dim]
//    and a block table mapping the context's logical block i to a physical block (vLLM's cache).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kvstream/status.hpp"

namespace kvstream {

enum class DType : std::uint8_t { f32 = 0, f16 = 1, bf16 = 2 };

constexpr std::size_t dtype_size(DType t) noexcept {
  return t == DType::f32 ? 4 : 2;
}
std::string_view dtype_name(DType t) noexcept;
Expected<DType> parse_dtype(std::string_view name);  // "f32"/"fp32", "f16"/"fp16", "bf16"

enum class KvPart : std::uint8_t { key = 0, value = 1 };

struct KvLayout {
  std::uint32_t layers = 0;
  std::uint32_t kv_heads = 0;
  std::uint32_t head_dim = 0;
  DType dtype = DType::f16;
  std::uint32_t tokens = 0;

  // Values in one token's row of one (layer, K|V): kv_heads * head_dim.
  std::size_t row_values() const noexcept { return std::size_t{kv_heads} * head_dim; }
  std::size_t row_bytes() const noexcept { return row_values() * dtype_size(dtype); }
  // All K and V values of all tokens: the size of the contiguous layout.
  std::size_t total_values() const noexcept {
    return 2 * std::size_t{layers} * tokens * row_values();
  }
  std::size_t total_bytes() const noexcept { return total_values() * dtype_size(dtype); }

  // Rejects zero dimensions and sizes that overflow.
  Status validate() const;
  bool same_shape(const KvLayout& o) const noexcept {
    return layers == o.layers && kv_heads == o.kv_heads && head_dim == o.head_dim;
  }
};

// A non-owning, validated window onto KV memory. Cheap to copy except for the paged layout's
// pool list and block table, which the view copies so that it never dangles into caller arrays.
// Thread-safety: a view is immutable; concurrent readers are fine, writers to overlapping tokens
// must be serialised by the caller.
class KvView {
 public:
  KvView() = default;

  // `base` holds layout.total_bytes() bytes laid out [layer][K|V][token][head][dim].
  static Expected<KvView> contiguous(void* base, std::size_t bytes, const KvLayout& layout);

  // `pools` has 2 * layers entries ordered K0, V0, K1, V1, ...; each pool holds `pool_bytes`
  // bytes of blocks of `block_size` tokens. `block_table[i]` is the pool block that holds
  // tokens [i * block_size, (i + 1) * block_size) of the context.
  static Expected<KvView> paged(std::span<void* const> pools, std::size_t pool_bytes,
                                std::uint32_t block_size,
                                std::span<const std::uint32_t> block_table, const KvLayout& layout);

  const KvLayout& layout() const noexcept { return layout_; }
  bool is_paged() const noexcept { return block_size_ != 0; }
  bool empty() const noexcept { return layout_.tokens == 0 || layout_.layers == 0; }

  // One token's [kv_head][head_dim] row. Preconditions (unchecked on this hot path; callers
  // validate ranges once): layer < layers, token < tokens.
  std::byte* row(std::uint32_t layer, KvPart part, std::uint32_t token) const noexcept {
    const std::size_t lp = 2 * std::size_t{layer} + static_cast<std::size_t>(part);
    if (block_size_ == 0) {
      return base_ + (lp * layout_.tokens + token) * layout_.row_bytes();
    }
    const std::size_t block = block_table_[token / block_size_];
    return pools_[lp] + (block * block_size_ + token % block_size_) * layout_.row_bytes();
  }

  // The view's addressing as row() uses it, for decoders that address the memory elsewhere (a
  // GPU kernel, when the view holds device pointers): the contiguous buffer (null when paged),
  // and the paged layout's pools, block table and block size (empty and 0 when contiguous).
  std::byte* base() const noexcept { return base_; }
  std::span<std::byte* const> pools() const noexcept { return pools_; }
  std::span<const std::uint32_t> block_table() const noexcept { return block_table_; }
  std::uint32_t block_size() const noexcept { return block_size_; }

  // Checks that [begin, begin + count) lies inside the view.
  Status check_range(std::uint32_t begin, std::uint32_t count) const;

 private:
  KvLayout layout_{};
  std::byte* base_ = nullptr;
  std::vector<std::byte*> pools_;
  std::vector<std::uint32_t> block_table_;
  std::uint32_t block_size_ = 0;
};

// Owning, zero-initialised contiguous KV memory; the runner and tests use it.
// Move-only: the view points into the storage, which a move keeps and a copy would not.
class KvBuffer {
 public:
  static Expected<KvBuffer> create(const KvLayout& layout);
  KvBuffer(KvBuffer&&) noexcept = default;
  KvBuffer& operator=(KvBuffer&&) noexcept = default;
  KvBuffer(const KvBuffer&) = delete;
  KvBuffer& operator=(const KvBuffer&) = delete;

  const KvLayout& layout() const noexcept { return layout_; }
  KvView view() const noexcept { return view_; }
  std::span<std::byte> bytes() noexcept { return storage_; }
  std::span<const std::byte> bytes() const noexcept { return storage_; }

 private:
  KvBuffer() = default;
  KvLayout layout_{};
  std::vector<std::byte> storage_;
  KvView view_;
};

// Owning, zero-initialised paged KV memory: one pool per (layer, K|V) of `pool_blocks` blocks,
// and a block table of the context's blocks. For tests and tools; engines bring their own.
class PagedKvBuffer {
 public:
  static Expected<PagedKvBuffer> create(const KvLayout& layout, std::uint32_t block_size,
                                        std::uint32_t pool_blocks,
                                        std::span<const std::uint32_t> block_table);
  PagedKvBuffer(PagedKvBuffer&&) noexcept = default;
  PagedKvBuffer& operator=(PagedKvBuffer&&) noexcept = default;
  PagedKvBuffer(const PagedKvBuffer&) = delete;
  PagedKvBuffer& operator=(const PagedKvBuffer&) = delete;

  const KvLayout& layout() const noexcept { return view_.layout(); }
  KvView view() const noexcept { return view_; }

 private:
  PagedKvBuffer() = default;
  std::vector<std::vector<std::byte>> pools_;
  KvView view_;
};

// Copies tokens [src_begin, src_begin + count) of every layer and K/V from `src` to tokens
// [dst_begin, dst_begin + count) of `dst`, converting dtype with round-to-nearest-even where
// the destination is narrower. Layers, heads and head_dim must match.
Status copy_tokens(const KvView& src, std::uint32_t src_begin, const KvView& dst,
                   std::uint32_t dst_begin, std::uint32_t count);

// Copies a whole view onto another of the same shape and token count.
Status copy_kv(const KvView& src, const KvView& dst);

}  // namespace kvstream
