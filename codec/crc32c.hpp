// CRC32C (Castagnoli), the checksum of the chunk format: SSE4.2's instruction where the CPU
// has it, software slicing-by-8 otherwise.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace kvstream::codec {

// Continues a CRC: crc32c(b, crc32c(a)) == crc32c(a ++ b). Start with 0.
std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;
// The table-driven version, whatever the CPU (tests compare the two).
std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc = 0) noexcept;

}  // namespace kvstream::codec
