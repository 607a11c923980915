#include "rans.hpp"

#include "rans_avx2.hpp"

namespace kvstream::codec {

void rans_encode_scalar(const RansSymbols& s, std::size_t first, std::size_t last,
                        std::uint32_t lanes, RansStream& out) {
  out.buffer.resize(rans_word_bound(last - first, s.extra_bits));
  out.states.assign(lanes, kRansLow);
  BackWriter w{out.buffer.data(), out.buffer.size()};
  rans_encode_values(s, first, last, lanes, table_bank_freq_cum(), table_bank_reciprocals(),
                     out.states.data(), w);
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
