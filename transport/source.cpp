// Archive and in-memory chunk sources.
#include "source.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

#include "session.hpp"

namespace kvstream::transport {

namespace {

class ArchiveStream final : public SourceStream {
 public:
  explicit ArchiveStream(ArchiveReader reader) : reader_(std::move(reader)) {
    const ArchiveInfo& a = reader_.info();
    info_.layout = a.layout;
    info_.chunk_tokens = a.chunk_tokens;
    info_.chunk_count = a.chunk_count;
    info_.levels = a.levels;
    info_.tokens = reader_.tokens();
    for (std::uint32_t c = 0; c < a.chunk_count; ++c)
      for (std::uint32_t l = 0; l < a.levels; ++l)
        info_.sizes.push_back(reader_.chunk_size(c, l));
  }
  const StreamInfo& info() const override { return info_; }
  Expected<std::span<const std::byte>> read(std::uint32_t chunk, std::uint32_t level,
                                            std::vector<std::byte>& scratch) override {
    KVS_RETURN_IF_ERROR(reader_.read_chunk(chunk, level, scratch));
    return std::span<const std::byte>(scratch);
  }

 private:
  ArchiveReader reader_;
  StreamInfo info_;
};

// The context's encoder, or the CPU's.
Expected<ChunkEncodeFn> make_encoder(const PushSource::Context& c) {
  if (c.encoder) return c.encoder();
  auto encoder = std::make_shared<ChunkEncoder>();
  return ChunkEncodeFn(
      [encoder](const KvView& kv, std::uint32_t begin, std::uint32_t count, const EncodeOptions& o,
                std::vector<std::byte>& out) { return encoder->encode(kv, begin, count, o, out); });
}

Status encode_context_chunk(const ChunkEncodeFn& encode, const PushSource::Context& c,
                            std::uint32_t chunk, std::uint32_t level, std::vector<std::byte>& out) {
  EncodeOptions o;
  o.level = static_cast<std::uint8_t>(level);
  o.profile = c.profile;
  o.lanes = c.lanes;
  o.lane_values = c.lane_values;
  const std::uint32_t begin = chunk * c.chunk_tokens;
  return encode(c.kv, begin, std::min(c.chunk_tokens, c.kv.layout().tokens - begin), o, out);
}

// What a stream of `c` says before any chunk is encoded: sizes are bounds.
StreamInfo describe(const PushSource::Context& c) {
  StreamInfo info;
  const KvLayout& l = c.kv.layout();
  info.layout = l;
  info.chunk_tokens = c.chunk_tokens;
  info.chunk_count = (l.tokens + c.chunk_tokens - 1) / c.chunk_tokens;
  info.levels = c.max_level + 1u;
  info.exact_sizes = false;
  info.tokens = c.tokens;
  for (std::uint32_t chunk = 0; chunk < info.chunk_count; ++chunk) {
    // A chunk's total_size is a u32 (FORMAT.md), so no chunk is larger than that either.
    const auto bound = static_cast<std::uint32_t>(std::min<std::size_t>(
        chunk_size_bound(l, std::min(c.chunk_tokens, l.tokens - chunk * c.chunk_tokens)),
        UINT32_MAX));
    info.sizes.insert(info.sizes.end(), info.levels, bound);
  }
  return info;
}

class PushStream final : public SourceStream {
 public:
  PushStream(std::shared_ptr<const PushSource::Context> c, ChunkEncodeFn encode)
      : c_(std::move(c)), encode_(std::move(encode)), info_(describe(*c_)) {}
  const StreamInfo& info() const override { return info_; }
  Expected<std::span<const std::byte>> read(std::uint32_t chunk, std::uint32_t level,
                                            std::vector<std::byte>& scratch) override {
    KVS_RETURN_IF_ERROR(encode_context_chunk(encode_, *c_, chunk, level, scratch));
    return std::span<const std::byte>(scratch);
  }

 private:
  std::shared_ptr<const PushSource::Context> c_;
  ChunkEncodeFn encode_;
  StreamInfo info_;
};

}  // namespace

struct EncodedSource::Encoded {
  StreamInfo info;                             // exact sizes
  std::vector<std::vector<std::byte>> chunks;  // chunk-major, as info.sizes
};

namespace {

class EncodedStream final : public SourceStream {
 public:
  explicit EncodedStream(std::shared_ptr<const EncodedSource::Encoded> e) : e_(std::move(e)) {}
  const StreamInfo& info() const override { return e_->info; }
  Expected<std::span<const std::byte>> read(std::uint32_t chunk, std::uint32_t level,
                                            std::vector<std::byte>&) override {
    return std::span<const std::byte>(e_->chunks[std::size_t{chunk} * e_->info.levels + level]);
  }

 private:
  std::shared_ptr<const EncodedSource::Encoded> e_;
};

Status check_push_context(const std::string& id, const PushSource::Context& context) {
  KVS_RETURN_IF_ERROR(check_context_id(id));
  const KvLayout& l = context.kv.layout();
  const std::uint32_t lossy = context.profile != nullptr
                                  ? context.profile->levels()
                                  : CodecProfile::builtin(std::max(l.layers, 1u), 1).levels();
  if (context.kv.empty() || context.chunk_tokens == 0 || context.max_level > lossy ||
      context.tokens.size() != l.tokens) {
    return Status(
        Errc::invalid_argument,
        fmt::format("push context '{}': {} tokens for a {}-token view, chunks of {}, "
                    "levels 0..{}",
                    id, context.tokens.size(), l.tokens, context.chunk_tokens, context.max_level));
  }
  return Status::ok();
}

// Context `id` of `contexts` (guarded by `mu`), or not_found.
template <typename Context>
Expected<std::shared_ptr<const Context>> find_context(
    std::mutex& mu, const std::map<std::string, std::shared_ptr<const Context>>& contexts,
    const std::string& id) {
  std::lock_guard lock(mu);
  const auto it = contexts.find(id);
  if (it == contexts.end()) return Status(Errc::not_found, fmt::format("no context '{}'", id));
  return it->second;
}

}  // namespace

Expected<std::unique_ptr<SourceStream>> ArchiveSource::open(const std::string& id) {
  auto opened = ArchiveReader::open((dir_ / (id + ".kva")).string());
  if (!opened) {
    return opened.error().code() == Errc::not_found
               ? Status(Errc::not_found, fmt::format("no context '{}'", id))
               : opened.error();
  }
  return std::unique_ptr<SourceStream>(std::make_unique<ArchiveStream>(std::move(*opened)));
}

Status PushSource::add(const std::string& id, Context context) {
  KVS_RETURN_IF_ERROR(check_push_context(id, context));
  std::lock_guard lock(mu_);
  contexts_[id] = std::make_shared<const Context>(std::move(context));
  return Status::ok();
}

Expected<std::unique_ptr<SourceStream>> PushSource::open(const std::string& id) {
  KVS_ASSIGN_OR_RETURN(auto c, find_context(mu_, contexts_, id));
  KVS_ASSIGN_OR_RETURN(ChunkEncodeFn encode, make_encoder(*c));
  return std::unique_ptr<SourceStream>(
      std::make_unique<PushStream>(std::move(c), std::move(encode)));
}

Status EncodedSource::add(const std::string& id, const PushSource::Context& context) {
  KVS_RETURN_IF_ERROR(check_push_context(id, context));
  auto e = std::make_shared<Encoded>();
  e->info = describe(context);
  e->info.exact_sizes = true;
  KVS_ASSIGN_OR_RETURN(const ChunkEncodeFn encode, make_encoder(context));
  for (std::uint32_t chunk = 0; chunk < e->info.chunk_count; ++chunk) {
    for (std::uint32_t level = 0; level < e->info.levels; ++level) {
      auto& bytes = e->chunks.emplace_back();
      KVS_RETURN_IF_ERROR(encode_context_chunk(encode, context, chunk, level, bytes));
      e->info.sizes[std::size_t{chunk} * e->info.levels + level] =
          static_cast<std::uint32_t>(bytes.size());
    }
  }
  std::lock_guard lock(mu_);
  contexts_[id] = std::move(e);
  return Status::ok();
}

Expected<std::unique_ptr<SourceStream>> EncodedSource::open(const std::string& id) {
  KVS_ASSIGN_OR_RETURN(auto e, find_context(mu_, contexts_, id));
  return std::unique_ptr<SourceStream>(std::make_unique<EncodedStream>(std::move(e)));
}

}  // namespace kvstream::transport
