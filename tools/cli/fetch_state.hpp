// What `kvstream fetch` keeps of a stream that broke off, so that `fetch --resume` asks only for
// the chunks still missing: OUT.partial holds the request (context, level), the stream's shape
// and chunk sizes at that level (a stream that changed since cannot be resumed), which chunks
// landed, and the cache with those chunks decoded.
//
// Layout (little-endian): "KVSPART1"; u16 context length, its bytes; u32 level; u32 layers,
// kv_heads, head_dim, dtype, tokens; u32 chunk_tokens, chunk_count; chunk_count x u32 sizes;
// chunk_count x u8 landed (0 or 1); u64 cache bytes, then the cache.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvstream/kv_cache.hpp"
#include "session.hpp"

namespace kvstream::cli {

struct FetchState {
  std::string context;
  std::uint32_t level = 0;
  KvLayout layout;
  std::uint32_t chunk_tokens = 0;
  std::vector<std::uint32_t> sizes;  // each chunk's size at `level`
  std::vector<std::uint8_t> landed;  // 1: the chunk is decoded in `kv`
  std::vector<std::byte> kv;         // layout.total_bytes()
};

std::string partial_path(const std::string& out);

// Written atomically (no half-written state under the final name).
Status save_fetch_state(const std::string& path, const FetchState& state);
// Errc::not_found when there is none; corrupt_data naming what is wrong.
Expected<FetchState> load_fetch_state(const std::string& path);

// The state of a fetch of `info` (opened for `context`) at `level`: the empty state, and the
// check that a loaded one belongs to the same request and stream (errors name the difference).
FetchState fresh_fetch_state(const std::string& context, std::uint32_t level,
                             const transport::StreamInfo& info, std::vector<std::byte> kv);
Status check_resumable(const FetchState& state, const std::string& context, std::uint32_t level,
                       const transport::StreamInfo& info);

}  // namespace kvstream::cli
