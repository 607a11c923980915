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
  // rANS is last-in first-out: encode in reverse so the decoder reads forward.
  for (std::size_t i = values.size(); i-- > 0;) {
    const RansValue& v = values[i];
    std::uint32_t& x = out.states[i % lanes];
    if (v.extra2_bits != 0) put_raw(x, v.extra2, v.extra2_bits, out.words);
    if (v.extra_bits != 0) put_raw(x, v.extra, v.extra_bits, out.words);
    if (v.raw_bits != 0) put_raw(x, v.raw, v.raw_bits, out.words);
    const TokenTable& t = bank[v.table];
    put_token(x, t.freq[v.token], t.cum[v.token], out.words);
  }
  std::reverse(out.words.begin(), out.words.end());
}

}  // namespace kvstream::codec
