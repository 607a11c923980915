#include "rans.hpp"

#include <algorithm>

namespace kvstream::codec {

namespace {

inline void put_raw(std::uint32_t& x, std::uint32_t value, std::uint32_t bits,
                    std::vector<std::uint16_t>& words) {
  const std::uint64_t x_max = std::uint64_t{1} << (32 - bits);
  while (x >= x_max) {
    words.push_back(static_cast<std::uint16_t>(x & 0xFFFF));
    x >>= 16;
  }
  x = (x << bits) | value;
}

inline void put_token(std::uint32_t& x, std::uint32_t freq, std::uint32_t cum,
                      std::vector<std::uint16_t>& words) {
  const std::uint64_t x_max = std::uint64_t{freq} << (32 - kProbBits);
  while (x >= x_max) {
    words.push_back(static_cast<std::uint16_t>(x & 0xFFFF));
    x >>= 16;
  }
  x = ((x / freq) << kProbBits) + (x % freq) + cum;
}

}  // namespace

void rans_encode(std::span<const RansValue> values, std::uint32_t lanes, RansStream& out) {
  const auto& bank = table_bank();
  out.words.clear();
  out.states.assign(lanes, kRansLow);
  // rANS is last-in first-out: encode in reverse so the decoder reads forward. The decoder
  // works group by group (one value per lane), step by step across the group's lanes
  // (FORMAT.md), so the encoder undoes exactly that: last group first, last step first, last
  // lane first.
  const std::size_t n = values.size();
  for (std::size_t g = (n + lanes - 1) / lanes; g-- > 0;) {
    const std::size_t first = g * lanes;
    const std::size_t count = std::min<std::size_t>(lanes, n - first);
    for (std::size_t j = count; j-- > 0;) {
      const RansValue& v = values[first + j];
      if (v.extra2_bits != 0) put_raw(out.states[j], v.extra2, v.extra2_bits, out.words);
    }
    for (std::size_t j = count; j-- > 0;) {
      const RansValue& v = values[first + j];
      if (v.extra_bits != 0) put_raw(out.states[j], v.extra, v.extra_bits, out.words);
    }
    for (std::size_t j = count; j-- > 0;) {
      const RansValue& v = values[first + j];
      if (v.raw_bits != 0) put_raw(out.states[j], v.raw, v.raw_bits, out.words);
    }
    for (std::size_t j = count; j-- > 0;) {
      const RansValue& v = values[first + j];
      const TokenTable& t = bank[v.table];
      put_token(out.states[j], t.freq[v.token], t.cum[v.token], out.words);
    }
  }
  std::reverse(out.words.begin(), out.words.end());
}

}  // namespace kvstream::codec
