// Value <-> (token, raw bits) mapping (FORMAT.md, "Symbols"). Pure functions: the CUDA kernels will
// call the same.
#pragma once

#include <bit>
#include <cstdint>

namespace kvstream::codec {

inline constexpr std::uint32_t kTokens = 64;

constexpr std::uint32_t zigzag(std::int32_t d) noexcept {
  return d >= 0 ? 2u * static_cast<std::uint32_t>(d)
                : 2u * static_cast<std::uint32_t>(-(d + 1)) + 1u;
}
constexpr std::int32_t unzigzag(std::uint32_t u) noexcept {
  return (u & 1u) ? -static_cast<std::int32_t>(u >> 1) - 1 : static_cast<std::int32_t>(u >> 1);
}
// Two's-complement wrap into [-32768, 32767].
constexpr std::int32_t wrap16(std::int32_t v) noexcept {
  return static_cast<std::int16_t>(static_cast<std::uint16_t>(static_cast<std::uint32_t>(v)));
}

struct TokenCode {
  std::uint32_t token;
  std::uint32_t raw_bits;  // how many
  std::uint32_t raw;       // their value
};

constexpr TokenCode token_of(std::uint32_t u) noexcept {
  if (u < 16) return {u, 0, 0};
  const std::uint32_t n = static_cast<std::uint32_t>(std::bit_width(u)) - 1;
  return {16 + 4 * (n - 4) + ((u >> (n - 2)) & 3u), n - 2, u & ((1u << (n - 2)) - 1u)};
}
constexpr std::uint32_t raw_bits_of(std::uint32_t token) noexcept {
  return token < 16 ? 0 : (token - 16) / 4 + 2;
}
// u from a token and its raw bits.
constexpr std::uint32_t value_of(std::uint32_t token, std::uint32_t raw) noexcept {
  if (token < 16) return token;
  const std::uint32_t n = (token - 16) / 4 + 4;
  return ((4u | (token & 3u)) << (n - 2)) | raw;
}

}  // namespace kvstream::codec
