#include "crc32c.hpp"

#include <cpuid.h>
#include <nmmintrin.h>

#include <array>
#include <cstring>

namespace kvstream::codec {

namespace {

constexpr std::uint32_t kPoly = 0x82F63B78u;  // 0x1EDC6F41 reflected

constexpr std::array<std::array<std::uint32_t, 256>, 8> make_tables() {
  std::array<std::array<std::uint32_t, 256>, 8> t{};
  for (std::uint32_t i = 0; i < 256; ++i) {
    std::uint32_t c = i;
    for (int k = 0; k < 8; ++k)
      c = (c >> 1) ^ (kPoly & (0u - (c & 1u)));
    t[0][i] = c;
  }
  for (std::size_t s = 1; s < 8; ++s) {
    for (std::size_t i = 0; i < 256; ++i)
      t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
  }
  return t;
}

constexpr auto kTables = make_tables();

// SSE4.2's crc32 instruction computes this very CRC, 8 bytes per instruction: several times the
// speed of the tables, which matters because the decoder checks every byte of every chunk.
bool cpu_has_sse42() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
  return (c >> 20) & 1u;
}

// The instruction's latency (3 cycles) is what limits one stream; three streams over the
// thirds of a block run in parallel and are joined by shifting a CRC over the zero bytes that
// follow it (linearity: crc(A ++ B) = shift(crc(A), |B|) xor crc_from_zero(B)). The shift
// for a fixed length is a 32 x 32 matrix over GF(2), applied a byte at a time from four
// tables, as in Mark Adler's crc32c.c.
constexpr std::size_t kLong = 1024, kShort = 128;  // bytes per stream of a block

using Matrix = std::array<std::uint32_t, 32>;

std::uint32_t gf2_times(const Matrix& m, std::uint32_t v) {
  std::uint32_t sum = 0;
  for (std::size_t i = 0; v != 0; v >>= 1, ++i) {
    if (v & 1u) sum ^= m[i];
  }
  return sum;
}

Matrix gf2_square(const Matrix& m) {
  Matrix sq{};
  for (std::size_t i = 0; i < 32; ++i)
    sq[i] = gf2_times(m, m[i]);
  return sq;
}

using ShiftTables = std::array<std::array<std::uint32_t, 256>, 4>;

// The operator that appends `bytes` zero bytes (a power of two) to a raw CRC register.
ShiftTables zeros_shift(std::size_t bytes) {
  Matrix op{};  // one zero bit
  op[0] = kPoly;
  for (std::uint32_t i = 1; i < 32; ++i)
    op[i] = 1u << (i - 1);
  for (std::size_t bits = 1; bits < 8 * bytes; bits *= 2)
    op = gf2_square(op);
  ShiftTables t{};
  for (std::uint32_t n = 0; n < 256; ++n) {
    for (std::uint32_t k = 0; k < 4; ++k)
      t[k][n] = gf2_times(op, n << (8 * k));
  }
  return t;
}

std::uint32_t shift(const ShiftTables& t, std::uint32_t crc) {
  return t[0][crc & 0xFF] ^ t[1][(crc >> 8) & 0xFF] ^ t[2][(crc >> 16) & 0xFF] ^ t[3][crc >> 24];
}

// Three streams over blocks of 3 x `stream` bytes, while whole blocks remain.
template <std::size_t kStream>
__attribute__((target("sse4.2"), always_inline)) inline std::uint64_t crc32c_blocks(
    const unsigned char*& p, std::size_t& n, std::uint64_t c0, const ShiftTables& t) {
  for (; n >= 3 * kStream; n -= 3 * kStream, p += 3 * kStream) {
    std::uint64_t c1 = 0, c2 = 0;
    for (std::size_t i = 0; i < kStream; i += 8) {
      std::uint64_t w0, w1, w2;
      std::memcpy(&w0, p + i, 8);
      std::memcpy(&w1, p + kStream + i, 8);
      std::memcpy(&w2, p + 2 * kStream + i, 8);
      c0 = _mm_crc32_u64(c0, w0);
      c1 = _mm_crc32_u64(c1, w1);
      c2 = _mm_crc32_u64(c2, w2);
    }
    c0 = shift(t, static_cast<std::uint32_t>(c0)) ^ c1;
    c0 = shift(t, static_cast<std::uint32_t>(c0)) ^ c2;
  }
  return c0;
}

// The raw register after `n` bytes from raw register `crc`.
__attribute__((target("sse4.2"))) std::uint32_t crc32c_sse42(const unsigned char* p, std::size_t n,
                                                             std::uint32_t crc) noexcept {
  static const ShiftTables long_shift = zeros_shift(kLong), short_shift = zeros_shift(kShort);
  std::uint64_t c = crc;
  c = crc32c_blocks<kLong>(p, n, c, long_shift);
  c = crc32c_blocks<kShort>(p, n, c, short_shift);
  for (; n >= 8; n -= 8, p += 8) {
    std::uint64_t w;
    std::memcpy(&w, p, 8);
    c = _mm_crc32_u64(c, w);
  }
  auto c32 = static_cast<std::uint32_t>(c);
  for (; n > 0; --n)
    c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}

}  // namespace

std::uint32_t crc32c(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  static const bool hardware = cpu_has_sse42();
  if (!hardware) return crc32c_portable(data, crc);
  return ~crc32c_sse42(reinterpret_cast<const unsigned char*>(data.data()), data.size(), ~crc);
}

std::uint32_t crc32c_portable(std::span<const std::byte> data, std::uint32_t crc) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(data.data());
  std::size_t n = data.size();
  crc = ~crc;
  while (n >= 8) {
    std::uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= crc;
    crc = kTables[7][lo & 0xFF] ^ kTables[6][(lo >> 8) & 0xFF] ^ kTables[5][(lo >> 16) & 0xFF] ^
          kTables[4][lo >> 24] ^ kTables[3][hi & 0xFF] ^ kTables[2][(hi >> 8) & 0xFF] ^
          kTables[1][(hi >> 16) & 0xFF] ^ kTables[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0)
    crc = (crc >> 8) ^ kTables[0][(crc ^ *p++) & 0xFF];
  return ~crc;
}

}  // namespace kvstream::codec
