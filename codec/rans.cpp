#include "rans.hpp"

#include <algorithm>

#include "rans_avx2.hpp"

namespace kvstream::codec {

namespace {

// The state's words go out last-in first-out: the buffer fills from its end backwards, so
// the decoder reads it forwards.
struct BackWriter {
  std::uint16_t* base;
  std::size_t pos;
  void put(std::uint16_t w) noexcept { base[--pos] = w; }
};

inline void put_raw(std::uint32_t& x, std::uint32_t value, std::uint32_t bits, BackWriter& w) {
  // One renormalisation at most: after it x < 2^16 <= 2^(32 - bits).
  if (bits != 0 && (x >> (32 - bits)) != 0) {
    w.put(static_cast<std::uint16_t>(x & 0xFFFF));
    x >>= 16;
  }
  x = (x << bits) | value;
}

inline void put_token(std::uint32_t& x, std::uint32_t freq_cum, std::uint32_t rcp, BackWriter& w) {
  const std::uint32_t freq = freq_cum & 0xFFFF, cum = freq_cum >> 16;
  if ((x >> (32 - kProbBits)) >= freq) {  // x >= freq * 2^20: one word brings it below
    w.put(static_cast<std::uint16_t>(x & 0xFFFF));
    x >>= 16;
  }
  const auto [q, r] = divide_by_freq(x, freq, rcp);
  x = (q << kProbBits) + r + cum;
}

}  // namespace

void rans_encode_scalar(const RansSymbols& s, std::size_t first, std::size_t last,
                        std::uint32_t lanes, RansStream& out) {
  const std::uint32_t* freq_cum = table_bank_freq_cum();
  const std::uint32_t* rcp = table_bank_reciprocals();
  const std::size_t n = last - first;
  out.buffer.resize(rans_word_bound(n, s.extra_bits));
  out.states.assign(lanes, kRansLow);
  BackWriter w{out.buffer.data(), out.buffer.size()};
  const std::uint32_t extra_bits = std::min(s.extra_bits, 16u);
  const std::uint32_t extra2_bits = s.extra_bits > 16 ? s.extra_bits - 16 : 0;
  std::uint32_t* x = out.states.data();
  // The decoder works group by group (one value per lane), step by step across the group's
  // lanes (FORMAT.md), so the encoder undoes exactly that: last group first, last step first,
  // last lane first.
  for (std::size_t g = (n + lanes - 1) / lanes; g-- > 0;) {
    const std::size_t b = first + g * lanes;
    const std::size_t count = std::min<std::size_t>(lanes, last - b);
    if (extra2_bits != 0) {
      for (std::size_t j = count; j-- > 0;)
        put_raw(x[j], s.extra[b + j] >> 16, extra2_bits, w);
    }
    if (extra_bits != 0) {
      for (std::size_t j = count; j-- > 0;)
        put_raw(x[j], s.extra[b + j] & 0xFFFF, extra_bits, w);
    }
    for (std::size_t j = count; j-- > 0;)
      put_raw(x[j], s.raw[b + j], raw_bits_of(s.tokens[b + j]), w);
    for (std::size_t j = count; j-- > 0;) {
      const std::size_t k = s.table_row[(b + j) % s.channels] + s.tokens[b + j];
      put_token(x[j], freq_cum[k], rcp[k], w);
    }
  }
  out.begin = w.pos;
}

void rans_encode(std::span<const RansJob> jobs) {
  const bool simd = simd_encode_available();
  std::size_t i = 0;
  while (i < jobs.size()) {
    const RansJob& j = jobs[i];
    if (!(simd && rans_avx2_applies(j))) {
      rans_encode_scalar(*j.symbols, j.first, j.last, j.lanes, *j.out);
      ++i;
      continue;
    }
    // The run of vector jobs that follows, handed over together.
    std::size_t end = i + 1;
    while (end < jobs.size() && rans_avx2_applies(jobs[end]))
      ++end;
    rans_encode_avx2(jobs.subspan(i, end - i));
    i = end;
  }
}

}  // namespace kvstream::codec
