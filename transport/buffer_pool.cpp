#include "buffer_pool.hpp"

#include <algorithm>

namespace kvstream::transport {

namespace {
bool by_capacity(const std::vector<std::byte>& a, const std::vector<std::byte>& b) {
  return a.capacity() < b.capacity();
}
}  // namespace

std::vector<std::byte> BufferPool::take(std::size_t bytes) {
  {
    std::lock_guard lock(mu_);
    const auto it = bytes == 0 ? (free_.empty() ? free_.end() : std::prev(free_.end()))
                               : std::find_if(free_.begin(), free_.end(),
                                              [&](const auto& b) { return b.capacity() >= bytes; });
    if (it != free_.end()) {
      std::vector<std::byte> out = std::move(*it);
      free_.erase(it);
      kept_ -= out.capacity();
      out.clear();
      return out;
    }
  }
  std::vector<std::byte> out;
  out.reserve(bytes + bytes / 16);
  return out;
}

void BufferPool::give(std::vector<std::byte> buffer) {
  const std::size_t cap = buffer.capacity();
  if (cap == 0 || cap > keep_bytes_) return;
  std::lock_guard lock(mu_);
  while (kept_ + cap > keep_bytes_) {
    kept_ -= free_.front().capacity();
    free_.erase(free_.begin());
  }
  const auto at = std::upper_bound(free_.begin(), free_.end(), buffer, by_capacity);
  free_.insert(at, std::move(buffer));
  kept_ += cap;
}

std::size_t BufferPool::kept_bytes() const {
  std::lock_guard lock(mu_);
  return kept_;
}

std::size_t BufferPool::kept_buffers() const {
  std::lock_guard lock(mu_);
  return free_.size();
}

}  // namespace kvstream::transport
