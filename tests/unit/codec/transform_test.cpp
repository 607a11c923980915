// Transform coding (codec/FORMAT.md "Transform coding"): the rotation angles, the matrix product
// of every path, and chunks coded with a profile's transform.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <vector>

#include "cpu_features.hpp"
#include "decoder_avx2.hpp"
#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"
#include "rans_avx2.hpp"
#include "transform.hpp"

namespace kvstream {
namespace {

using testing_data::make_test_transform;

std::string hex8(std::uint32_t v) {
  char b[9];
  std::snprintf(b, sizeof b, "%08x", v);
  return b;
}
using testing_data::make_transform_profile;

TEST(Transform, RopeAnglesAreAccurateAndEveryPathAgrees) {
  const std::vector<float> freqs = {1.0f, 0.31622776f, 0.1f, 0.0031622776f, 1e-4f, -0.5f, 7.25f};
  double worst = 0;
  for (std::uint32_t pos : {0u, 1u, 2u, 3u, 100u, 511u, 4095u, 65537u, 1000003u}) {
    for (float f : freqs) {
      const codec::CosSin cs = codec::rope_cos_sin(pos, f);
      const double theta = static_cast<double>(pos) * f;
      worst =
          std::max({worst, std::fabs(cs.c - std::cos(theta)), std::fabs(cs.s - std::sin(theta))});
    }
  }
  EXPECT_LT(worst, 1e-6);  // fp32 rounding of a double-accurate value
  // The table (four angles at a time where the CPU can) equals the scalar definition.
  std::vector<codec::CosSin> table;
  codec::rope_table(1000, 37, freqs, table);
  ASSERT_EQ(table.size(), 37 * freqs.size());
  for (std::size_t i = 0; i < table.size(); ++i) {
    const auto want = codec::rope_cos_sin(1000 + static_cast<std::uint32_t>(i / freqs.size()),
                                          freqs[i % freqs.size()]);
    ASSERT_EQ(std::bit_cast<std::uint32_t>(table[i].c), std::bit_cast<std::uint32_t>(want.c)) << i;
    ASSERT_EQ(std::bit_cast<std::uint32_t>(table[i].s), std::bit_cast<std::uint32_t>(want.s)) << i;
  }
}

// Every path of multiply_rows, for sizes that exercise full and partial vector blocks, with
// contiguous and split halves.
TEST(Transform, MatrixProductIsTheSameOnEveryPath) {
  for (std::size_t n : {64u, 48u, 24u, 20u, 128u}) {
    const std::size_t tokens = 11;
    std::vector<float> m(n * n), in(n * tokens), lo(n / 2 * tokens), hi(n / 2 * tokens);
    for (std::size_t i = 0; i < m.size(); ++i)
      m[i] = static_cast<float>(testing_data::gaussish(i * 3 + n));
    for (std::size_t i = 0; i < in.size(); ++i)
      in[i] = static_cast<float>(std::round(40 * testing_data::gaussish(i * 5 + 1)));
    std::vector<std::vector<float>> results;
    for (int path = 0; path < 3; ++path) {
      codec::set_simd_transform_enabled(path > 0);
      codec::set_avx512_enabled(path == 2);
      std::vector<float> out(n * tokens);
      codec::multiply_rows(n, m, tokens, {in.data(), in.data(), n / 2, n},
                           {out.data(), out.data(), n / 2, n});
      results.push_back(out);
      // The same product into split halves.
      codec::multiply_rows(n, m, tokens, {in.data(), in.data(), n / 2, n},
                           {lo.data(), hi.data() - n / 2, n / 2, n / 2});
      for (std::size_t t = 0; t < tokens; ++t) {
        for (std::size_t i = 0; i < n; ++i) {
          const float got = i < n / 2 ? lo[t * n / 2 + i] : hi[t * n / 2 + i - n / 2];
          ASSERT_EQ(got, out[t * n + i]) << n << " " << path;
        }
      }
    }
    codec::set_simd_transform_enabled(true);
    codec::set_avx512_enabled(true);
    for (std::size_t i = 0; i < n * tokens; ++i) {
      ASSERT_EQ(std::bit_cast<std::uint32_t>(results[1][i]),
                std::bit_cast<std::uint32_t>(results[0][i]))
          << "AVX2, n " << n << " value " << i;
      ASSERT_EQ(std::bit_cast<std::uint32_t>(results[2][i]),
                std::bit_cast<std::uint32_t>(results[0][i]))
          << "AVX-512, n " << n << " value " << i;
    }
  }
}

// The decoder's sparse product gives FORMAT.md's chain bit for bit on every path: for mostly
// zero inputs (the sparse loops), mostly nonzero ones (the blocked product), split halves, and
// outputs whose chain passes through -0 (an underflowing product) before zero inputs whose
// columns are positive turn it +0; and halves that end in inputs zero at every token, which it
// is told of (a chunk's constant tails) and does not look at.
TEST(Transform, SparseProductIsTheChainBitForBit) {
  for (std::size_t n : {256u, 128u, 48u, 24u, 20u}) {
    const std::pair<std::size_t, std::size_t> tails[] = {{0, 0}, {5, n / 2}, {n / 2, 3}, {8, 16}};
    for (const auto& [zero_lo, zero_hi] : tails)
      for (double density : {0.05, 0.3, 0.9}) {
        const std::size_t tokens = 13;
        std::vector<float> m(n * n), in(n * tokens);
        for (std::size_t i = 0; i < m.size(); ++i)
          m[i] = static_cast<float>(testing_data::gaussish(i * 7 + n));
        for (std::size_t i = 0; i < in.size(); ++i) {
          const double u = static_cast<double>(testing_data::mix(i * 11 + 3) >> 11) * 0x1p-53;
          in[i] = u < density
                      ? static_cast<float>(std::round(20 * testing_data::gaussish(i * 5 + 1)))
                      : 0.0f;
        }
        // Token 0, output 1: a product that underflows to -0 (column 2 of M holds 1e-30 at row 1,
        // input 2 is -1e-20), then zero inputs whose entries in row 1 are positive.
        for (std::size_t j = 0; j < n; ++j) {
          in[j] = j == 2 ? -1e-20f : 0.0f;
          m[j * n + 1] = j == 2 ? 1e-30f : 0.5f;
        }
        for (std::size_t t = 0; t < tokens; ++t) {
          for (std::size_t j = 0; j < n; ++j) {
            const bool tail = j < n / 2 ? j >= n / 2 - std::min(zero_lo, n / 2)
                                        : j >= n - std::min(zero_hi, n / 2);
            if (tail) in[t * n + j] = 0.0f;
          }
        }
        std::vector<float> want(n * tokens);
        codec::set_simd_transform_enabled(false);
        codec::multiply_rows(n, m, tokens, {in.data(), in.data(), n / 2, n},
                             {want.data(), want.data(), n / 2, n});
        ASSERT_EQ(std::bit_cast<std::uint32_t>(want[1]), 0u) << "the chain ends at +0";
        for (int path = 0; path < 3; ++path) {
          codec::set_simd_transform_enabled(path > 0);
          codec::set_avx512_enabled(path == 2);
          codec::SparseScratch scratch;
          std::vector<float> lo(n / 2 * tokens), hi(n / 2 * tokens);
          codec::multiply_sparse_rows(n, m, tokens, {in.data(), in.data(), n / 2, n},
                                      {lo.data(), hi.data() - n / 2, n / 2, n / 2}, scratch,
                                      {zero_lo, zero_hi});
          for (std::size_t t = 0; t < tokens; ++t) {
            for (std::size_t i = 0; i < n; ++i) {
              const float got = i < n / 2 ? lo[t * n / 2 + i] : hi[t * n / 2 + i - n / 2];
              ASSERT_EQ(std::bit_cast<std::uint32_t>(got),
                        std::bit_cast<std::uint32_t>(want[t * n + i]))
                  << "n " << n << " density " << density << " path " << path << " token " << t
                  << " output " << i << " zero tails " << zero_lo << " " << zero_hi;
            }
          }
        }
        codec::set_simd_transform_enabled(true);
        codec::set_avx512_enabled(true);
      }
  }
}

// RoPE by fused multiply-adds: every path (shuffles for small heads, loads of the other half
// for large ones, the scalar fallback) gives the same bits, and turning back undoes a turn.
TEST(Transform, RopeTurnsAreTheSameOnEveryPathAndInvertible) {
  for (RopePairs pairs : {RopePairs::interleaved, RopePairs::halves}) {
    for (std::uint32_t hd : {2u, 4u, 6u, 8u, 16u, 32u}) {
      KvTransform t;
      t.head_dim = hd;
      t.channels = hd < 8 ? 24 : 2 * hd;  // multiples of 8; head_dim 6 has no vector path
      t.pairs = pairs;
      for (std::uint32_t i = 0; i < hd / 2; ++i)
        t.frequencies.push_back(1.0f / static_cast<float>(1 + 3 * i));
      const std::size_t C = t.channels, tokens = 5;
      std::vector<codec::CosSin> angles;
      codec::rope_table(300, tokens, t.frequencies, angles);
      std::vector<float> k(tokens * C), turned(tokens * C), scalar(tokens * C), back(tokens * C);
      for (std::size_t i = 0; i < k.size(); ++i)
        k[i] = static_cast<float>(testing_data::gaussish(i + hd * 1000));
      codec::RopeTurns forward, backward;
      codec::rope_turns(t, angles, tokens, 1.0f, forward);
      codec::rope_turns(t, angles, tokens, -1.0f, backward);
      codec::turn_keys(t, forward, 0, tokens, k.data(), C, turned.data(), C);
      codec::set_simd_transform_enabled(false);
      codec::turn_keys(t, forward, 0, tokens, k.data(), C, scalar.data(), C);
      codec::set_simd_transform_enabled(true);
      EXPECT_EQ(turned, scalar) << "head_dim " << hd;
      codec::turn_keys(t, backward, 0, tokens, turned.data(), C, back.data(), C);
      for (std::size_t i = 0; i < k.size(); ++i)
        ASSERT_NEAR(back[i], k[i], 1e-5) << "head_dim " << hd << " value " << i;
      // The first pair of the first head of token 0 turns by 300 * frequency 1.
      const std::size_t a = 0, b = pairs == RopePairs::interleaved ? 1 : hd / 2;
      const double c = std::cos(300.0), s_ = std::sin(300.0);
      EXPECT_NEAR(turned[a], k[a] * c - k[b] * s_, 1e-5);
      EXPECT_NEAR(turned[b], k[b] * c + k[a] * s_, 1e-5);
    }
  }
}

struct Chunk {
  std::unique_ptr<KvBuffer> src;
  std::vector<std::byte> bytes;
};

Chunk encode(const KvLayout& layout, const CodecProfile& profile, std::uint8_t level,
             std::uint32_t begin, std::uint32_t count) {
  Chunk c;
  c.src = std::make_unique<KvBuffer>(*KvBuffer::create(layout));
  testing_data::fill_synthetic(c.src->view(), 11, false);
  EncodeOptions o;
  o.level = level;
  o.profile = &profile;
  EXPECT_TRUE(encode_chunk(c.src->view(), begin, count, o, c.bytes).is_ok());
  return c;
}

TEST(Transform, ChunksRoundTripWithinTheirStepsOnEveryPath) {
  for (DType dt : {DType::f16, DType::bf16, DType::f32}) {
    const KvLayout layout{3, 2, 8, dt, 150};
    const CodecProfile profile = make_transform_profile(3, 2, 8, 5);
    const KvTransform& t = *profile.transform();
    for (std::uint8_t level : {1, 3}) {
      const Chunk c = encode(layout, profile, level, 20, 130);
      auto info = read_chunk_info(c.bytes);
      ASSERT_TRUE(info);
      EXPECT_TRUE(info->transformed);
      EXPECT_EQ(info->transform_id, t.id());
      // Bound: the error of a value is at most sum_j |S_ij| step / 2 (each coefficient within
      // half a step), plus the rounding of the destination and of the arithmetic.
      const float step = profile.relative_step(level, 0, KvPart::key, 0);
      const std::size_t C = 16, n = 32;
      std::vector<KvBuffer> outs;
      for (int path = 0; path < 4; ++path) {
        codec::set_simd_decode_enabled(path != 0);
        codec::set_simd_transform_enabled(path != 0);
        codec::set_avx512_enabled(path >= 2);
        auto out = KvBuffer::create(KvLayout{3, 2, 8, DType::f32, 150});
        ASSERT_TRUE(decode_chunk(c.bytes, out->view(), &profile).is_ok());
        outs.push_back(std::move(*out));
      }
      codec::set_simd_decode_enabled(true);
      codec::set_simd_transform_enabled(true);
      codec::set_avx512_enabled(true);
      for (std::size_t p = 1; p < outs.size(); ++p) {
        EXPECT_TRUE(
            std::equal(outs[p].bytes().begin(), outs[p].bytes().end(), outs[0].bytes().begin()))
            << "path " << p << " differs from the scalar decoder";
      }
      double worst = 0;
      for (std::uint32_t l = 0; l < 3; ++l) {
        for (KvPart part : {KvPart::key, KvPart::value}) {
          // Before RoPE: z_i is within sum_j |S_ij| step / 2.
          const auto z_bound = [&](std::size_t i) {
            double b = 0;
            for (std::size_t j = 0; j < n; ++j)
              b += std::fabs(t.synthesis[l * n * n + i * n + j]) * step / 2;
            return b;
          };
          for (std::size_t c_ = 0; c_ < C; ++c_) {
            // RoPE turns K's pair (2i, 2i + 1) by an angle: its errors combine as a vector.
            const double bound =
                (part == KvPart::key ? std::hypot(z_bound(c_ & ~std::size_t{1}), z_bound(c_ | 1))
                                     : z_bound(C + c_)) +
                1e-3;
            for (std::uint32_t tok = 20; tok < 150; ++tok) {
              const double x = testing_data::float_at(c.src->view(), l, part, tok, c_);
              const double y = testing_data::float_at(outs[0].view(), l, part, tok, c_);
              ASSERT_LE(std::fabs(x - y), bound) << "layer " << l << " token " << tok;
              worst = std::max(worst, std::fabs(x - y) / bound);
            }
          }
        }
      }
      EXPECT_GT(worst, 0.01) << "suspiciously exact: is the transform applied?";
      // Untouched tokens stay zero.
      EXPECT_EQ(testing_data::float_at(outs[0].view(), 0, KvPart::key, 19, 0), 0.0);
      // Paged and fp16 destinations hold the same values, rounded.
      auto paged = PagedKvBuffer::create(KvLayout{3, 2, 8, DType::f16, 160}, 16, 12,
                                         std::vector<std::uint32_t>{11, 3, 0, 7, 1, 2, 4, 5, 6, 8});
      ASSERT_TRUE(paged);
      ASSERT_TRUE(decode_chunk(c.bytes, paged->view(), &profile).is_ok());
      for (std::uint32_t tok = 20; tok < 150; tok += 7) {
        const float want =
            static_cast<float>(testing_data::float_at(outs[0].view(), 2, KvPart::value, tok, 5));
        EXPECT_EQ(testing_data::float_at(paged->view(), 2, KvPart::value, tok, 5),
                  half_to_float(float_to_half(want)));
      }
    }
  }
}

// A coder keeps RoPE tables between chunks: chunks at any position, in any order, code and
// decode as a fresh coder does, the ones past the kept tables (65536 positions here) too.
TEST(Transform, KeptRopeTablesChangeNothing) {
  const KvLayout layout{1, 1, 8, DType::f16, 70100};
  const CodecProfile profile = make_transform_profile(1, 1, 8, 6);
  auto src = KvBuffer::create(layout);
  testing_data::fill_synthetic(src->view(), 3, false);
  EncodeOptions o;
  o.level = 1;
  o.profile = &profile;
  ChunkEncoder encoder;
  ChunkDecoder decoder;
  auto kept = KvBuffer::create(layout), fresh = KvBuffer::create(layout);
  for (std::uint32_t begin : {0u, 128u, 5000u, 70000u, 64u, 0u}) {
    std::vector<std::byte> a, b;
    ASSERT_TRUE(encoder.encode(src->view(), begin, 100, o, a).is_ok());
    ASSERT_TRUE(encode_chunk(src->view(), begin, 100, o, b).is_ok());
    EXPECT_EQ(a, b) << "encoder, chunk at " << begin;
    ASSERT_TRUE(decoder.decode(a, kept->view(), &profile).is_ok());
    ASSERT_TRUE(decode_chunk(a, fresh->view(), &profile).is_ok());
    EXPECT_TRUE(std::equal(kept->bytes().begin(), kept->bytes().end(), fresh->bytes().begin()))
        << "decoder, chunk at " << begin;
  }
}

TEST(Transform, VectorEncoderMatchesScalar) {
  const CodecProfile profile = make_transform_profile(3, 4, 8, 4);
  const KvLayout layout{3, 4, 8, DType::f16, 300};
  std::vector<std::vector<std::byte>> chunks;
  for (int path = 0; path < 3; ++path) {
    codec::set_simd_encode_enabled(path > 0);
    codec::set_simd_transform_enabled(path > 0);
    codec::set_avx512_enabled(path == 2);
    chunks.push_back(encode(layout, profile, 2, 17, 283).bytes);
  }
  codec::set_simd_encode_enabled(true);
  codec::set_simd_transform_enabled(true);
  codec::set_avx512_enabled(true);
  EXPECT_EQ(chunks[1], chunks[0]) << "AVX2";
  EXPECT_EQ(chunks[2], chunks[0]) << "AVX-512";
}

TEST(Transform, ADecoderNeedsTheChunksTransform) {
  const KvLayout layout{2, 2, 8, DType::f16, 64};
  const CodecProfile profile = make_transform_profile(2, 2, 8, 1);
  const Chunk c = encode(layout, profile, 2, 0, 64);
  auto out = KvBuffer::create(layout);
  Status st = decode_chunk(c.bytes, out->view());
  EXPECT_EQ(st.code(), Errc::invalid_argument);
  EXPECT_NE(st.message().find("no profile"), std::string::npos) << st.message();
  const CodecProfile other = make_transform_profile(2, 2, 8, 2);
  st = decode_chunk(c.bytes, out->view(), &other);
  EXPECT_EQ(st.code(), Errc::invalid_argument);
  EXPECT_NE(st.message().find(hex8(profile.transform_id())), std::string::npos) << st.message();
  // A profile without a transform codes K and V directly, and its chunks ignore profiles.
  const CodecProfile plain = CodecProfile::builtin(2, 1);
  const Chunk d = encode(layout, plain, 2, 0, 64);
  EXPECT_FALSE(read_chunk_info(d.bytes)->transformed);
  EXPECT_TRUE(decode_chunk(d.bytes, out->view(), &profile).is_ok());
}

TEST(Transform, AProfileMustFitTheKv) {
  const CodecProfile profile = make_transform_profile(2, 2, 8, 1);
  auto kv = KvBuffer::create(KvLayout{2, 4, 4, DType::f16, 8});  // 16 channels, other heads
  testing_data::fill_synthetic(kv->view(), 1, false);
  EncodeOptions o;
  o.level = 1;
  o.profile = &profile;
  std::vector<std::byte> out;
  const Status st = encode_chunk(kv->view(), 0, 8, o, out);
  EXPECT_EQ(st.code(), Errc::invalid_argument);
  EXPECT_NE(st.message().find("transform"), std::string::npos) << st.message();
  // A bad value is named by its layer, token and channel, as without a transform.
  auto bad = KvBuffer::create(KvLayout{2, 2, 8, DType::f16, 8});
  testing_data::fill_synthetic(bad->view(), 1, false);
  testing_data::store(bad->view(), 1, KvPart::value, 5, 9, std::numeric_limits<float>::quiet_NaN());
  const Status nan = encode_chunk(bad->view(), 0, 8, o, out);
  EXPECT_EQ(nan.code(), Errc::invalid_argument);
  EXPECT_NE(nan.message().find("layer 1 V token 5 channel 9"), std::string::npos) << nan.message();
}

TEST(Transform, ProfilesKeepTheirTransformExactly) {
  const CodecProfile profile = make_transform_profile(3, 2, 8, 9);
  const auto path = std::filesystem::temp_directory_path() / "kvstream_transform.profile";
  ASSERT_TRUE(profile.save(path.string()).is_ok());
  auto loaded = CodecProfile::load(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  ASSERT_NE(loaded->transform(), nullptr);
  EXPECT_EQ(loaded->transform_id(), profile.transform_id());
  EXPECT_EQ(loaded->transform()->synthesis, profile.transform()->synthesis);
  EXPECT_EQ(loaded->transform()->frequencies, profile.transform()->frequencies);
  // A transform that does not fit is refused with what is wrong.
  KvTransform t = make_test_transform(3, 2, 8, 9);
  t.frequencies.pop_back();
  CodecProfile p = CodecProfile::builtin(3, 1);
  const Status st = p.set_transform(t);
  EXPECT_EQ(st.code(), Errc::invalid_argument);
  EXPECT_NE(st.message().find("frequencies"), std::string::npos) << st.message();
  EXPECT_EQ(p.set_transform(make_test_transform(2, 2, 8, 9)).code(), Errc::invalid_argument);
}

}  // namespace
}  // namespace kvstream
