// The AVX2 rANS encoder: 8 lanes in one vector, bit for bit the scalar encoder's output.
#pragma once

#include <cstddef>

#include "rans.hpp"

namespace kvstream::codec {

// True when this CPU runs the AVX2 encoder paths and they are enabled.
bool simd_encode_available() noexcept;
// Tests turn the paths off to compare them with the scalar encoder (on by default).
void set_simd_encode_enabled(bool enabled) noexcept;

// Whether rans_encode_avx2 takes a job: 8 lanes, channels a nonzero multiple of 8, extra fields
// of at most 16 bits, some values.
constexpr bool rans_avx2_applies(const RansJob& j) noexcept {
  return j.lanes == 8 && j.symbols->channels % 8 == 0 && j.symbols->channels != 0 &&
         j.symbols->extra_bits <= 16 && j.last > j.first;
}

// Encodes jobs that rans_avx2_applies to. A job's groups form one serial chain (the 8 lanes
// share a vector), so jobs of equal length run four (or two) side by side to hide its latency.
void rans_encode_avx2(std::span<const RansJob> jobs);

}  // namespace kvstream::codec
