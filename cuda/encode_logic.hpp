// The GPU encoder's per-thread logic (codec/encoder.cpp's passes, item by item), written once
// for both compilers: nvcc runs one thread per item (one warp per substream for the rANS coder),
// and the CPU tests run every item in turn (encode_on_host, the rANS coder lane by lane through
// HostTeam), so that the kernels' logic is tested where there is no GPU. Each pass
// computes what the CPU encoder computes, with the same integer and IEEE operations in the same
// order, so that the chunk's bytes are the CPU encoder's.
//
// Passes: (transform coding only: unturn and analysis into fp32 coefficients), statistics per
// (segment, channel), the host's choices (codec/segment_encoding), tokens per (segment,
// channel), a table per (segment, channel), then rANS per (segment, substream).
#pragma once

#include <cmath>
#include <cstdint>

#include "chunk_format.hpp"
#include "decode_logic.hpp"
#include "rans.hpp"  // kRansLow
#include "symbols.hpp"
#include "table_choice.hpp"

namespace kvstream::gpu {

inline constexpr std::uint64_t kNoBadValue = ~std::uint64_t{0};

KVS_HD float load_value(const std::byte* row, std::uint32_t c, std::uint32_t dtype) {
  if (dtype == 0) return reinterpret_cast<const float*>(row)[c];
  const std::uint16_t h = reinterpret_cast<const std::uint16_t*>(row)[c];
  return dtype == 1 ? half_to_float(h) : bf16_to_float(h);
}

KVS_HD std::uint32_t load_bits(const std::byte* row, std::uint32_t c, std::uint32_t dtype) {
  return dtype == 0 ? reinterpret_cast<const std::uint32_t*>(row)[c]
                    : std::uint32_t{reinterpret_cast<const std::uint16_t*>(row)[c]};
}

// Round half to even, as std::nearbyint does in the default rounding mode.
KVS_HD float round_even(float x) {
#if defined(__CUDA_ARCH__)
  return rintf(x);
#else
  return std::nearbyint(x);
#endif
}

KVS_HD std::int64_t to_fixed(float x) {
  return static_cast<std::int64_t>(static_cast<double>(x) * 65536.0);
}

struct EncodeArgs {
  ViewDesc src;                 // the values coded: the KV view, or the chunk's coefficients
  std::uint32_t src_begin = 0;  // the chunk's first token in src
  std::uint32_t segments = 0, channels = 0, tokens = 0;
  std::uint32_t coding = 0;  // codec::Coding
  std::uint32_t shift = 0;   // lossless codings: R
  // Per segment and channel (index segment * C + c).
  std::int64_t* sum = nullptr;  // lossy: of x in 16.16; lossless: of v
  std::int64_t* dev = nullptr;
  std::int64_t* step_dev = nullptr;
  std::int64_t* absmax = nullptr;
  const float* step = nullptr;              // lossy: from the host's choices
  std::int32_t* center = nullptr;           // lossy: the host's; lossless: this pass's
  const std::uint8_t* predicted = nullptr;  // per segment: previous-token predictor
  std::uint32_t per = 0;                    // tokens per substream
  std::uint8_t* table = nullptr;
  std::uint32_t* table_row = nullptr;
  // Lossy codings: whether every value of the channel is its center (it may join the segment's
  // constant tail, FORMAT.md), and per segment the channels its words code (C').
  std::uint8_t* constant = nullptr;
  std::uint32_t* coded = nullptr;
  // Per segment and value (index segment * T * C + t * C + c).
  std::uint8_t* token = nullptr;
  std::uint16_t* raw = nullptr;
  std::uint32_t* extra = nullptr;  // lossless only
  // Table choice: codec::table_bank()'s costs (table * 64 + token), token_weights(), and
  // spread_bounds().
  const std::uint32_t* bank_costs = nullptr;
  const std::uint32_t* token_weights = nullptr;
  const double* spread_bounds = nullptr;
  // rANS: the bank's freq | cum << 16 and reciprocals, and per substream (segment * S + k) a
  // region of `region_words` words that its words end, its 32 lane states and where its
  // words begin in the region.
  const std::uint32_t* freq_cum = nullptr;
  const std::uint32_t* reciprocals = nullptr;
  std::uint32_t substreams = 0, lanes = 0;
  std::uint64_t region_words = 0;
  std::uint16_t* words = nullptr;
  std::uint32_t* states = nullptr;
  std::uint64_t* word_begin = nullptr;

  KVS_HD const std::byte* row(std::uint32_t segment, std::uint32_t t) const {
    return src.row(segment, src_begin + t);
  }
  KVS_HD std::uint64_t value_index(std::uint32_t segment, std::uint32_t t, std::uint32_t c) const {
    return (std::uint64_t{segment} * tokens + t) * channels + c;
  }
};

// A transform's source check of (layer, part, channel) over `tokens` tokens from `begin`: the
// least key of a bad value in the CPU encoder's order there (layer, token, part, channel), or
// kNoBadValue.
KVS_HD std::uint64_t check_item(const ViewDesc& src, std::uint32_t begin, std::uint32_t tokens,
                                std::uint32_t channels, std::uint32_t layer, std::uint32_t part,
                                std::uint32_t c) {
  for (std::uint32_t t = 0; t < tokens; ++t) {
    const float x = load_value(src.row(2 * layer + part, begin + t), c, src.dtype);
    if (!(fabsf(x) <= codec::kMaxLossyMagnitude)) {
      return ((std::uint64_t{layer} * tokens + t) * 2 + part) * channels + c;
    }
  }
  return kNoBadValue;
}

// Statistics pass 1 of (segment, channel): lossy, the sum and largest magnitude of x in 16.16
// fixed point, and the key of its first bad value (its value_index: the CPU encoder reports the
// first in segment, token, channel order, the least key), or kNoBadValue; lossless, the sum of v.
KVS_HD std::uint64_t sums_item(const EncodeArgs& a, std::uint32_t segment, std::uint32_t c) {
  const std::uint64_t i = std::uint64_t{segment} * a.channels + c;
  std::int64_t sum = 0, absmax = 0;
  if (a.coding != 0) {
    const std::uint32_t sign_shift = a.src.dtype == 0 ? 31 : 15;
    for (std::uint32_t t = 0; t < a.tokens; ++t) {
      const std::uint32_t m =
          load_bits(a.row(segment, t), c, a.src.dtype) & ((1u << sign_shift) - 1u);
      sum += m >> a.shift;
    }
    a.sum[i] = sum;
    return kNoBadValue;
  }
  for (std::uint32_t t = 0; t < a.tokens; ++t) {
    const float x = load_value(a.row(segment, t), c, a.src.dtype);
    if (!(fabsf(x) <= codec::kMaxLossyMagnitude)) return a.value_index(segment, t, c);  // NaN too
    const std::int64_t xf = to_fixed(x), magnitude = xf < 0 ? -xf : xf;
    sum += xf;
    absmax = magnitude > absmax ? magnitude : absmax;
  }
  a.sum[i] = sum;
  a.absmax[i] = absmax;
  return kNoBadValue;
}

// Statistics pass 2 of a lossy (segment, channel): summed |x - mean| and |x(t) - x(t - 1)|.
KVS_HD void deviations_item(const EncodeArgs& a, std::uint32_t segment, std::uint32_t c) {
  const std::uint64_t i = std::uint64_t{segment} * a.channels + c;
  const std::int64_t mean = a.sum[i] / a.tokens;
  std::int64_t dev = 0, step_dev = 0, prev = 0;
  for (std::uint32_t t = 0; t < a.tokens; ++t) {
    const std::int64_t xf = to_fixed(load_value(a.row(segment, t), c, a.src.dtype));
    if (t == 0) prev = xf;
    dev += xf > mean ? xf - mean : mean - xf;
    step_dev += xf > prev ? xf - prev : prev - xf;
    prev = xf;
  }
  a.dev[i] = dev;
  a.step_dev[i] = step_dev;
}

// A channel's token counts: count k at at[k * stride] (on the device, a block's histograms
// interleaved in shared memory, so that a warp's counters fall in different banks).
struct Histogram {
  std::uint32_t* at;
  std::uint32_t stride;
  KVS_HD std::uint32_t& operator[](std::uint32_t k) const { return at[k * stride]; }
};

// Tokens, raw bits (and lossless raw fields) of (segment, channel), each value relative to its
// reference (FORMAT.md "Symbols"), and the channel's token histogram.
KVS_HD void tokenize_item(const EncodeArgs& a, std::uint32_t segment, std::uint32_t c,
                          const Histogram& hist) {
  const std::uint64_t i = std::uint64_t{segment} * a.channels + c;
  for (std::uint32_t k = 0; k < codec::kTokens; ++k)
    hist[k] = 0;
  const bool lossless = a.coding != 0;
  if (lossless) a.center[i] = static_cast<std::int32_t>(a.sum[i] / a.tokens);
  const bool previous = !lossless && a.predicted[segment] != 0;
  const std::uint32_t sign_shift = a.src.dtype == 0 ? 31 : 15;
  std::int32_t ref = a.center[i];
  for (std::uint32_t t = 0; t < a.tokens; ++t) {
    if (t % a.per == 0) ref = a.center[i];
    const std::byte* row = a.row(segment, t);
    const std::uint64_t at = a.value_index(segment, t, c);
    std::int32_t v;
    if (lossless) {
      const std::uint32_t bits = load_bits(row, c, a.src.dtype);
      const std::uint32_t m = bits & ((1u << sign_shift) - 1u);
      v = static_cast<std::int32_t>(m >> a.shift);
      a.extra[at] = ((m & ((1u << a.shift) - 1u)) << 1) | (bits >> sign_shift);
    } else {
      float q = round_even(load_value(row, c, a.src.dtype) / a.step[i]);
      q = q < -32767.0f ? -32767.0f : q > 32767.0f ? 32767.0f : q;
      v = static_cast<std::int32_t>(q);
    }
    const codec::TokenCode tc = codec::token_of(codec::zigzag(codec::wrap16(v - ref)));
    if (previous) ref = v;
    a.token[at] = static_cast<std::uint8_t>(tc.token);
    a.raw[at] = static_cast<std::uint16_t>(tc.raw);
    ++hist[tc.token];
  }
}

// The cheapest bank table of (segment, channel) for its histogram (codec/table_choice.hpp).
KVS_HD void table_item(const EncodeArgs& a, std::uint32_t segment, std::uint32_t c,
                       const Histogram& h) {
  const std::uint64_t i = std::uint64_t{segment} * a.channels + c;
  std::uint64_t weight_sum = 0;
  for (std::uint32_t k = 0; k < codec::kTokens; ++k)
    weight_sum += std::uint64_t{h[k]} * a.token_weights[k];
  const std::uint32_t table = codec::cheapest_table(
      codec::spread_guess(a.spread_bounds, weight_sum, a.tokens), [&](std::uint32_t t) {
        const std::uint32_t* cost = a.bank_costs + t * codec::kTokens;
        std::uint32_t sum = 0;
        for (std::uint32_t k = 0; k < codec::kTokens; ++k)
          sum += h[k] * cost[k];
        return sum;
      });
  a.table[i] = static_cast<std::uint8_t>(table);
  a.table_row[i] = table * codec::kTokens;
  a.constant[i] = a.coding == 0 && h[0] == a.tokens ? 1 : 0;
}

// One step of a group for every lane l < count (codec::rans_encode_values, in parallel): lanes
// whose state must shed a word first (`sheds`) each write one, in the serial encoder's order
// (descending lane: lane l's word goes below those of the shedding lanes above it), then every
// lane takes its symbol (`take`).
template <class Team, class Sheds, class Take>
KVS_HD void encode_step(Team& team, typename Team::template Var<std::uint32_t>& x,
                        std::uint32_t count, std::uint16_t* words, std::uint64_t& pos,
                        Sheds&& sheds, Take&& take) {
  const std::uint32_t shed = team.ballot([&](unsigned l) { return l < count && sheds(l, x[l]); });
  team.each([&](unsigned l) {
    if (l >= count) return;
    if ((shed >> l) & 1u) {
      const std::uint32_t above = popcount32(l == 31 ? 0u : shed >> (l + 1));
      words[pos - 1 - above] = static_cast<std::uint16_t>(x[l] & 0xFFFFu);
      x[l] >>= 16;
    }
    x[l] = take(l, x[l]);
  });
  pos -= popcount32(shed);
}

// Substream k of a segment through the entropy coder, one team lane per rANS lane: its words end
// its region, its states and where its words begin are recorded; substream 0 records the
// segment's coded channels. The same words as codec::rans_encode_values, which takes the lanes
// one after another, over the coded channels of each token (the CPU encoder closes its rows up
// to them; here value i of the substream is found in place).
template <class Team>
KVS_HD void substream_task(Team& team, const EncodeArgs& a, std::uint32_t segment,
                           std::uint32_t k) {
  const std::uint8_t* constant = a.constant + std::uint64_t{segment} * a.channels;
  const std::uint32_t coded =
      a.channels - codec::constant_tail(a.channels, [&](std::uint32_t c) { return constant[c]; });
  if (k == 0) {
    team.each([&](unsigned l) {
      if (l == 0) a.coded[segment] = coded;
    });
  }
  const std::uint64_t base = std::uint64_t{segment} * a.tokens * a.channels;
  const std::uint8_t* tokens = a.token + base;
  const std::uint16_t* raw = a.raw + base;
  const std::uint32_t* extra = a.coding == 0 ? nullptr : a.extra + base;
  const std::uint32_t* table_row = a.table_row + std::uint64_t{segment} * a.channels;
  const std::uint32_t extra_bits = a.coding == 0 ? 0 : a.shift + 1;
  const std::uint32_t bits1 = extra_bits < 16 ? extra_bits : 16;
  const std::uint32_t bits2 = extra_bits > 16 ? extra_bits - 16 : 0;
  const std::uint32_t L = a.lanes;
  const std::uint32_t t_end = (k + 1) * a.per < a.tokens ? (k + 1) * a.per : a.tokens;
  // Values [first, last) in the numbering of the coded channels; value i is at at(i).
  const std::uint64_t first = std::uint64_t{k} * a.per * coded;
  const std::uint64_t last = std::uint64_t{t_end} * coded;
  const auto at = [&](std::uint64_t i) { return (i / coded) * a.channels + i % coded; };
  const std::uint64_t s = std::uint64_t{segment} * a.substreams + k;
  std::uint16_t* words = a.words + s * a.region_words;
  std::uint64_t pos = a.region_words;
  typename Team::template Var<std::uint32_t> x;
  team.each([&](unsigned l) { x[l] = codec::kRansLow; });
  const auto raw_sheds = [](std::uint32_t bits) {
    return [bits](unsigned, std::uint32_t xl) { return bits != 0 && (xl >> (32 - bits)) != 0; };
  };
  for (std::uint64_t g = (last - first + L - 1) / L; g-- > 0;) {
    const std::uint64_t b = first + g * L;
    const auto count = static_cast<std::uint32_t>(last - b < L ? last - b : L);
    if (bits2 != 0) {
      encode_step(team, x, count, words, pos, raw_sheds(bits2), [&](unsigned l, std::uint32_t xl) {
        return (xl << bits2) | (extra[at(b + l)] >> 16);
      });
    }
    if (bits1 != 0) {
      encode_step(team, x, count, words, pos, raw_sheds(bits1), [&](unsigned l, std::uint32_t xl) {
        return (xl << bits1) | (extra[at(b + l)] & 0xFFFFu);
      });
    }
    encode_step(
        team, x, count, words, pos,
        [&](unsigned l, std::uint32_t xl) {
          const std::uint32_t bits = codec::raw_bits_of(tokens[at(b + l)]);
          return bits != 0 && (xl >> (32 - bits)) != 0;
        },
        [&](unsigned l, std::uint32_t xl) {
          return (xl << codec::raw_bits_of(tokens[at(b + l)])) | raw[at(b + l)];
        });
    const auto entry = [&](unsigned l) { return table_row[(b + l) % coded] + tokens[at(b + l)]; };
    encode_step(
        team, x, count, words, pos,
        [&](unsigned l, std::uint32_t xl) {
          return (xl >> (32 - codec::kProbBits)) >= (a.freq_cum[entry(l)] & 0xFFFFu);
        },
        [&](unsigned l, std::uint32_t xl) {
          const std::uint32_t e = entry(l), fc = a.freq_cum[e];
          const codec::QuotientRemainder qr =
              codec::divide_by_freq(xl, fc & 0xFFFFu, a.reciprocals[e]);
          return (qr.q << codec::kProbBits) + qr.r + (fc >> 16);
        });
  }
  team.each([&](unsigned l) {
    if (l < L) a.states[32 * s + l] = x[l];
  });
  a.word_begin[s] = pos;
}

// Transform coding (FORMAT.md): z rows (K turned back by RoPE, then V; fp32, [layer][token][2C])
// and the coefficients y = A z, chains acc = fmaf(A[i][j], z_j, acc) over j ascending, into a
// contiguous fp32 KV of the chunk's tokens (layer's "K" rows coefficients 0..C-1, "V" C..2C-1).
struct AnalysisArgs {
  ViewDesc src;
  std::uint32_t src_begin = 0;
  std::uint32_t channels = 0, head_dim = 0, layers = 0, tokens = 0;
  bool halves = false;            // RoPE pairing, as SynthesisArgs has it
  const float* angles = nullptr;  // (cos, sin) per token and pair; null: K is not rotated
  float* z = nullptr;
  const float* analysis_t = nullptr;  // per layer A transposed: A[i][j] at j * 2C + i
  float* coefficients = nullptr;      // [layer][K|V][token][C]
};

// z value q (of 2C) of (layer, token t).
KVS_HD void unturn_item(const AnalysisArgs& a, std::uint32_t layer, std::uint32_t t,
                        std::uint32_t q) {
  const std::uint32_t C = a.channels;
  float* z = a.z + (std::uint64_t{layer} * a.tokens + t) * 2 * C;
  if (q >= C) {
    z[q] = load_value(a.src.row(2 * layer + 1, a.src_begin + t), q - C, a.src.dtype);
    return;
  }
  const std::byte* k = a.src.row(2 * layer, a.src_begin + t);
  if (a.angles == nullptr) {
    z[q] = load_value(k, q, a.src.dtype);
    return;
  }
  // z_a = fmaf(k_a, c, k_b s), z_b = fmaf(k_b, c, -(k_a s)) (transform.hpp's turn, sign -1).
  const std::uint32_t half = a.head_dim / 2, d = q % a.head_dim;
  const bool first = a.halves ? d < half : d % 2 == 0;
  const std::uint32_t pair = a.halves ? d % half : d / 2;
  const std::uint32_t partner = a.halves ? (first ? q + half : q - half) : q ^ 1u;
  const float* cs = a.angles + 2 * (std::uint64_t{t} * half + pair);
  const float s = first ? cs[1] : -cs[1];
  z[q] = fmaf(load_value(k, q, a.src.dtype), cs[0], load_value(k, partner, a.src.dtype) * s);
}

// Coefficient i (of 2C) of (layer, token t).
KVS_HD void analysis_item(const AnalysisArgs& a, std::uint32_t layer, std::uint32_t t,
                          std::uint32_t i) {
  const std::uint32_t C = a.channels, n = 2 * C;
  const float* z = a.z + (std::uint64_t{layer} * a.tokens + t) * n;
  const float* m = a.analysis_t + std::uint64_t{layer} * n * n + i;
  float acc = 0.0f;
  for (std::uint32_t j = 0; j < n; ++j)
    acc = fmaf(m[std::uint64_t{j} * n], z[j], acc);
  const std::uint32_t part = i < C ? 0 : 1;
  a.coefficients[((std::uint64_t{2 * layer + part}) * a.tokens + t) * C + (i % C)] = acc;
}

}  // namespace kvstream::gpu
