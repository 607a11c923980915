#include "cpu_features.hpp"

#include <cpuid.h>

namespace kvstream::codec {

namespace {

// CPUID directly: not every compiler's __builtin_cpu_supports knows "f16c".
bool detect_avx2_f16c() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
  const bool popcnt = (c >> 23) & 1u, osxsave = (c >> 27) & 1u, avx = (c >> 28) & 1u;
  const bool f16c = (c >> 29) & 1u;
  if (!(popcnt && osxsave && avx && f16c)) return false;
  unsigned xcr0 = 0, xcr0_high = 0;
  __asm__("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0));
  if ((xcr0 & 6u) != 6u) return false;  // the OS saves XMM and YMM state
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  return (b >> 5) & 1u;  // AVX2
}

}  // namespace

bool cpu_has_avx2_f16c() noexcept {
  static const bool has = detect_avx2_f16c();
  return has;
}

}  // namespace kvstream::codec
