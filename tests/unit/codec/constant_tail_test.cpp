// Constant tails (codec/FORMAT.md "Constant tail"): which channels the encoder leaves out of a
// segment's words, that every decoding path writes them back, and that a hostile tail is refused.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "chunk_damage.hpp"
#include "cpu_features.hpp"
#include "decoder_avx2.hpp"
#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"

namespace kvstream {
namespace {

using testing_data::reseal;

constexpr std::size_t kTailField = 6;  // in a segment: its u16 tail

std::uint32_t segment_offset(const std::vector<std::byte>& chunk, std::uint32_t i) {
  std::uint32_t off;
  std::memcpy(&off, chunk.data() + 48 + 12 * std::size_t{i}, 4);
  return off;
}

std::uint16_t tail_of(const std::vector<std::byte>& chunk, std::uint32_t segment) {
  std::uint16_t tail;
  std::memcpy(&tail, chunk.data() + segment_offset(chunk, segment) + kTailField, 2);
  return tail;
}

void set_tail(std::vector<std::byte>& chunk, std::uint32_t segment, std::uint16_t tail) {
  std::memcpy(chunk.data() + segment_offset(chunk, segment) + kTailField, &tail, 2);
  reseal(chunk, segment);
}

std::vector<std::byte> encode(const KvView& v, std::uint8_t level, std::uint32_t substream_values) {
  EncodeOptions o;
  o.level = level;
  o.substream_values = substream_values;
  std::vector<std::byte> out;
  const Status s = encode_chunk(v, 0, v.layout().tokens, o, out);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return out;
}

// 3 layers of 64 channels whose segments end in 0, 8, 21, 64, 40 and 3 constant channels: the
// encoder's tails are those runs less what keeps the coded channels a multiple of 8.
class ConstantTail : public ::testing::Test {
 protected:
  static constexpr std::uint16_t kExpected[] = {0, 8, 16, 64, 40, 0};
  void SetUp() override {
    src_ = std::make_unique<KvBuffer>(*KvBuffer::create(lay_));
    testing_data::fill_synthetic(src_->view(), 5, false);
    testing_data::fill_smooth(src_->view(), 5, /*keys_only=*/true);  // K uses the predictor
    testing_data::fill_constant_tails(src_->view());
  }
  const KvLayout lay_{3, 4, 16, DType::f16, 300};
  std::unique_ptr<KvBuffer> src_;
};

TEST_F(ConstantTail, TheEncoderLeavesConstantChannelsOutOfTheWords) {
  for (std::uint8_t level = 1; level <= 5; ++level) {
    const auto chunk = encode(src_->view(), level, 1u << 20);
    const auto info = read_chunk_info(chunk);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->version, 2);
    for (std::uint32_t s = 0; s < 6; ++s)
      EXPECT_EQ(tail_of(chunk, s), kExpected[s]) << "level " << int(level) << " segment " << s;
    // Lossless chunks code every channel.
    const auto lossless = encode(src_->view(), 0, 1u << 20);
    for (std::uint32_t s = 0; s < 6; ++s)
      EXPECT_EQ(tail_of(lossless, s), 0) << s;
  }
}

TEST_F(ConstantTail, EveryDecodingPathWritesTheTailsBack) {
  // One substream of 8 lanes per segment, then several: the vector path's batches mix rows of
  // 64, 56, 48, 24 and 64 coded channels (and a segment with none).
  for (const std::uint32_t substream_values : {1u << 20, 4096u}) {
    for (std::uint8_t level : {1, 3, 5}) {
      const auto chunk = encode(src_->view(), level, substream_values);
      for (const DType out : {DType::f16, DType::f32, DType::bf16}) {
        KvLayout ol = lay_;
        ol.dtype = out;
        auto scalar = KvBuffer::create(ol);
        codec::set_simd_decode_enabled(false);
        const Status st = decode_chunk(chunk, scalar->view());
        codec::set_simd_decode_enabled(true);
        ASSERT_TRUE(st.is_ok()) << st.to_string();
        for (const bool avx512 : {true, false}) {  // AVX-512 where the CPU has it, AVX2
          codec::set_avx512_enabled(avx512);
          auto vec = KvBuffer::create(ol);
          ASSERT_TRUE(decode_chunk(chunk, vec->view()).is_ok());
          EXPECT_EQ(std::memcmp(vec->bytes().data(), scalar->bytes().data(), vec->bytes().size()),
                    0)
              << "level " << int(level) << " into " << dtype_name(out) << " avx512 " << avx512;
        }
        codec::set_avx512_enabled(true);
        // The tails are their sources' constants, to within the lossy levels' error.
        for (std::uint32_t s = 0; s < 6; ++s) {
          const std::size_t C = lay_.row_values();
          for (std::uint32_t t = 0; t < lay_.tokens; t += 37) {
            for (std::size_t c = C - kExpected[s]; c < C; ++c) {
              const auto l = s / 2;
              const auto p = static_cast<KvPart>(s % 2);
              const float want = testing_data::float_at(src_->view(), l, p, t, c);
              const float got = testing_data::float_at(scalar->view(), l, p, t, c);
              EXPECT_NEAR(got, want, 0.02f + 0.02f * std::fabs(want)) << s << " " << t << " " << c;
              EXPECT_EQ(got, testing_data::float_at(scalar->view(), l, p, 0, c));
            }
          }
        }
      }
    }
  }
}

TEST_F(ConstantTail, VersionOneChunksWithoutTailsStillDecode) {
  const auto v2 = encode(src_->view(), 0, 1u << 20);  // lossless: no tails
  auto v1 = v2;
  v1[4] = std::byte{1};
  reseal(v1, 0);
  auto a = KvBuffer::create(lay_), b = KvBuffer::create(lay_);
  ASSERT_TRUE(decode_chunk(v2, a->view()).is_ok());
  ASSERT_TRUE(decode_chunk(v1, b->view()).is_ok());
  EXPECT_EQ(std::memcmp(a->bytes().data(), b->bytes().data(), a->bytes().size()), 0);
  for (const std::uint8_t version : {0, 3}) {
    auto other = v2;
    other[4] = std::byte{version};
    reseal(other, 0);
    const Status s = decode_chunk(other, a->view());
    EXPECT_EQ(s.code(), Errc::unsupported) << int(version);
    EXPECT_NE(s.message().find("version"), std::string::npos) << s.message();
  }
}

TEST_F(ConstantTail, HostileTailsAreRefused) {
  const auto chunk = encode(src_->view(), 3, 1u << 20);
  const auto lossless = encode(src_->view(), 0, 1u << 20);
  auto dst = KvBuffer::create(lay_);
  const auto refused = [&](std::vector<std::byte> bad, const char* mention) {
    for (const bool simd : {true, false}) {
      codec::set_simd_decode_enabled(simd);
      const Status s = decode_chunk(bad, dst->view());
      EXPECT_EQ(s.code(), Errc::corrupt_data) << mention;
      EXPECT_NE(s.message().find(mention), std::string::npos) << s.message();
    }
    codec::set_simd_decode_enabled(true);
  };
  auto wide = chunk;
  set_tail(wide, 0, 65);  // more than its 64 channels
  refused(wide, "constant tail of 65");
  auto old = chunk;
  old[4] = std::byte{1};  // version 1 has no tails
  reseal(old, 0);
  refused(old, "constant tail");
  auto split = lossless;
  set_tail(split, 2, 8);
  refused(split, "constant tail");
  // A tail the words do not match: the words then run out or are left over.
  auto shorter = chunk;
  set_tail(shorter, 1, 0);
  refused(shorter, "substream");
  auto longer = chunk;
  set_tail(longer, 0, 8);
  refused(longer, "substream");
}

}  // namespace
}  // namespace kvstream
