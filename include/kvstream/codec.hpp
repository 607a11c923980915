// The KV chunk codec: one token range of a context's KV cache <-> one self-contained chunk
// (format: codec/FORMAT.md). Level 0 is lossless; levels 1.. trade quality for size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream {

inline constexpr std::uint8_t kMaxLevel = 15;

// How RoPE pairs a head's dimensions: (2i, 2i + 1) as in Meta's Llama and llama2.c, or
// (i, i + head_dim / 2) as in Hugging Face's rotate_half.
enum class RopePairs : std::uint8_t { interleaved = 0, halves = 1 };

// The dims (a, b) of a head that RoPE rotates together as its pair i.
inline void rope_pair(RopePairs pairs, std::uint32_t head_dim, std::uint32_t i, std::uint32_t& a,
                      std::uint32_t& b) noexcept {
  a = pairs == RopePairs::interleaved ? 2 * i : i;
  b = pairs == RopePairs::interleaved ? 2 * i + 1 : i + head_dim / 2;
}

// A calibrated linear transform of each layer's K and V (FORMAT.md "Transform coding"). The
// encoder undoes RoPE on K (so that K's channels keep fixed statistics along the context), joins
// a token's un-rotated K and V into one vector z of 2C values, and codes the 2C coefficients
// y = A z; the decoder rebuilds z = S y and rotates K again. A profile's calibration picks A and
// S so that the coefficients are uncorrelated and equally important to the model, which is
// where most of the redundancy of a small model's KV cache lies. Both are per layer, row-major.
struct KvTransform {
  std::uint32_t channels = 0;  // C = kv_heads * head_dim
  std::uint32_t head_dim = 0;
  RopePairs pairs = RopePairs::interleaved;
  // The angle of pair i at position p is p * frequencies[i]; empty when K is not rotated.
  std::vector<float> frequencies;
  std::vector<float> analysis;   // A: layers * (2C)^2
  std::vector<float> synthesis;  // S: layers * (2C)^2
  std::uint32_t layers() const noexcept;
  // Checks shapes and finiteness; errors name what is wrong.
  Status validate() const;
  // The CRC32C of the transform's canonical bytes: what a chunk records to name its transform.
  std::uint32_t id() const;
  // The 2C values z of a token at `position` that the transform codes, as the encoder computes
  // them: its K (C values) with RoPE undone, then its V (C values).
  void unrotated(std::uint32_t position, const float* k, const float* v, float* z) const;
};

// How an encoder quantizes each lossy level: the quantization step of every (layer, K|V,
// channel group) as a multiple of its channels' spread (a relative step). A segment's C
// channels form `groups` equal groups: channel c is in group c * groups / C (one group per KV
// head is the default calibration). A profile may also hold a KvTransform; then every lossy
// level codes transform coefficients, its steps are absolute coefficient steps (segment "K" of a
// layer holds coefficients 0..C-1, "V" C..2C-1), and decoders need the profile too.
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
  // Null when lossy levels code K and V directly.
  const KvTransform* transform() const noexcept { return transform_.get(); }
  const std::shared_ptr<const KvTransform>& shared_transform() const noexcept { return transform_; }
  std::uint32_t transform_id() const noexcept { return transform_id_; }  // its id(), or 0
  // Validates the transform against the profile's layers.
  Status set_transform(KvTransform transform);

 private:
  std::uint32_t layers_ = 0;
  std::uint32_t groups_ = 0;
  std::uint32_t levels_ = 0;
  std::vector<float> steps_;
  std::vector<double> targets_;
  std::shared_ptr<const KvTransform> transform_;  // immutable once set; copies share it
  std::uint32_t transform_id_ = 0;
};

// The steps a lossy chunk can use, increasing (FORMAT.md: (8 + (s & 7)) * 2^((s >> 3) - 19) for
// step code s); the encoder uses the largest not above the step it aims at.
std::span<const float, 256> quantization_steps() noexcept;

struct EncodeOptions {
  std::uint8_t level = 0;
  const CodecProfile* profile = nullptr;   // null: CodecProfile::builtin
  std::uint32_t lanes = 8;                 // rANS lanes per substream: 1, 2, 4, 8, 16 or 32
  std::uint32_t substream_values = 16384;  // target values per independent substream
  // Substreams with fewer than lanes * lane_values values get fewer lanes: each lane costs a
  // 4-byte state (about 1% of a 512-value lane at 6 bits per value). A GPU decoder runs one
  // thread per lane, so streams for GPUs trade that for more lanes (FORMAT.md's lanes).
  std::uint32_t lane_values = 512;
  // Level 0 only: the values as they are (FORMAT.md coding 3, about 15% larger than the entropy
  // coded level 0 on fp16 KV caches), which a decoder copies: for receivers whose link is faster
  // than their decoder.
  bool verbatim = false;
};

// Encodes tokens [token_begin, token_begin + token_count) of `src` into `out` (replacing its
// contents, reusing its capacity). A NaN or infinite value is an error at lossy levels naming
// its layer, token and channel; level 0 keeps every bit pattern.
Status encode_chunk(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                    const EncodeOptions& options, std::vector<std::byte>& out);

// The most bytes encode_chunk can write for `token_count` tokens of `layout`, whatever the level
// and options: what a receiver must be ready to take before it knows a chunk's size.
std::size_t chunk_size_bound(const KvLayout& layout, std::uint32_t token_count);

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
  std::uint32_t transform_id = 0;  // KvTransform::id() of a transform-coded chunk, else 0
  bool transformed = false;
  std::uint16_t version = 0;  // of the chunk format (codec/FORMAT.md)
};

// Validates the header and segment table (not the segments) and describes the chunk.
Expected<ChunkInfo> read_chunk_info(std::span<const std::byte> chunk);

class WorkerPool;  // kvstream/parallel.hpp

// Decodes chunks with reusable scratch memory: once it has seen a chunk of a given shape, it
// decodes further ones without allocating. Not thread-safe: one per thread.
class ChunkDecoder {
 public:
  ChunkDecoder();
  // Decodes each chunk large enough to be worth it (kMinValuesToSplit) on `threads` threads,
  // the caller's and threads - 1 of the decoder's own, kept from chunk to chunk: its
  // substreams, segments and transform layers are split among them, and the output and errors
  // are those of one thread.
  explicit ChunkDecoder(unsigned threads);
  // About a quarter of a millisecond of decoding on one core: the least a chunk holds (values
  // of all its segments) to be split among threads, each of which takes some microseconds to
  // wake.
  static constexpr std::size_t kMinValuesToSplit = std::size_t{1} << 17;
  ~ChunkDecoder();
  ChunkDecoder(ChunkDecoder&&) noexcept;
  ChunkDecoder& operator=(ChunkDecoder&&) noexcept;
  ChunkDecoder(const ChunkDecoder&) = delete;
  ChunkDecoder& operator=(const ChunkDecoder&) = delete;

  // As decode_chunk below.
  Status decode(std::span<const std::byte> chunk, const KvView& dst,
                const CodecProfile* profile = nullptr);

  struct Scratch;

 private:
  Status decode_values(std::span<const std::byte> chunk, const ChunkInfo& info, const KvView& dst);
  void synthesize(const KvTransform& t, const ChunkInfo& info, const KvView& coefficients,
                  const KvView& dst);
  // Runs fn(worker, item) for items [0, count): on the pool when `split`, else on this thread.
  Status for_items(bool split, std::size_t count,
                   const std::function<Status(unsigned, std::size_t)>& fn);
  std::unique_ptr<Scratch> scratch_;
  std::unique_ptr<WorkerPool> pool_;  // null: one thread
  bool split_ = false;                // the chunk being decoded runs on the pool
};

// Validates the whole chunk, then decodes it into tokens [token_begin, token_begin + count) of
// `dst` (any dtype and layout of the same shape). Nothing is written when validation fails; a
// hostile chunk that passes its checksums but fails while decoding leaves those destination
// tokens unspecified (and the error says so), never memory outside them. A transform-coded
// chunk needs the profile holding its transform (an error names the transform id otherwise);
// other chunks ignore `profile`.
Status decode_chunk(std::span<const std::byte> chunk, const KvView& dst,
                    const CodecProfile* profile = nullptr);

}  // namespace kvstream
