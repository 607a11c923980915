// Chunk buffers a sender keeps between chunks and between sessions. A fresh multi-megabyte
// buffer is paid for in page faults while no send moves: on the 2-core development VM a fresh
// 3.7 MB buffer costs 11-12 ms, a third of the chunk's time on a 1 Gbit/s link (README,
// "Adaptive streaming"). A server that keeps its buffers pays that once, not per session.
#pragma once

#include <cstddef>
#include <mutex>
#include <vector>

namespace kvstream::transport {

// Thread-safe: the sessions of one server share it.
class BufferPool {
 public:
  // Keeps at most `keep_bytes` of free buffers (by capacity); 0 keeps none.
  explicit BufferPool(std::size_t keep_bytes) : keep_bytes_(keep_bytes) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // An empty buffer: the smallest free one that holds `bytes` without growing, else a new one
  // with room for `bytes` and 1/16 more, so that the chunks of one stream, which differ by a few
  // percent, fit the buffer the first of them made. `bytes` 0 (the size is not known yet): the
  // largest free one, else an empty one.
  std::vector<std::byte> take(std::size_t bytes);
  // Gives a buffer back. When keeping it would exceed the limit, the smallest free buffers go
  // first (a large one serves any request a small one could); one larger than the limit goes.
  void give(std::vector<std::byte> buffer);

  std::size_t kept_bytes() const;
  std::size_t kept_buffers() const;

 private:
  const std::size_t keep_bytes_;
  mutable std::mutex mu_;
  std::vector<std::vector<std::byte>> free_;  // by capacity, ascending
  std::size_t kept_ = 0;                      // their capacities' sum
};

}  // namespace kvstream::transport
