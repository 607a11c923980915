// Where a sender's streams come from. Store mode: context archives in a folder, served as
// written (exact sizes). Push mode: KV caches held in memory, as a prefill node holds them,
// encoded on demand at the level the receiver asks for (sizes known only as bounds until then).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "kvstream/archive.hpp"
#include "kvstream/codec.hpp"
#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream::transport {

struct StreamInfo;

// One open stream of a source. Not thread-safe: one session uses it.
class SourceStream {
 public:
  virtual ~SourceStream() = default;
  // Its description; the session sets `stream`.
  virtual const StreamInfo& info() const = 0;
  // Chunk `chunk` at `level`; the caller checked both ranges. The bytes live in `scratch`, or in
  // the source itself when it holds them (no copy); either stays valid until the next read.
  virtual Expected<std::span<const std::byte>> read(std::uint32_t chunk, std::uint32_t level,
                                                    std::vector<std::byte>& scratch) = 0;
};

// Thread-safe: sessions of several connections open streams at once.
class ChunkSource {
 public:
  virtual ~ChunkSource() = default;
  // The stream of context `id` (already checked by check_context_id); not_found when none.
  virtual Expected<std::unique_ptr<SourceStream>> open(const std::string& id) = 0;
};

// Store mode: `dir`/<id>.kva.
class ArchiveSource final : public ChunkSource {
 public:
  explicit ArchiveSource(std::filesystem::path dir) : dir_(std::move(dir)) {}
  Expected<std::unique_ptr<SourceStream>> open(const std::string& id) override;

 private:
  std::filesystem::path dir_;
};

// Encodes tokens [begin, begin + count) of a view as encode_chunk does.
using ChunkEncodeFn =
    std::function<Status(const KvView& kv, std::uint32_t begin, std::uint32_t count,
                         const EncodeOptions& options, std::vector<std::byte>& out)>;
// Makes the encoder of one stream (each session's stream has its own, as each runs on its own
// thread).
using EncoderFactory = std::function<Expected<ChunkEncodeFn>()>;

// Push mode: contexts added as KV views the caller keeps alive and unchanged while served.
class PushSource final : public ChunkSource {
 public:
  struct Context {
    KvView kv;  // tokens: the context's length
    std::vector<std::int32_t> tokens;
    std::uint32_t chunk_tokens = 256;
    std::uint8_t max_level = 5;             // levels 0..max_level
    const CodecProfile* profile = nullptr;  // null: the built-in rule
    std::uint32_t lanes = 8, lane_values = 512;
    // Null: the CPU encoder. A cache in device memory wants its chunks encoded where it lives:
    // a GpuEncoder (kvstream::cuda), which a caller linking that target plugs in here.
    EncoderFactory encoder;
  };
  // Adds or replaces context `id`.
  Status add(const std::string& id, Context context);
  Expected<std::unique_ptr<SourceStream>> open(const std::string& id) override;

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Context>> contexts_;
};

// Store mode in memory: contexts encoded once, at every level, when added, then served from
// memory without a copy (a prefill node serving one context to several decoders; the perf tool).
class EncodedSource final : public ChunkSource {
 public:
  // Encodes `context` now; its view need not outlive the call.
  Status add(const std::string& id, const PushSource::Context& context);
  Expected<std::unique_ptr<SourceStream>> open(const std::string& id) override;

  struct Encoded;

 private:
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<const Encoded>> contexts_;
};

}  // namespace kvstream::transport
