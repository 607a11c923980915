// Saving, loading and checking a broken-off fetch.
#include "fetch_state.hpp"

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "byte_io.hpp"
#include "cli/common.hpp"

namespace kvstream::cli {

namespace {

constexpr char kMagic[8] = {'K', 'V', 'S', 'P', 'A', 'R', 'T', '1'};

Status corrupt(const std::string& path, const std::string& what) {
  return Status(Errc::corrupt_data, fmt::format("'{}' is not a fetch to resume: {}", path, what));
}

}  // namespace

std::string partial_path(const std::string& out) {
  return out + ".partial";
}

Status save_fetch_state(const std::string& path, const FetchState& s) {
  std::vector<std::byte> out;
  codec::ByteWriter w(out);
  w.put_bytes(std::as_bytes(std::span(kMagic)));
  w.put(static_cast<std::uint16_t>(s.context.size()));
  w.put_bytes(std::as_bytes(std::span(s.context)));
  w.put(s.level);
  codec::put_layout(w, s.layout);
  w.put(s.chunk_tokens);
  w.put(static_cast<std::uint32_t>(s.sizes.size()));
  for (std::uint32_t v : s.sizes)
    w.put(v);
  for (std::uint8_t v : s.landed)
    w.put(v);
  w.put(static_cast<std::uint64_t>(s.kv.size()));
  w.put_bytes(s.kv);
  return write_file_atomically(path, out);
}

Expected<FetchState> load_fetch_state(const std::string& path) {
  KVS_ASSIGN_OR_RETURN(const std::string bytes, read_file(path));
  codec::ByteReader r(std::as_bytes(std::span(bytes)));
  FetchState s;
  std::span<const std::byte> magic, context, kv;
  std::uint16_t length = 0;
  std::uint32_t dtype = 0, count = 0;
  if (!r.get_bytes(sizeof kMagic, magic) || std::memcmp(magic.data(), kMagic, sizeof kMagic) != 0) {
    return corrupt(path, "no KVSPART1 magic");
  }
  if (!r.get(length) || !r.get_bytes(length, context) || !r.get(s.level) ||
      !codec::get_layout(r, s.layout, dtype) || !r.get(s.chunk_tokens) || !r.get(count)) {
    return corrupt(path, "truncated header");
  }
  s.context.assign(reinterpret_cast<const char*>(context.data()), context.size());
  if (dtype > 2) return corrupt(path, fmt::format("dtype {}", dtype));
  if (Status v = s.layout.validate(); !v.is_ok()) return corrupt(path, v.message());
  if (s.chunk_tokens == 0 || count != (s.layout.tokens + s.chunk_tokens - 1) / s.chunk_tokens) {
    return corrupt(path, fmt::format("{} chunks of {} tokens for {} tokens", count, s.chunk_tokens,
                                     s.layout.tokens));
  }
  s.sizes.resize(count);
  s.landed.resize(count);
  for (auto& v : s.sizes)
    if (!r.get(v)) return corrupt(path, "truncated sizes");
  for (auto& v : s.landed)
    if (!r.get(v) || v > 1) return corrupt(path, "bad landed flags");
  std::uint64_t kv_bytes = 0;
  if (!r.get(kv_bytes) || kv_bytes != s.layout.total_bytes() ||
      !r.get_bytes(static_cast<std::size_t>(kv_bytes), kv) || r.remaining() != 0) {
    return corrupt(
        path, fmt::format("the cache is not the {} bytes its shape takes", s.layout.total_bytes()));
  }
  s.kv.assign(kv.begin(), kv.end());
  return s;
}

FetchState fresh_fetch_state(const std::string& context, std::uint32_t level,
                             const transport::StreamInfo& info, std::vector<std::byte> kv) {
  FetchState s;
  s.context = context;
  s.level = level;
  s.layout = info.layout;
  s.chunk_tokens = info.chunk_tokens;
  for (std::uint32_t c = 0; c < info.chunk_count; ++c)
    s.sizes.push_back(info.size(c, level));
  s.landed.assign(info.chunk_count, 0);
  s.kv = std::move(kv);
  return s;
}

Status check_resumable(const FetchState& s, const std::string& context, std::uint32_t level,
                       const transport::StreamInfo& info) {
  const auto refuse = [](std::string what) {
    return Status(Errc::invalid_argument, "cannot resume: " + std::move(what));
  };
  if (s.context != context || s.level != level) {
    return refuse(fmt::format("the partial fetch is of '{}' at level {}, not '{}' at level {}",
                              s.context, s.level, context, level));
  }
  const FetchState now = fresh_fetch_state(context, level, info, {});
  if (!s.layout.same_shape(info.layout) || s.layout.tokens != info.layout.tokens ||
      s.layout.dtype != info.layout.dtype || s.chunk_tokens != info.chunk_tokens ||
      s.sizes != now.sizes) {
    return refuse(
        fmt::format("the server's '{}' is not the stream the partial fetch began", context));
  }
  return Status::ok();
}

}  // namespace kvstream::cli
