// The KV chunk codec: one token range of a context's KV cache <-> one self-contained chunk
// (format: codec/FORMAT.md). Level 0 is lossless; levels 1.. trade quality for size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream {

inline constexpr std::uint8_t kMaxLevel = 15;

// How an encoder quantizes each lossy level: the quantization step of every (layer, K|V,
// channel group) as a multiple of its channels' spread (a relative step). A segment's C
// channels form `groups` equal groups: channel c is in group c * groups / C (one group per KV
// head is the default calibration). Decoders never need it.
class CodecProfile {
 public:
  // The rule used when no calibrated profile is given: steps grow with depth (shallow layers
  // are more sensitive) and K gets finer steps than V.
  static CodecProfile builtin(std::uint32_t layers, std::uint32_t groups);
  // Explicit relative steps, indexed by index(level, layer, part, group).
  static Expected<CodecProfile> from_steps(std::uint32_t layers, std::uint32_t groups,
                                           std::uint32_t levels, std::vector<float> steps);
  std::size_t index(std::uint32_t level, std::uint32_t layer, KvPart part,
                    std::uint32_t group) const noexcept {
    return ((std::size_t{level - 1} * layers_ + layer) * 2 + static_cast<std::uint32_t>(part)) *
               groups_ +
           group;
  }

  // A profile file (text, see codec/FORMAT.md's "Profiles"); errors name the line.
  static Expected<CodecProfile> load(const std::string& path);
  // Writes atomically: a temporary file renamed over `path`.
  Status save(const std::string& path) const;

  std::uint32_t layers() const noexcept { return layers_; }
  std::uint32_t groups() const noexcept { return groups_; }
  std::uint32_t levels() const noexcept { return levels_; }  // lossy levels: 1..levels()
  float relative_step(std::uint32_t level, std::uint32_t layer, KvPart part,
                      std::uint32_t group) const noexcept {
    return steps_[index(level, layer, part, group)];
  }
  const std::vector<float>& steps() const noexcept { return steps_; }
  // The quality each level was calibrated for (mean KL, nats); empty for the built-in rule.
  const std::vector<double>& targets() const noexcept { return targets_; }
  void set_targets(std::vector<double> targets) { targets_ = std::move(targets); }

 private:
  std::uint32_t layers_ = 0;
  std::uint32_t groups_ = 0;
  std::uint32_t levels_ = 0;
  std::vector<float> steps_;
  std::vector<double> targets_;
};

struct EncodeOptions {
  std::uint8_t level = 0;
  const CodecProfile* profile = nullptr;   // null: CodecProfile::builtin
  std::uint32_t lanes = 8;                 // rANS lanes per substream: 1, 2, 4, 8, 16 or 32
  std::uint32_t substream_values = 16384;  // target values per independent substream
};

// Encodes tokens [token_begin, token_begin + token_count) of `src` into `out` (replacing its
// contents, reusing its capacity). A NaN or infinite value is an error at lossy levels naming
// its layer, token and channel; level 0 keeps every bit pattern.
Status encode_chunk(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                    const EncodeOptions& options, std::vector<std::byte>& out);

// Encodes chunks with reusable scratch memory (see ChunkDecoder). Not thread-safe.
class ChunkEncoder {
 public:
  ChunkEncoder();
  ~ChunkEncoder();
  ChunkEncoder(ChunkEncoder&&) noexcept;
  ChunkEncoder& operator=(ChunkEncoder&&) noexcept;
  ChunkEncoder(const ChunkEncoder&) = delete;
  ChunkEncoder& operator=(const ChunkEncoder&) = delete;

  // As encode_chunk above.
  Status encode(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                const EncodeOptions& options, std::vector<std::byte>& out);

  struct Scratch;

 private:
  std::unique_ptr<Scratch> scratch_;
};

struct ChunkInfo {
  std::uint8_t level = 0;
  DType dtype = DType::f16;  // the source's dtype
  std::uint32_t layers = 0, kv_heads = 0, head_dim = 0;
  std::uint32_t token_begin = 0, token_count = 0;
  std::uint32_t total_size = 0;
};

// Validates the header and segment table (not the segments) and describes the chunk.
Expected<ChunkInfo> read_chunk_info(std::span<const std::byte> chunk);

// Decodes chunks with reusable scratch memory: once it has seen a chunk of a given shape, it
// decodes further ones without allocating. Not thread-safe: one per thread.
class ChunkDecoder {
 public:
  ChunkDecoder();
  ~ChunkDecoder();
  ChunkDecoder(ChunkDecoder&&) noexcept;
  ChunkDecoder& operator=(ChunkDecoder&&) noexcept;
  ChunkDecoder(const ChunkDecoder&) = delete;
  ChunkDecoder& operator=(const ChunkDecoder&) = delete;

  // As decode_chunk below.
  Status decode(std::span<const std::byte> chunk, const KvView& dst);

  struct Scratch;

 private:
  std::unique_ptr<Scratch> scratch_;
};

// Validates the whole chunk, then decodes it into tokens [token_begin, token_begin + count) of
// `dst` (any dtype and layout of the same shape). Nothing is written when validation fails; a
// hostile chunk that passes its checksums but fails while decoding leaves those destination
// tokens unspecified (and the error says so), never memory outside them.
Status decode_chunk(std::span<const std::byte> chunk, const KvView& dst);

}  // namespace kvstream
