// Damage that the checksums cannot see: after a test changes a segment's bytes, reseal() writes
// that segment's CRC32C and the header's again (FORMAT.md "Chunk header"), so that only the
// decoder's own checks can find what is wrong.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "crc32c.hpp"

namespace kvstream::testing_data {

inline void reseal(std::vector<std::byte>& chunk, std::uint32_t segment) {
  std::uint32_t offset, size;
  const std::size_t entry = 48 + 12 * std::size_t{segment};
  std::memcpy(&offset, chunk.data() + entry, 4);
  std::memcpy(&size, chunk.data() + entry + 4, 4);
  const std::uint32_t crc = codec::crc32c(std::span(chunk).subspan(offset, size));
  std::memcpy(chunk.data() + entry + 8, &crc, 4);
  std::uint32_t segments;
  std::memcpy(&segments, chunk.data() + 32, 4);
  std::uint32_t h = codec::crc32c(std::span(chunk).first(44));
  h = codec::crc32c(std::span(chunk).subspan(48, 12 * std::size_t{segments}), h);
  std::memcpy(chunk.data() + 44, &h, 4);
}

}  // namespace kvstream::testing_data
