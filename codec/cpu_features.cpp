#include "cpu_features.hpp"

#include <cpuid.h>

#include <atomic>

namespace kvstream::codec {

namespace {

// CPUID directly: not every compiler's __builtin_cpu_supports knows "f16c".
bool detect_avx2_f16c() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return false;
  const bool fma = (c >> 12) & 1u, popcnt = (c >> 23) & 1u, osxsave = (c >> 27) & 1u;
  const bool avx = (c >> 28) & 1u, f16c = (c >> 29) & 1u;
  if (!(fma && popcnt && osxsave && avx && f16c)) return false;
  unsigned xcr0 = 0, xcr0_high = 0;
  __asm__("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0));
  if ((xcr0 & 6u) != 6u) return false;  // the OS saves XMM and YMM state
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  return (b >> 5) & 1u;  // AVX2
}

bool detect_avx512() noexcept {
  if (!detect_avx2_f16c()) return false;
  unsigned xcr0 = 0, xcr0_high = 0;
  __asm__("xgetbv" : "=a"(xcr0), "=d"(xcr0_high) : "c"(0));
  if ((xcr0 & 0xE6u) != 0xE6u) return false;  // XMM, YMM, opmask and both ZMM halves
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  const bool f = (b >> 16) & 1u, dq = (b >> 17) & 1u, bw = (b >> 30) & 1u, vl = (b >> 31) & 1u;
  return f && dq && bw && vl;
}

}  // namespace

std::atomic<bool> g_avx512_enabled{true};

bool avx512_enabled() noexcept {
  return cpu_has_avx512() && g_avx512_enabled.load(std::memory_order_relaxed);
}

void set_avx512_enabled(bool enabled) noexcept {
  g_avx512_enabled.store(enabled, std::memory_order_relaxed);
}

bool cpu_has_avx512() noexcept {
  static const bool has = detect_avx512();
  return has;
}

bool cpu_has_avx2_f16c() noexcept {
  static const bool has = detect_avx2_f16c();
  return has;
}

}  // namespace kvstream::codec
