// What this CPU can run, for the vector paths of the codec (each keeps a scalar twin).
#pragma once

namespace kvstream::codec {

// AVX2, FMA, F16C and POPCNT, with the OS saving the YMM state.
bool cpu_has_avx2_f16c() noexcept;
// AVX-512 F, BW, VL and DQ, with the OS saving the ZMM state.
bool cpu_has_avx512() noexcept;
// Whether the AVX-512 variants run: the CPU has it and tests have not turned them off (to
// compare them with the AVX2 paths; on by default).
bool avx512_enabled() noexcept;
void set_avx512_enabled(bool enabled) noexcept;

}  // namespace kvstream::codec
