// Context archives: a context's tokens and its KV cache encoded at levels 0..L, chunk by chunk,
// in one file with an index (format: codec/FORMAT.md, "Context archive").
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvstream/codec.hpp"
#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream {

struct ArchiveInfo {
  KvLayout layout;  // tokens = the context's length
  std::uint32_t chunk_tokens = 0;
  std::uint32_t chunk_count = 0;
  std::uint32_t levels = 0;  // levels 0..levels-1 are stored
};

struct ArchiveOptions {
  std::uint32_t chunk_tokens = 256;
  std::uint8_t max_level = 5;
  const CodecProfile* profile = nullptr;  // null: the built-in rule
  // Level 0 as verbatim values (EncodeOptions::verbatim): for receivers that copy faster than
  // they decode.
  bool verbatim_level0 = false;
};

// Encodes every chunk of `kv` (all its tokens) at levels 0..max_level and writes the archive
// atomically: to `path`.tmp.<pid>, then renamed over `path`.
Status write_archive(const std::string& path, const KvView& kv,
                     std::span<const std::int32_t> tokens, const ArchiveOptions& options);

// Reads an archive's header, tokens and index up front (all checked), and chunks on demand.
// Not thread-safe: one reader per thread.
class ArchiveReader {
 public:
  static Expected<ArchiveReader> open(const std::string& path);
  ArchiveReader(ArchiveReader&& other) noexcept;
  ArchiveReader& operator=(ArchiveReader&& other) noexcept;
  ArchiveReader(const ArchiveReader&) = delete;
  ArchiveReader& operator=(const ArchiveReader&) = delete;
  ~ArchiveReader();

  const ArchiveInfo& info() const noexcept { return info_; }
  const std::vector<std::int32_t>& tokens() const noexcept { return tokens_; }
  // Size in bytes of chunk `index` at `level`.
  std::uint32_t chunk_size(std::uint32_t index, std::uint32_t level) const noexcept {
    return entries_[std::size_t{index} * info_.levels + level].size;
  }
  // Reads chunk `index` at `level` into `out`, checking its checksum.
  Status read_chunk(std::uint32_t index, std::uint32_t level, std::vector<std::byte>& out) const;

 private:
  ArchiveReader() = default;
  struct Entry {
    std::uint64_t offset;
    std::uint32_t size, crc;
  };
  int fd_ = -1;
  std::string path_;
  ArchiveInfo info_;
  std::vector<std::int32_t> tokens_;
  std::vector<Entry> entries_;
};

}  // namespace kvstream
