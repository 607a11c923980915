// Transform coding (codec/FORMAT.md "Transform coding"): RoPE angles computed the same way on
// every platform, and the per-token analysis (encoder) and synthesis (decoder) with a fixed
// order of fused multiply-adds, so that every decoder of the format writes the same bits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "kvstream/codec.hpp"

namespace kvstream::codec {

struct CosSin {
  float c, s;
};

// cos and sin of position * frequency, as FORMAT.md specifies them (double precision range
// reduction and Taylor polynomials, rounded to fp32).
CosSin rope_cos_sin(std::uint32_t position, float frequency) noexcept;

// The angles of tokens [begin, begin + count): count rows of frequencies.size() entries.
void rope_table(std::uint32_t begin, std::uint32_t count, std::span<const float> frequencies,
                std::vector<CosSin>& out);

// RoPE as fused multiply-adds per channel: out_c = fmaf(in_c, c_e, in_partner(c) * s_e), with
// partner(c) the other channel of c's pair and, for a token's pair of angle (c, s), c_e = c and
// s_e = -sign * s for the pair's first channel, +sign * s for its second. sign +1 turns K by the
// angle (the decoder: k_a = fmaf(z_a, c, -(z_b s)), k_b = fmaf(z_b, c, z_a s)), -1 turns it
// back (the encoder: z_a = fmaf(k_a, c, k_b s), z_b = fmaf(k_b, c, -(k_a s))). The tables hold
// c_e and s_e per token for `period` channels (a head, or 8 channels when heads are smaller).
struct RopeTurns {
  std::size_t period = 0;
  std::vector<float> c, s;
};
void rope_turns(const KvTransform& t, std::span<const CosSin> angles, std::size_t tokens,
                float sign, RopeTurns& out);

// Turns the C key values of `tokens` rows (strides in floats; in and out must not overlap), the
// first with row `first_row` of the tables.
void turn_keys(const KvTransform& t, const RopeTurns& turns, std::size_t first_row,
               std::size_t tokens, const float* in, std::size_t in_stride, float* out,
               std::size_t out_stride) noexcept;

// Turn tables of positions [0, rows) kept between chunks, as engines keep their RoPE cos and sin
// tables: a stream's chunks, and every context's, reuse them. Rebuilt when the transform or the
// direction changes, grown by doubling, never beyond 4 MiB (a chunk past that gets a table of
// its own).
class TurnCache {
 public:
  // A table holding tokens [begin, begin + count), and the row of `begin` in it.
  const RopeTurns& rows(const std::shared_ptr<const KvTransform>& t, float sign,
                        std::uint32_t begin, std::uint32_t count, std::size_t& first_row);

 private:
  std::shared_ptr<const KvTransform> for_;  // held: its address stays its own
  float sign_ = 0;
  std::size_t cached_ = 0;  // rows of cache_
  RopeTurns cache_, own_;
  std::vector<CosSin> angles_;
};

// Rows of n values whose two halves may lie apart: value i of row u is at
// (i < half ? lo : hi) + u * stride + i. Contiguous rows: lo = hi = base, stride = n.
template <class T>
struct HalfRows {
  T* lo;
  T* hi;
  std::size_t half, stride;
  T* at(std::size_t u, std::size_t i) const noexcept {
    return (i < half ? lo : hi) + u * stride + i;
  }
};

// out = M in for `tokens` rows of n values, M given transposed (`mt`: column j of M
// contiguous). Every path computes out_i as FORMAT.md's chain acc = fmaf(M_ij, in_j, acc) over
// j = 0..n-1 from acc = 0, so all agree bit for bit. The encoder applies A, the decoder S.
void multiply_rows(std::size_t n, std::span<const float> mt, std::size_t tokens,
                   HalfRows<const float> in, HalfRows<float> out) noexcept;

// The same product for inputs that are mostly zero (a decoder's quantized coefficients): each
// token's outputs accumulate only the columns of its nonzero inputs, in ascending j. That is
// FORMAT.md's chain bit for bit but for the sign of a zero result. A skipped term's product is
// ±0, which leaves a nonzero acc as it is and +0 as +0; a term with a nonzero product gives the
// same result from +0 as from -0. So both chains agree after every such term, and can differ
// only while acc sits at -0 (which only an underflowing product makes): a skipped term with a
// product of +0 turns it +0. An output that ends at -0 is therefore computed again over every
// column. When most inputs are nonzero, it is multiply_rows. The scratch is the caller's, kept
// between calls.
struct SparseScratch {
  std::vector<std::uint32_t> nonzero;  // per token, n entries of which counts[token] are used
  std::vector<float> values;
  std::vector<std::size_t> counts;
};
// How many trailing inputs of each half are zero at every token (a chunk's constant tails of
// zeros, FORMAT.md): they are not even looked at.
struct ZeroTails {
  std::size_t lo = 0, hi = 0;
};
void multiply_sparse_rows(std::size_t n, std::span<const float> mt, std::size_t tokens,
                          HalfRows<const float> in, HalfRows<float> out, SparseScratch& scratch,
                          ZeroTails zero_tails = {}) noexcept;

// Each layer's n x n matrix of `m` transposed, for multiply_rows.
void transpose_layers(std::span<const float> m, std::size_t n, std::vector<float>& out);

// Tests compare the vector paths of multiply_rows with the scalar one.
void set_simd_transform_enabled(bool enabled) noexcept;

}  // namespace kvstream::codec
