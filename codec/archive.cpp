#include "kvstream/archive.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "byte_io.hpp"
#include "crc32c.hpp"

namespace kvstream {

using namespace codec;

namespace {

constexpr char kArchiveMagic[4] = {'K', 'V', 'S', 'A'};
constexpr std::uint16_t kArchiveVersion = 1;
constexpr std::uint32_t kArchiveHeader = 64;
constexpr std::uint32_t kEntrySize = 16;

Status os_error(const std::string& what, const std::string& path) {
  return Status(errno == ENOENT ? Errc::not_found : Errc::io_error,
                fmt::format("{} '{}': {}", what, path, std::strerror(errno)));
}

Status write_all(int fd, std::span<const std::byte> data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error("writing", path);
    }
    data = data.subspan(static_cast<std::size_t>(n));
  }
  return Status::ok();
}

Status read_at(int fd, std::uint64_t offset, std::span<std::byte> out, const std::string& path) {
  std::size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error("reading", path);
    }
    if (n == 0) {
      return Status(Errc::corrupt_data,
                    fmt::format("archive '{}': truncated at byte {}", path, offset + done));
    }
    done += static_cast<std::size_t>(n);
  }
  return Status::ok();
}

// Closes a file descriptor when it goes out of scope unless released.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0) ::close(fd);
  }
  int release() { return std::exchange(fd, -1); }
};

}  // namespace

Status write_archive(const std::string& path, const KvView& kv,
                     std::span<const std::int32_t> tokens, const ArchiveOptions& o) {
  const KvLayout& l = kv.layout();
  if (tokens.size() != l.tokens || l.tokens == 0) {
    return Status(Errc::invalid_argument, fmt::format("archive of {} tokens with a KV cache of {}",
                                                      tokens.size(), l.tokens));
  }
  if (o.chunk_tokens == 0 || o.max_level > kMaxLevel) {
    return Status(Errc::invalid_argument,
                  fmt::format("chunk_tokens {} and max_level {}", o.chunk_tokens, o.max_level));
  }
  const std::uint32_t levels = std::uint32_t{o.max_level} + 1;
  const std::uint32_t chunks = (l.tokens + o.chunk_tokens - 1) / o.chunk_tokens;

  std::vector<std::byte> head;
  ByteWriter w(head);
  head.resize(kArchiveHeader);
  w.put_bytes(std::as_bytes(tokens));
  w.put(crc32c(std::as_bytes(tokens)));

  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  FdGuard fd{::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  if (fd.fd < 0) return os_error("creating", tmp);
  auto fail = [&](Status s) {
    ::close(fd.release());
    ::unlink(tmp.c_str());
    return s;
  };
  // The header is rewritten at the end, once the index offset is known.
  if (Status s = write_all(fd.fd, head, tmp); !s.is_ok()) return fail(s);

  std::vector<std::byte> index;
  ByteWriter iw(index);
  std::uint64_t offset = head.size();
  std::vector<std::byte> chunk;
  ChunkEncoder encoder;
  EncodeOptions eo;
  eo.profile = o.profile;
  for (std::uint32_t i = 0; i < chunks; ++i) {
    const std::uint32_t begin = i * o.chunk_tokens;
    const std::uint32_t count = std::min(o.chunk_tokens, l.tokens - begin);
    for (std::uint32_t level = 0; level < levels; ++level) {
      eo.level = static_cast<std::uint8_t>(level);
      eo.verbatim = level == 0 && o.verbatim_level0;
      if (Status s = encoder.encode(kv, begin, count, eo, chunk); !s.is_ok()) {
        return fail(s.with_context(fmt::format("chunk {} level {}", i, level)));
      }
      if (Status s = write_all(fd.fd, chunk, tmp); !s.is_ok()) return fail(s);
      iw.put(offset);
      iw.put(static_cast<std::uint32_t>(chunk.size()));
      iw.put(crc32c(chunk));
      offset += chunk.size();
    }
  }
  const std::uint64_t index_offset = offset;
  iw.put(crc32c(index));
  if (Status s = write_all(fd.fd, index, tmp); !s.is_ok()) return fail(s);
  const std::uint64_t file_size = index_offset + index.size();

  std::memcpy(head.data(), kArchiveMagic, 4);
  w.put_at<std::uint16_t>(4, kArchiveVersion);
  w.put_at<std::uint16_t>(6, kArchiveHeader);
  w.put_at<std::uint32_t>(8, l.layers);
  w.put_at<std::uint32_t>(12, l.kv_heads);
  w.put_at<std::uint32_t>(16, l.head_dim);
  w.put_at<std::uint8_t>(20, static_cast<std::uint8_t>(l.dtype));
  w.put_at<std::uint8_t>(21, static_cast<std::uint8_t>(levels));
  w.put_at<std::uint16_t>(22, 0);
  w.put_at<std::uint32_t>(24, l.tokens);
  w.put_at<std::uint32_t>(28, o.chunk_tokens);
  w.put_at<std::uint32_t>(32, chunks);
  w.put_at<std::uint32_t>(36, 0);
  w.put_at<std::uint64_t>(40, index_offset);
  w.put_at<std::uint64_t>(48, file_size);
  w.put_at<std::uint32_t>(56, 0);
  w.put_at<std::uint32_t>(60, crc32c(std::span(head).first(60)));
  if (::pwrite(fd.fd, head.data(), kArchiveHeader, 0) != static_cast<ssize_t>(kArchiveHeader)) {
    return fail(os_error("writing", tmp));
  }
  if (::fsync(fd.fd) != 0) return fail(os_error("syncing", tmp));
  if (::close(fd.release()) != 0) {
    ::unlink(tmp.c_str());
    return os_error("closing", tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const Status s = os_error("renaming over", path);
    ::unlink(tmp.c_str());
    return s;
  }
  return Status::ok();
}

Expected<ArchiveReader> ArchiveReader::open(const std::string& path) {
  ArchiveReader r;
  r.path_ = path;
  r.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (r.fd_ < 0) return os_error("opening archive", path);
  const auto bad = [&](const std::string& what) {
    return Status(Errc::corrupt_data, fmt::format("archive '{}': {}", path, what));
  };
  struct stat st {};
  if (::fstat(r.fd_, &st) != 0) return os_error("reading", path);
  const auto actual_size = static_cast<std::uint64_t>(st.st_size);
  if (actual_size < kArchiveHeader) return bad("shorter than its header");
  std::vector<std::byte> head(kArchiveHeader);
  KVS_RETURN_IF_ERROR(read_at(r.fd_, 0, head, path));
  ByteReader h(head);
  char magic[4];
  std::uint16_t version = 0, header_size = 0, res16 = 0;
  std::uint32_t layers = 0, heads = 0, dim = 0, tokens = 0, chunk_tokens = 0, chunks = 0;
  std::uint32_t res32a = 0, res32b = 0, header_crc = 0;
  std::uint8_t dtype = 0, levels = 0;
  std::uint64_t index_offset = 0, file_size = 0;
  for (char& m : magic)
    h.get(m);
  h.get(version);
  h.get(header_size);
  h.get(layers);
  h.get(heads);
  h.get(dim);
  h.get(dtype);
  h.get(levels);
  h.get(res16);
  h.get(tokens);
  h.get(chunk_tokens);
  h.get(chunks);
  h.get(res32a);
  h.get(index_offset);
  h.get(file_size);
  h.get(res32b);
  h.get(header_crc);
  if (std::memcmp(magic, kArchiveMagic, 4) != 0) return bad("bad magic (not a kvstream archive)");
  if (version != kArchiveVersion) {
    return Status(Errc::unsupported, fmt::format("archive '{}': version {} (this reader reads {})",
                                                 path, version, kArchiveVersion));
  }
  if (crc32c(std::span(head).first(60)) != header_crc) return bad("header checksum mismatch");
  if (header_size != kArchiveHeader || res16 != 0 || res32a != 0 || res32b != 0) {
    return bad("bad header size or reserved fields");
  }
  if (file_size != actual_size) {
    return bad(fmt::format("header says {} bytes, file has {}", file_size, actual_size));
  }
  if (dtype > static_cast<std::uint8_t>(DType::bf16) || levels == 0 || levels > kMaxLevel + 1u ||
      tokens == 0 || chunk_tokens == 0 ||
      chunks != (std::uint64_t{tokens} + chunk_tokens - 1) / chunk_tokens) {
    return bad("inconsistent header fields");
  }
  r.info_.layout = KvLayout{layers, heads, dim, static_cast<DType>(dtype), tokens};
  KVS_RETURN_IF_ERROR(r.info_.layout.validate().with_context("archive '" + path + "'"));
  r.info_.chunk_tokens = chunk_tokens;
  r.info_.chunk_count = chunks;
  r.info_.levels = levels;

  const std::uint64_t tokens_end = kArchiveHeader + std::uint64_t{tokens} * 4 + 4;
  const std::uint64_t index_bytes = std::uint64_t{chunks} * levels * kEntrySize + 4;
  if (tokens_end > index_offset || index_offset > file_size ||
      file_size - index_offset != index_bytes) {
    return bad("tokens, chunks and index do not fit the file");
  }
  std::vector<std::byte> tok(std::size_t{tokens} * 4 + 4);
  KVS_RETURN_IF_ERROR(read_at(r.fd_, kArchiveHeader, tok, path));
  std::uint32_t tok_crc;
  std::memcpy(&tok_crc, tok.data() + tok.size() - 4, 4);
  if (crc32c(std::span(tok).first(tok.size() - 4)) != tok_crc)
    return bad("token checksum mismatch");
  r.tokens_.resize(tokens);
  std::memcpy(r.tokens_.data(), tok.data(), std::size_t{tokens} * 4);

  std::vector<std::byte> index(index_bytes);
  KVS_RETURN_IF_ERROR(read_at(r.fd_, index_offset, index, path));
  std::uint32_t index_crc;
  std::memcpy(&index_crc, index.data() + index.size() - 4, 4);
  if (crc32c(std::span(index).first(index.size() - 4)) != index_crc) {
    return bad("index checksum mismatch");
  }
  ByteReader ir(index);
  r.entries_.resize(std::size_t{chunks} * levels);
  for (std::size_t i = 0; i < r.entries_.size(); ++i) {
    Entry& e = r.entries_[i];
    ir.get(e.offset);
    ir.get(e.size);
    ir.get(e.crc);
    if (e.offset < tokens_end || e.offset > index_offset || e.size > index_offset - e.offset) {
      return bad(
          fmt::format("chunk {} level {} lies outside the chunk area", i / levels, i % levels));
    }
  }
  return r;
}

ArchiveReader::ArchiveReader(ArchiveReader&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      path_(std::move(o.path_)),
      info_(o.info_),
      tokens_(std::move(o.tokens_)),
      entries_(std::move(o.entries_)) {}

ArchiveReader& ArchiveReader::operator=(ArchiveReader&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    path_ = std::move(o.path_);
    info_ = o.info_;
    tokens_ = std::move(o.tokens_);
    entries_ = std::move(o.entries_);
  }
  return *this;
}

ArchiveReader::~ArchiveReader() {
  if (fd_ >= 0) ::close(fd_);
}

Status ArchiveReader::read_chunk(std::uint32_t index, std::uint32_t level,
                                 std::vector<std::byte>& out) const {
  if (index >= info_.chunk_count || level >= info_.levels) {
    return Status(Errc::out_of_range,
                  fmt::format("archive '{}' has {} chunks at levels 0..{}, asked chunk {} level {}",
                              path_, info_.chunk_count, info_.levels - 1, index, level));
  }
  const Entry& e = entries_[std::size_t{index} * info_.levels + level];
  out.resize(e.size);
  KVS_RETURN_IF_ERROR(read_at(fd_, e.offset, out, path_));
  const auto bad = [&](const char* what) {
    return Status(Errc::corrupt_data,
                  fmt::format("archive '{}': chunk {} level {}: {}", path_, index, level, what));
  };
  if (crc32c(out) != e.crc) return bad("checksum mismatch");
  // The index must point at the chunk it names.
  KVS_ASSIGN_OR_RETURN(ChunkInfo ci, read_chunk_info(out));
  const std::uint32_t begin = index * info_.chunk_tokens;
  if (ci.level != level || ci.token_begin != begin ||
      ci.token_count != std::min(info_.chunk_tokens, info_.layout.tokens - begin) ||
      ci.layers != info_.layout.layers || ci.kv_heads != info_.layout.kv_heads ||
      ci.head_dim != info_.layout.head_dim || ci.dtype != info_.layout.dtype) {
    return bad("holds a different chunk than the index says");
  }
  return Status::ok();
}

}  // namespace kvstream
