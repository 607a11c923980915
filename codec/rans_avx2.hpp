// The AVX2 rANS encoder: 8 lanes in one vector, bit for bit the scalar encoder's output.
#pragma once

#include <cstddef>

#include "rans.hpp"

namespace kvstream::codec {

// True when this CPU runs the AVX2 encoder paths and they are enabled.
bool simd_encode_available() noexcept;
// Tests turn the paths off to compare them with the scalar encoder (on by default).
void set_simd_encode_enabled(bool enabled) noexcept;

// rans_encode for 8 lanes, channels a multiple of 8 and extra fields of at most 16 bits.
void rans_encode_avx2(const RansSymbols& symbols, std::size_t first, std::size_t last,
                      RansStream& out);

}  // namespace kvstream::codec
