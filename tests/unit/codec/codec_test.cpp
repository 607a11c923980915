#include "kvstream/codec.hpp"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "byte_io.hpp"
#include "chunk_format.hpp"
#include "cpu_features.hpp"
#include "crc32c.hpp"
#include "decoder_avx2.hpp"
#include "kv_test_data.hpp"
#include "kvstream/half.hpp"
#include "rans_avx2.hpp"

namespace kvstream {
namespace {

using testing_data::fill_smooth;
using testing_data::fill_synthetic;
using testing_data::float_at;

KvLayout layout(DType dt, std::uint32_t tokens = 100) {
  return KvLayout{3, 2, 16, dt, tokens};
}

std::vector<std::byte> encode(const KvView& v, std::uint32_t begin, std::uint32_t count,
                              std::uint8_t level) {
  std::vector<std::byte> out;
  EncodeOptions o;
  o.level = level;
  const Status s = encode_chunk(v, begin, count, o, out);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return out;
}

TEST(Crc32c, KnownVectors) {
  const char* text = "123456789";
  EXPECT_EQ(codec::crc32c(std::as_bytes(std::span(text, 9))), 0xE3069283u);
  std::vector<std::byte> zeros(32, std::byte{0});
  EXPECT_EQ(codec::crc32c(zeros), 0x8A9136AAu);  // RFC 3720 B.4
  // Chaining equals one pass.
  EXPECT_EQ(codec::crc32c(std::as_bytes(std::span(text + 4, 5)),
                          codec::crc32c(std::as_bytes(std::span(text, 4)))),
            0xE3069283u);
  EXPECT_EQ(codec::crc32c_portable(std::as_bytes(std::span(text, 9))), 0xE3069283u);
}

TEST(Crc32c, HardwareAndTablesAgreeAtEveryLengthAndAlignment) {
  // Long enough for the hardware path's three-stream blocks (3 x 1024 and 3 x 128 bytes).
  std::vector<std::byte> data(8000);
  std::uint32_t r = 12345;
  for (std::byte& b : data) {
    r = r * 1103515245u + 12345u;
    b = static_cast<std::byte>(r >> 24);
  }
  for (std::size_t begin = 0; begin < 9; ++begin) {
    for (std::size_t n = 0; begin + n <= data.size(); n += n < 400 ? 7 : 97) {
      const auto span = std::span(data).subspan(begin, n);
      EXPECT_EQ(codec::crc32c(span, 0x1234u), codec::crc32c_portable(span, 0x1234u))
          << begin << " " << n;
    }
  }
}

TEST(Codec, LevelZeroIsBitExactForEveryDtypeAndLayout) {
  for (DType dt : {DType::f16, DType::bf16, DType::f32}) {
    auto src = KvBuffer::create(layout(dt));
    ASSERT_TRUE(src);
    fill_synthetic(src->view(), 7, /*specials=*/true);
    const auto chunk = encode(src->view(), 20, 50, 0);
    auto info = read_chunk_info(chunk);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->level, 0);
    EXPECT_EQ(info->token_begin, 20u);
    EXPECT_EQ(info->token_count, 50u);
    EXPECT_EQ(info->dtype, dt);

    std::vector<std::uint32_t> table(13);
    for (std::uint32_t i = 0; i < 13; ++i)
      table[i] = 12 - i;
    auto paged = PagedKvBuffer::create(layout(dt), 8, 13, table);
    ASSERT_TRUE(paged);
    ASSERT_TRUE(decode_chunk(chunk, paged->view()).is_ok());
    auto back = KvBuffer::create(layout(dt));
    ASSERT_TRUE(copy_tokens(paged->view(), 20, back->view(), 20, 50).is_ok());
    const std::size_t row = layout(dt).row_bytes();
    for (std::uint32_t l = 0; l < 3; ++l) {
      for (KvPart p : {KvPart::key, KvPart::value}) {
        for (std::uint32_t t = 20; t < 70; ++t) {
          ASSERT_EQ(std::memcmp(back->view().row(l, p, t), src->view().row(l, p, t), row), 0)
              << dtype_name(dt) << " layer " << l << " token " << t;
        }
      }
    }
  }
}

// Incompressible input is the worst case: uniformly random bit patterns at level 0 (every
// exponent, NaNs included) and at the finest lossy level, with one lane per substream and the
// smallest substreams.
TEST(Codec, ChunksNeverExceedTheirSizeBound) {
  for (DType dt : {DType::f16, DType::bf16, DType::f32}) {
    const KvLayout l{2, 1, 4, dt, 9};
    auto src = KvBuffer::create(l);
    ASSERT_TRUE(src);
    std::uint64_t x = 88172645463325252ull;
    for (std::byte& b : src->bytes()) {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      b = static_cast<std::byte>(x);
    }
    std::vector<std::byte> chunk;
    for (std::uint32_t lanes : {1u, 32u}) {
      EncodeOptions o;
      o.lanes = lanes;
      o.substream_values = 1;
      o.lane_values = 1;
      ASSERT_TRUE(encode_chunk(src->view(), 0, 9, o, chunk).is_ok());
      EXPECT_LE(chunk.size(), chunk_size_bound(l, 9)) << dtype_name(dt) << " lanes " << lanes;
    }
    EncodeOptions verbatim;
    verbatim.verbatim = true;
    ASSERT_TRUE(encode_chunk(src->view(), 0, 9, verbatim, chunk).is_ok());
    EXPECT_LE(chunk.size(), chunk_size_bound(l, 9)) << dtype_name(dt) << " verbatim";
    testing_data::fill_synthetic(src->view(), 3, false);
    for (std::uint8_t level = 1; level <= 5; ++level) {
      EncodeOptions o;
      o.level = level;
      ASSERT_TRUE(encode_chunk(src->view(), 0, 9, o, chunk).is_ok());
      EXPECT_LE(chunk.size(), chunk_size_bound(l, 9)) << int{level};
    }
  }
}

TEST(Codec, LossyErrorIsWithinHalfAStep) {
  // Into an f32 destination, the error of each value is at most half its channel's step, and
  // the step is at most the level's relative step times the channel's spread.
  auto src = KvBuffer::create(layout(DType::f32, 64));
  fill_synthetic(src->view(), 3, false);
  const CodecProfile profile = CodecProfile::builtin(3, 2);
  for (std::uint8_t level = 1; level <= profile.levels(); ++level) {
    const auto chunk = encode(src->view(), 0, 64, level);
    auto dst = KvBuffer::create(layout(DType::f32, 64));
    ASSERT_TRUE(decode_chunk(chunk, dst->view()).is_ok());
    for (std::uint32_t l = 0; l < 3; ++l) {
      for (KvPart p : {KvPart::key, KvPart::value}) {
        for (std::uint32_t c = 0; c < 32; ++c) {
          double mean = 0, mad = 0;
          for (std::uint32_t t = 0; t < 64; ++t)
            mean += float_at(src->view(), l, p, t, c);
          mean /= 64;
          for (std::uint32_t t = 0; t < 64; ++t) {
            mad += std::abs(float_at(src->view(), l, p, t, c) - mean);
          }
          const double bound =
              0.5 * profile.relative_step(level, l, p, c / 16) * (mad / 64) * 1.2533 * 1.001 + 1e-6;
          for (std::uint32_t t = 0; t < 64; ++t) {
            const double err =
                std::abs(float_at(dst->view(), l, p, t, c) - float_at(src->view(), l, p, t, c));
            ASSERT_LE(err, bound) << "level " << int(level) << " layer " << l << " channel " << c;
          }
        }
      }
    }
  }
}

// The predictor byte of every segment of a chunk.
std::vector<int> predictors(const std::vector<std::byte>& chunk) {
  std::uint32_t segments;
  std::memcpy(&segments, chunk.data() + 32, 4);
  std::vector<int> p;
  for (std::uint32_t i = 0; i < segments; ++i) {
    std::uint32_t off;
    std::memcpy(&off, chunk.data() + 48 + 12 * i, 4);
    p.push_back(static_cast<int>(chunk[off + 1]));
  }
  return p;
}

TEST(Codec, PreviousTokenPredictionIsChosenWherePaysAndDecodesWithinHalfAStep) {
  const KvLayout lay = layout(DType::f32, 64);
  auto smooth = KvBuffer::create(lay);
  auto noise = KvBuffer::create(lay);
  fill_smooth(smooth->view(), 4);
  fill_synthetic(noise->view(), 4, false);
  for (std::uint8_t level = 1; level <= 5; ++level) {
    const auto chunk = encode(smooth->view(), 0, 64, level);
    for (int p : predictors(chunk))
      EXPECT_EQ(p, 1) << "level " << int(level);
    for (int p : predictors(encode(noise->view(), 0, 64, level)))
      EXPECT_EQ(p, 0) << "level " << int(level);
    // Predicted or not, every value is within half its channel's step (read from the chunk).
    auto dst = KvBuffer::create(lay);
    ASSERT_TRUE(decode_chunk(chunk, dst->view()).is_ok());
    for (std::uint32_t l = 0; l < lay.layers; ++l) {
      for (KvPart p : {KvPart::key, KvPart::value}) {
        std::uint32_t seg;
        std::memcpy(&seg, chunk.data() + 48 + 12 * (2 * l + static_cast<std::uint32_t>(p)), 4);
        for (std::uint32_t c = 0; c < lay.row_values(); ++c) {
          const double step = codec::step_of_code(static_cast<std::uint8_t>(chunk[seg + 8 + c]));
          for (std::uint32_t t = 0; t < 64; ++t) {
            const double err =
                std::abs(float_at(dst->view(), l, p, t, c) - float_at(smooth->view(), l, p, t, c));
            ASSERT_LE(err, 0.5 * step * 1.0001) << int(level) << " " << l << " " << c << " " << t;
          }
        }
      }
    }
  }
  // Prediction pays: the same values with their tokens shuffled (so that neighbours are no
  // longer close, and the encoder does not predict) take far more room.
  auto shuffled = KvBuffer::create(lay);
  ASSERT_TRUE(copy_kv(smooth->view(), shuffled->view()).is_ok());
  for (std::uint32_t l = 0; l < lay.layers; ++l) {
    for (KvPart p : {KvPart::key, KvPart::value}) {
      for (std::uint32_t c = 0; c < lay.row_values(); ++c) {
        for (std::uint32_t t = 0; t < 64; ++t) {
          const std::uint32_t u = (t * 37) % 64;  // a fixed permutation of the tokens
          testing_data::store(shuffled->view(), l, p, u, c,
                              static_cast<float>(float_at(smooth->view(), l, p, t, c)));
        }
      }
    }
  }
  const auto predicted = encode(smooth->view(), 0, 64, 1);
  const auto unpredicted = encode(shuffled->view(), 0, 64, 1);
  for (int p : predictors(unpredicted))
    EXPECT_EQ(p, 0);
  EXPECT_LT(predicted.size(), unpredicted.size() * 9 / 10);
}

TEST(Codec, HigherLevelsAreSmaller) {
  auto src = KvBuffer::create(layout(DType::f16, 128));
  fill_synthetic(src->view(), 5, false);
  std::size_t previous = SIZE_MAX;
  for (std::uint8_t level = 0; level <= CodecProfile::builtin(3, 2).levels(); ++level) {
    const std::size_t size = encode(src->view(), 0, 128, level).size();
    EXPECT_LT(size, previous) << "level " << int(level);
    previous = size;
  }
}

TEST(Codec, AllZeroChannelsDecodeToZero) {
  auto src = KvBuffer::create(layout(DType::bf16, 512));  // zero-initialised
  for (std::uint8_t level : {0, 1, 5}) {
    const auto chunk = encode(src->view(), 0, 512, level);
    auto dst = KvBuffer::create(layout(DType::bf16, 512));
    std::memset(dst->bytes().data(), 0x55, dst->bytes().size());
    ASSERT_TRUE(decode_chunk(chunk, dst->view()).is_ok());
    EXPECT_EQ(std::memcmp(dst->bytes().data(), src->bytes().data(), src->bytes().size()), 0);
    // Lossy levels send nearly nothing: the zero token's cost (0.02 bits) plus side
    // information. (Level 0 still sends the raw sign and low mantissa bits.)
    if (level > 0) {
      EXPECT_LT(chunk.size() * 8.0 / layout(DType::bf16, 512).total_values(), 0.15);
    }
  }
}

TEST(Codec, NonFiniteInputAtLossyLevelNamesLayerTokenChannel) {
  auto src = KvBuffer::create(layout(DType::f16, 30));
  fill_synthetic(src->view(), 1, false);
  const std::uint16_t inf = 0x7C00;
  std::memcpy(src->view().row(2, KvPart::value, 17) + 2 * 21, &inf, 2);
  std::vector<std::byte> out;
  EncodeOptions o;
  o.level = 2;
  const Status s = encode_chunk(src->view(), 0, 30, o, out);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("layer 2 V token 17 channel 21 (head 1, dim 5)"), std::string::npos)
      << s.message();
  o.level = 0;
  EXPECT_TRUE(encode_chunk(src->view(), 0, 30, o, out).is_ok());  // lossless keeps it
}

TEST(Codec, RejectsBadArguments) {
  auto src = KvBuffer::create(layout(DType::f16, 30));
  std::vector<std::byte> out;
  EncodeOptions o;
  EXPECT_EQ(encode_chunk(src->view(), 10, 21, o, out).code(), Errc::out_of_range);
  EXPECT_EQ(encode_chunk(src->view(), 0, 0, o, out).code(), Errc::invalid_argument);
  o.lanes = 3;
  EXPECT_EQ(encode_chunk(src->view(), 0, 10, o, out).code(), Errc::invalid_argument);
  o.lanes = 8;
  o.level = 9;
  EXPECT_EQ(encode_chunk(src->view(), 0, 10, o, out).code(), Errc::invalid_argument);

  o.level = 0;
  ASSERT_TRUE(encode_chunk(src->view(), 10, 20, o, out).is_ok());
  auto small = KvBuffer::create(layout(DType::f16, 25));
  EXPECT_EQ(decode_chunk(out, small->view()).code(), Errc::out_of_range);
  auto other = KvBuffer::create(KvLayout{3, 1, 32, DType::f16, 30});
  EXPECT_EQ(decode_chunk(out, other->view()).code(), Errc::invalid_argument);
}

TEST(Codec, SubstreamsAndLanesRoundTrip) {
  auto src = KvBuffer::create(layout(DType::f16, 97));
  fill_synthetic(src->view(), 11, false);
  auto reference = KvBuffer::create(layout(DType::f16, 97));
  for (std::uint32_t lanes : {1u, 2u, 32u}) {
    for (std::uint32_t per : {1u, 100u, 1000u, 1u << 20}) {
      std::vector<std::byte> out;
      EncodeOptions o;
      o.level = 3;
      o.lanes = lanes;
      o.substream_values = per;
      ASSERT_TRUE(encode_chunk(src->view(), 0, 97, o, out).is_ok());
      auto dst = KvBuffer::create(layout(DType::f16, 97));
      ASSERT_TRUE(decode_chunk(out, dst->view()).is_ok()) << lanes << " " << per;
      if (lanes == 1 && per == 1) {
        ASSERT_TRUE(copy_kv(dst->view(), reference->view()).is_ok());
      } else {
        // Lanes and substreams change the bytes, never the decoded values.
        EXPECT_EQ(std::memcmp(dst->bytes().data(), reference->bytes().data(), dst->bytes().size()),
                  0);
      }
    }
  }
}

TEST(Codec, VectorDecoderMatchesScalarBitForBit) {
  if (!codec::simd_decode_available()) GTEST_SKIP() << "this CPU has no AVX2 + F16C";
  struct Case {
    KvLayout layout;
    std::uint32_t substream_values;
  };
  // Eight lanes need ~4096 values per substream. Token counts that are not multiples of
  // anything, several substreams and wide rows exercise partial groups and the scalar tail;
  // 5 and 7 layers (10 and 14 substreams) every batching of jobs the vector paths do.
  const Case cases[] = {
      {{2, 4, 16, DType::f16, 256}, 1u << 20}, {{1, 16, 8, DType::bf16, 131}, 1u << 20},
      {{1, 8, 16, DType::f32, 397}, 17000},    {{5, 4, 8, DType::f16, 150}, 1u << 20},
      {{7, 2, 16, DType::f16, 300}, 1u << 20},
  };
  // With AVX-512 on (where the CPU has it) and off: both vector paths against the scalar one.
  for (const bool avx512 : {true, false})
    for (const Case& k : cases) {
      codec::set_avx512_enabled(avx512);
      auto src = KvBuffer::create(k.layout);
      ASSERT_TRUE(src);
      testing_data::fill_synthetic(src->view(), 17, false);
      fill_smooth(src->view(), 17, /*keys_only=*/true);  // K segments use the predictor
      KvLayout out_layout = k.layout;
      const std::uint32_t blocks = (k.layout.tokens + 15) / 16;
      std::vector<std::uint32_t> table(blocks);
      for (std::uint32_t i = 0; i < blocks; ++i)
        table[i] = blocks - 1 - i;
      for (std::uint8_t level = 0; level <= 5; ++level) {
        std::vector<std::byte> chunk;
        EncodeOptions o;
        o.level = level;
        o.substream_values = k.substream_values;
        ASSERT_TRUE(encode_chunk(src->view(), 0, k.layout.tokens, o, chunk).is_ok());
        std::uint32_t seg0;
        std::memcpy(&seg0, chunk.data() + 48, 4);
        ASSERT_EQ(static_cast<int>(chunk[seg0 + 2]), 8) << "the vector path needs 8 lanes";
        // Lossy levels take the vector path into fp16, lossless ones into their own dtype.
        out_layout.dtype = level == 0 ? k.layout.dtype : DType::f16;
        auto vec = KvBuffer::create(out_layout);
        auto paged = PagedKvBuffer::create(out_layout, 16, blocks, table);
        auto scalar = KvBuffer::create(out_layout);
        ASSERT_TRUE(decode_chunk(chunk, vec->view()).is_ok());
        ASSERT_TRUE(decode_chunk(chunk, paged->view()).is_ok());
        codec::set_simd_decode_enabled(false);
        const Status st = decode_chunk(chunk, scalar->view());
        codec::set_simd_decode_enabled(true);
        ASSERT_TRUE(st.is_ok());
        EXPECT_EQ(std::memcmp(vec->bytes().data(), scalar->bytes().data(), vec->bytes().size()), 0)
            << "level " << int(level) << " tokens " << k.layout.tokens;
        auto from_paged = KvBuffer::create(out_layout);
        ASSERT_TRUE(copy_kv(paged->view(), from_paged->view()).is_ok());
        EXPECT_EQ(
            std::memcmp(from_paged->bytes().data(), scalar->bytes().data(), scalar->bytes().size()),
            0);
      }
    }
  codec::set_avx512_enabled(true);
}

TEST(Codec, VectorEncoderMatchesScalarBitForBit) {
  if (!codec::simd_encode_available()) GTEST_SKIP() << "this CPU has no AVX2 + F16C";
  // With AVX-512 on (where the CPU has it) and off: both vector paths against the scalar one.
  for (const bool avx512 : {true, false})
    for (DType dt : {DType::f16, DType::bf16, DType::f32}) {
      codec::set_avx512_enabled(avx512);
      for (std::uint32_t tokens : {1u, 77u, 256u}) {
        const KvLayout lay{2, 4, 16, dt, tokens};
        auto src = KvBuffer::create(lay);
        ASSERT_TRUE(src);
        fill_synthetic(src->view(), 23, /*specials=*/false);
        fill_smooth(src->view(), 23, /*keys_only=*/true);  // K segments use the predictor
        // A value beyond the vector statistics' fixed point sends its segment to the scalar
        // code (f32 and bf16 can hold it; fp16 rounds 40000 to 40000 too).
        if (tokens > 4) testing_data::store(src->view(), 1, KvPart::value, 4, 5, 40000.0f);
        const std::uint32_t blocks = (tokens + 15) / 16;
        std::vector<std::uint32_t> table(blocks);
        for (std::uint32_t i = 0; i < blocks; ++i)
          table[i] = blocks - 1 - i;
        auto paged = PagedKvBuffer::create(lay, 16, blocks, table);
        ASSERT_TRUE(copy_kv(src->view(), paged->view()).is_ok());
        for (std::uint8_t level = 0; level <= 5; ++level) {
          EncodeOptions o;
          o.level = level;
          o.substream_values = 600;  // several substreams
          std::vector<std::byte> vec, from_paged, scalar;
          ASSERT_TRUE(encode_chunk(src->view(), 0, tokens, o, vec).is_ok());
          ASSERT_TRUE(encode_chunk(paged->view(), 0, tokens, o, from_paged).is_ok());
          codec::set_simd_encode_enabled(false);
          const Status st = encode_chunk(src->view(), 0, tokens, o, scalar);
          codec::set_simd_encode_enabled(true);
          ASSERT_TRUE(st.is_ok());
          EXPECT_EQ(vec, scalar) << dtype_name(dt) << " " << tokens << " level " << int(level);
          EXPECT_EQ(from_paged, scalar)
              << dtype_name(dt) << " " << tokens << " level " << int(level);
        }
      }
    }
  codec::set_avx512_enabled(true);
}

// Recomputes the header and segment checksums so that a deliberately broken field reaches the
// decoder's structural checks instead of stopping at a checksum.
void refresh_checksums(std::vector<std::byte>& chunk) {
  std::uint32_t segments;
  std::memcpy(&segments, chunk.data() + 32, 4);
  for (std::uint32_t i = 0; i < segments; ++i) {
    std::uint32_t off, size;
    std::memcpy(&off, chunk.data() + 48 + 12 * i, 4);
    std::memcpy(&size, chunk.data() + 52 + 12 * i, 4);
    if (std::size_t{off} + size > chunk.size()) continue;
    const std::uint32_t crc = codec::crc32c(std::span(chunk).subspan(off, size));
    std::memcpy(chunk.data() + 56 + 12 * i, &crc, 4);
  }
  std::uint32_t crc = codec::crc32c(std::span(chunk).first(44));
  crc = codec::crc32c(std::span(chunk).subspan(48, 12 * std::size_t{segments}), crc);
  std::memcpy(chunk.data() + 44, &crc, 4);
}

class CorruptChunk : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = std::make_unique<KvBuffer>(*KvBuffer::create(layout(DType::f16, 60)));
    fill_synthetic(src_->view(), 2, false);
    chunk_ = encode(src_->view(), 0, 60, 2);
  }
  Status decode(const std::vector<std::byte>& c) {
    auto dst = KvBuffer::create(layout(DType::f16, 60));
    return decode_chunk(c, dst->view());
  }
  std::uint32_t segment_offset(std::uint32_t i) const {
    std::uint32_t off;
    std::memcpy(&off, chunk_.data() + 48 + 12 * i, 4);
    return off;
  }
  std::unique_ptr<KvBuffer> src_;
  std::vector<std::byte> chunk_;
};

TEST_F(CorruptChunk, EveryTruncationIsAnError) {
  for (std::size_t n = 0; n < chunk_.size(); ++n) {
    const std::vector<std::byte> cut(chunk_.begin(), chunk_.begin() + static_cast<long>(n));
    ASSERT_EQ(decode(cut).code(), Errc::corrupt_data) << "length " << n;
  }
}

TEST_F(CorruptChunk, EveryBitFlipIsDetected) {
  for (std::size_t i = 0; i < chunk_.size(); ++i) {
    for (int bit = 0; bit < 8; bit += 3) {
      auto c = chunk_;
      c[i] ^= std::byte{static_cast<unsigned char>(1u << bit)};
      const Status s = decode(c);
      ASSERT_FALSE(s.is_ok()) << "byte " << i << " bit " << bit;
    }
  }
}

TEST_F(CorruptChunk, HostileFieldsWithValidChecksumsAreRejected) {
  const std::uint32_t seg = segment_offset(3);
  struct Case {
    std::size_t at;
    std::uint8_t value;
    const char* mention;
  };
  const Case cases[] = {
      {seg + 0, 1, "coding"},
      {seg + 1, 4, "predictor"},
      {seg + 2, 3, "lanes"},
      {seg + 4, 0, "substreams"},
      {seg + 4, 61, "substreams"},
      {seg + 8 + 32, 80, "table id"},
      {9, 7, "dtype"},
      {8, 16, "level"},
      {12, 0, "shape"},
  };
  for (const Case& c : cases) {
    auto bad = chunk_;
    bad[c.at] = std::byte{c.value};
    refresh_checksums(bad);
    const Status s = decode(bad);
    EXPECT_EQ(s.code(), Errc::corrupt_data) << c.mention;
    EXPECT_NE(s.message().find(c.mention), std::string::npos) << s.message();
  }
  // Payload words changed behind recomputed checksums. A word spent entirely on raw bits can
  // become another valid stream (raw bits carry no redundancy: only the checksum sees that),
  // so the decoder may succeed; otherwise the lane-state and cursor checks must catch it, and
  // either way nothing but ok or corrupt_data comes back.
  int detected = 0;
  for (std::size_t back = 1; back < 40; ++back) {
    auto bad = chunk_;
    const std::uint32_t end = segment_offset(4);
    bad[end - back] ^= std::byte{0x5A};
    refresh_checksums(bad);
    const Errc code = decode(bad).code();
    EXPECT_TRUE(code == Errc::ok || code == Errc::corrupt_data) << back;
    detected += code == Errc::corrupt_data;
  }
  EXPECT_GE(detected, 30);
}

TEST(Codec, LosslessExponentOutOfRangeIsAnErrorOnEveryPath) {
  // A level-0 chunk wide enough for the vector paths (8 lanes), whose first segment's center of
  // channel 0 is moved (a one-byte varint stays one byte) so that decoded exponent fields leave
  // their range; checksums recomputed so that the decoder gets that far.
  const KvLayout lay{2, 4, 16, DType::f16, 128};
  auto src = KvBuffer::create(lay);
  ASSERT_TRUE(src);
  fill_synthetic(src->view(), 5, false);
  auto chunk = encode(src->view(), 0, 128, 0);
  std::uint32_t seg0;
  std::memcpy(&seg0, chunk.data() + 48, 4);
  const std::size_t center0 = seg0 + 8 + lay.row_values();  // after the fixed part and table ids
  ASSERT_LT(static_cast<unsigned>(chunk[center0]), 128u) << "a one-byte varint";
  chunk[center0] = static_cast<std::byte>(static_cast<unsigned>(chunk[center0]) < 64 ? 126 : 1);
  refresh_checksums(chunk);
  for (const int path : {0, 1, 2}) {  // AVX-512 (if the CPU has it), AVX2, scalar
    codec::set_avx512_enabled(path == 0);
    codec::set_simd_decode_enabled(path != 2);
    auto dst = KvBuffer::create(lay);
    const Status st = decode_chunk(chunk, dst->view());
    EXPECT_EQ(st.code(), Errc::corrupt_data) << path;
    EXPECT_NE(st.message().find("exponent field out of range"), std::string::npos)
        << path << ": " << st.to_string();
  }
  codec::set_avx512_enabled(true);
  codec::set_simd_decode_enabled(true);
}

TEST_F(CorruptChunk, WrongVersionIsUnsupported) {
  auto bad = chunk_;
  bad[4] = std::byte{3};
  refresh_checksums(bad);
  EXPECT_EQ(decode(bad).code(), Errc::unsupported);
  auto magic = chunk_;
  magic[0] = std::byte{'X'};
  EXPECT_EQ(decode(magic).code(), Errc::corrupt_data);
}

}  // namespace
}  // namespace kvstream
