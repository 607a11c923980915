// Bounds-checked little-endian reading and appending writing of the chunk format's fields.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "kvstream/kv_cache.hpp"

namespace kvstream::codec {

class ByteWriter {
 public:
  explicit ByteWriter(std::vector<std::byte>& out) : out_(out) {}
  std::size_t size() const noexcept { return out_.size(); }

  template <typename T>
  void put(T v) {
    const std::size_t at = out_.size();
    out_.resize(at + sizeof(T));
    std::memcpy(out_.data() + at, &v, sizeof(T));  // little-endian hosts only (x86, Arm)
  }
  template <typename T>
  void put_at(std::size_t at, T v) {
    std::memcpy(out_.data() + at, &v, sizeof(T));
  }
  void put_bytes(std::span<const std::byte> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  // Zigzag LEB128 of a value in [-32768, 32767]: at most 3 bytes.
  void put_zigzag_varint(std::int32_t v) {
    std::uint32_t u = v >= 0 ? 2u * static_cast<std::uint32_t>(v)
                             : 2u * static_cast<std::uint32_t>(-(v + 1)) + 1u;
    while (u >= 0x80) {
      put(static_cast<std::uint8_t>((u & 0x7F) | 0x80));
      u >>= 7;
    }
    put(static_cast<std::uint8_t>(u));
  }

 private:
  std::vector<std::byte>& out_;
};

// Reads never pass the end: every getter reports failure instead, and the reader stays failed.
class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> in) : in_(in) {}
  std::size_t position() const noexcept { return pos_; }
  std::size_t remaining() const noexcept { return in_.size() - pos_; }
  bool ok() const noexcept { return ok_; }

  template <typename T>
  bool get(T& v) {
    if (!ok_ || remaining() < sizeof(T)) return ok_ = false;
    std::memcpy(&v, in_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return true;
  }
  bool get_bytes(std::size_t n, std::span<const std::byte>& out) {
    if (!ok_ || remaining() < n) return ok_ = false;
    out = in_.subspan(pos_, n);
    pos_ += n;
    return true;
  }
  bool get_zigzag_varint(std::int32_t& v) {
    std::uint32_t u = 0;
    for (int shift = 0; shift < 21; shift += 7) {
      std::uint8_t b = 0;
      if (!get(b)) return false;
      u |= static_cast<std::uint32_t>(b & 0x7F) << shift;
      if ((b & 0x80) == 0) {
        v = (u & 1u) ? -static_cast<std::int32_t>(u >> 1) - 1 : static_cast<std::int32_t>(u >> 1);
        return v >= -32768 && v <= 32767 ? true : (ok_ = false);
      }
    }
    return ok_ = false;  // longer than 3 bytes
  }

 private:
  std::span<const std::byte> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

// A KvLayout as the control plane and fetch state carry it: u32 layers, kv_heads, head_dim,
// dtype, tokens. get_layout is false when the bytes run out; `dtype` is the raw value, set in
// `l` only when it names a dtype (callers refuse others, then validate()).
inline void put_layout(ByteWriter& w, const KvLayout& l) {
  w.put(l.layers);
  w.put(l.kv_heads);
  w.put(l.head_dim);
  w.put(static_cast<std::uint32_t>(l.dtype));
  w.put(l.tokens);
}
inline bool get_layout(ByteReader& r, KvLayout& l, std::uint32_t& dtype) {
  if (!r.get(l.layers) || !r.get(l.kv_heads) || !r.get(l.head_dim) || !r.get(dtype) ||
      !r.get(l.tokens)) {
    return false;
  }
  if (dtype <= 2) l.dtype = static_cast<DType>(dtype);
  return true;
}

}  // namespace kvstream::codec
