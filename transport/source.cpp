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
  Status read(std::uint32_t chunk, std::uint32_t level, std::vector<std::byte>& out) override {
    return reader_.read_chunk(chunk, level, out);
  }

 private:
  ArchiveReader reader_;
  StreamInfo info_;
};

class PushStream final : public SourceStream {
 public:
  explicit PushStream(std::shared_ptr<const PushSource::Context> c) : c_(std::move(c)) {
    const KvLayout& l = c_->kv.layout();
    info_.layout = l;
    info_.chunk_tokens = c_->chunk_tokens;
    info_.chunk_count = (l.tokens + c_->chunk_tokens - 1) / c_->chunk_tokens;
    info_.levels = c_->max_level + 1u;
    info_.exact_sizes = false;  // encoded on request: bounds only
    info_.tokens = c_->tokens;
    for (std::uint32_t chunk = 0; chunk < info_.chunk_count; ++chunk) {
      // A chunk's total_size is a u32 (FORMAT.md), so no chunk is larger than that either.
      const auto bound = static_cast<std::uint32_t>(std::min<std::size_t>(
          chunk_size_bound(l, std::min(c_->chunk_tokens, l.tokens - chunk * c_->chunk_tokens)),
          UINT32_MAX));
      info_.sizes.insert(info_.sizes.end(), info_.levels, bound);
    }
  }
  const StreamInfo& info() const override { return info_; }
  Status read(std::uint32_t chunk, std::uint32_t level, std::vector<std::byte>& out) override {
    EncodeOptions o;
    o.level = static_cast<std::uint8_t>(level);
    o.profile = c_->profile;
    o.lanes = c_->lanes;
    o.lane_values = c_->lane_values;
    const std::uint32_t begin = chunk * c_->chunk_tokens;
    return encoder_.encode(c_->kv, begin,
                           std::min(c_->chunk_tokens, c_->kv.layout().tokens - begin), o, out);
  }

 private:
  std::shared_ptr<const PushSource::Context> c_;
  ChunkEncoder encoder_;
  StreamInfo info_;
};

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
  std::lock_guard lock(mu_);
  contexts_[id] = std::make_shared<const Context>(std::move(context));
  return Status::ok();
}

Expected<std::unique_ptr<SourceStream>> PushSource::open(const std::string& id) {
  std::shared_ptr<const Context> c;
  {
    std::lock_guard lock(mu_);
    const auto it = contexts_.find(id);
    if (it == contexts_.end()) return Status(Errc::not_found, fmt::format("no context '{}'", id));
    c = it->second;
  }
  return std::unique_ptr<SourceStream>(std::make_unique<PushStream>(std::move(c)));
}

}  // namespace kvstream::transport
