// libFuzzer target: any byte string handed to the chunk decoder must give a clean error or a
// clean decode, never a crash, an out-of-bounds access or undefined behaviour. Each input is
// decoded as is (the checksums reject almost every mutation) and again with its checksums
// recomputed, so that mutations reach the structural checks and the entropy decoder. A
// transform-coded chunk gets the test transform of its shape (and, in the second pass, that
// transform's id), so that the synthesis runs on whatever coefficients the mutation left.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <span>
#include <tuple>
#include <vector>

#include "crc32c.hpp"
#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"

namespace {

// The test transform profile of a shape (golden files use seed 3), for small shapes only.
const kvstream::CodecProfile* profile_for(std::uint32_t layers, std::uint32_t heads,
                                          std::uint32_t dim) {
  if (layers == 0 || layers > 8 || heads == 0 || dim == 0 || std::uint64_t{heads} * dim > 64 ||
      dim % 2 != 0) {
    return nullptr;  // a shape the header check refuses, or too large to fuzz quickly
  }
  static std::map<std::tuple<std::uint32_t, std::uint32_t, std::uint32_t>, kvstream::CodecProfile>
      cache;
  const auto key = std::make_tuple(layers, heads, dim);
  auto it = cache.find(key);
  if (it == cache.end()) {
    it = cache.emplace(key, kvstream::testing_data::make_transform_profile(layers, heads, dim, 3))
             .first;
  }
  return &it->second;
}

void decode(std::span<const std::byte> chunk, kvstream::DType dtype) {
  const auto info = kvstream::read_chunk_info(chunk);
  if (!info) return;
  // Keep destinations small: the fuzzer explores the decoder, not the allocator.
  const std::uint64_t values = std::uint64_t{2} * info->layers * info->kv_heads * info->head_dim *
                               (std::uint64_t{info->token_begin} + info->token_count);
  if (values > (1u << 22)) return;
  const kvstream::KvLayout layout{info->layers, info->kv_heads, info->head_dim, dtype,
                                  info->token_begin + info->token_count};
  auto buffer = kvstream::KvBuffer::create(layout);
  if (!buffer) return;
  const kvstream::CodecProfile* profile =
      info->transformed ? profile_for(info->layers, info->kv_heads, info->head_dim) : nullptr;
  kvstream::decode_chunk(chunk, buffer->view(), profile).ignore();
}

template <typename T>
T load(const std::vector<std::byte>& b, std::size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof v);
  return v;
}

// Rewrites the segment and header checksums in place where the layout allows it.
void refresh_checksums(std::vector<std::byte>& c) {
  if (c.size() < 48) return;
  const auto segments = load<std::uint32_t>(c, 32);
  if (segments > (c.size() - 48) / 12) return;
  for (std::uint32_t i = 0; i < segments; ++i) {
    const std::size_t entry = 48 + std::size_t{12} * i;
    const auto off = load<std::uint32_t>(c, entry);
    const auto size = load<std::uint32_t>(c, entry + 4);
    if (off > c.size() || size > c.size() - off) continue;
    const std::uint32_t crc = kvstream::codec::crc32c(std::span(c).subspan(off, size));
    std::memcpy(c.data() + entry + 8, &crc, 4);
  }
  // A transform-coded chunk names the transform the fuzzer will give it.
  if ((load<std::uint16_t>(c, 10) & 1) != 0) {
    if (const auto* p = profile_for(load<std::uint32_t>(c, 12), load<std::uint32_t>(c, 16),
                                    load<std::uint32_t>(c, 20))) {
      const std::uint32_t id = p->transform_id();
      std::memcpy(c.data() + 40, &id, 4);
    }
  }
  std::uint32_t crc = kvstream::codec::crc32c(std::span(c).first(44));
  crc = kvstream::codec::crc32c(std::span(c).subspan(48, std::size_t{12} * segments), crc);
  std::memcpy(c.data() + 44, &crc, 4);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The last byte picks the destination dtype, so conversions are explored too.
  const auto dtype = static_cast<kvstream::DType>(data[size - 1] % 3);
  const auto chunk = std::as_bytes(std::span(data, size));
  decode(chunk, dtype);
  std::vector<std::byte> fixed(chunk.begin(), chunk.end());
  refresh_checksums(fixed);
  decode(fixed, dtype);
  return 0;
}
