// What this CPU can run, for the vector paths of the codec (each keeps a scalar twin).
#pragma once

namespace kvstream::codec {

// AVX2, F16C and POPCNT, with the OS saving the YMM state.
bool cpu_has_avx2_f16c() noexcept;

}  // namespace kvstream::codec
