// ChunkDecoder on several threads: the bytes it writes and the errors it returns are those of
// one thread, on every decoding path (vector and scalar, plain and transform-coded, contiguous
// and paged destinations). Every chunk here holds at least ChunkDecoder::kMinValuesToSplit
// values, so that it is split.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "chunk_damage.hpp"
#include "decoder_avx2.hpp"
#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"
#include "transform.hpp"

namespace kvstream {
namespace {

constexpr unsigned kThreads[] = {2, 3, 8};

// The chunk decoded by a decoder of each thread count into a fresh buffer of `out` (paged, with
// its blocks in reverse order, when `paged`), as bytes in token order.
std::vector<std::vector<std::byte>> decode_each(const std::vector<std::byte>& chunk, KvLayout out,
                                                bool paged, const CodecProfile* profile) {
  std::vector<std::vector<std::byte>> all;
  for (unsigned threads : {1u, 2u, 3u, 8u}) {
    ChunkDecoder decoder(threads);
    auto dst = KvBuffer::create(out);
    EXPECT_TRUE(dst);
    if (paged) {
      const std::uint32_t blocks = (out.tokens + 7) / 8;
      std::vector<std::uint32_t> table(blocks);
      for (std::uint32_t i = 0; i < blocks; ++i)
        table[i] = blocks - 1 - i;
      auto p = PagedKvBuffer::create(out, 8, blocks, table);
      EXPECT_TRUE(p);
      EXPECT_TRUE(decoder.decode(chunk, p->view(), profile).is_ok()) << threads << " threads";
      EXPECT_TRUE(copy_kv(p->view(), dst->view()).is_ok());
    } else {
      EXPECT_TRUE(decoder.decode(chunk, dst->view(), profile).is_ok()) << threads << " threads";
    }
    all.emplace_back(dst->bytes().begin(), dst->bytes().end());
  }
  return all;
}

void expect_all_equal(const std::vector<std::vector<std::byte>>& all, const std::string& what) {
  for (std::size_t i = 1; i < all.size(); ++i)
    EXPECT_EQ(all[i], all[0]) << what << ": " << kThreads[i - 1] << " threads";
}

TEST(ThreadedDecode, EveryThreadCountWritesTheBytesOfOne) {
  // Lossless and lossy; every source dtype; substreams of 8 lanes (the vector path's, several
  // per segment) and of 4 (left to the scalar loop).
  const KvLayout layouts[] = {
      {5, 8, 16, DType::f16, 150}, {4, 8, 16, DType::bf16, 131}, {3, 4, 16, DType::f32, 360}};
  for (const bool simd : {true, false}) {
    codec::set_simd_decode_enabled(simd);
    for (const KvLayout& layout : layouts) {
      auto src = KvBuffer::create(layout);
      ASSERT_TRUE(src);
      testing_data::fill_synthetic(src->view(), 5, false);
      ASSERT_GE(layout.total_values(), ChunkDecoder::kMinValuesToSplit);
      for (std::uint8_t level : {0, 1, 3, 5}) {
        for (std::uint32_t substream_values : {2048u, 6000u}) {
          EncodeOptions o;
          o.level = level;
          o.substream_values = substream_values;
          std::vector<std::byte> chunk;
          ASSERT_TRUE(encode_chunk(src->view(), 0, layout.tokens, o, chunk).is_ok());
          KvLayout out = layout;
          out.dtype = level == 0 ? layout.dtype : DType::f16;
          for (const bool paged : {false, true}) {
            expect_all_equal(decode_each(chunk, out, paged, nullptr),
                             "level " + std::to_string(level) + (simd ? " vector" : " scalar") +
                                 (paged ? " paged" : "") + ", substreams of " +
                                 std::to_string(substream_values) + " values");
          }
        }
      }
    }
  }
  codec::set_simd_decode_enabled(true);
}

TEST(ThreadedDecode, TransformCodedChunksToo) {
  const KvLayout layout{8, 4, 16, DType::f16, 140};
  const CodecProfile profile = testing_data::make_transform_profile(8, 4, 16, 5);
  auto src = KvBuffer::create(layout);
  ASSERT_TRUE(src);
  testing_data::fill_synthetic(src->view(), 9, false);
  for (const bool simd : {true, false}) {
    codec::set_simd_decode_enabled(simd);
    codec::set_simd_transform_enabled(simd);
    for (std::uint8_t level : {1, 3}) {
      EncodeOptions o;
      o.level = level;
      o.profile = &profile;
      std::vector<std::byte> chunk;
      static_assert(std::size_t{2} * 8 * 64 * 130 >= ChunkDecoder::kMinValuesToSplit);
      ASSERT_TRUE(encode_chunk(src->view(), 10, 130, o, chunk).is_ok());
      KvLayout out = layout;
      for (const bool paged : {false, true})
        expect_all_equal(decode_each(chunk, out, paged, &profile),
                         "transform level " + std::to_string(level));
    }
  }
  codec::set_simd_decode_enabled(true);
  codec::set_simd_transform_enabled(true);
}

TEST(ThreadedDecode, ErrorsAreThoseOfOneThread) {
  const KvLayout layout{4, 8, 16, DType::f16, 128};
  ASSERT_GE(layout.total_values(), ChunkDecoder::kMinValuesToSplit);
  auto src = KvBuffer::create(layout);
  ASSERT_TRUE(src);
  testing_data::fill_synthetic(src->view(), 7, false);
  EncodeOptions o;
  o.level = 2;
  o.substream_values = 1024;
  std::vector<std::byte> chunk;
  ASSERT_TRUE(encode_chunk(src->view(), 0, layout.tokens, o, chunk).is_ok());
  // Words damaged behind valid checksums in a late segment and an early one: the error names
  // the earlier, whichever thread finds which first.
  int compared = 0;
  for (const bool simd : {true, false}) {
    codec::set_simd_decode_enabled(simd);
    for (std::uint32_t back = 2; back < 40; back += 3) {
      auto bad = chunk;
      for (std::uint32_t segment : {6u, 2u}) {
        std::uint32_t offset, size;
        std::memcpy(&offset, bad.data() + 48 + 12 * segment, 4);
        std::memcpy(&size, bad.data() + 48 + 12 * segment + 4, 4);
        bad[offset + size - back] ^= std::byte{0x5A};
        testing_data::reseal(bad, segment);
      }
      auto dst = KvBuffer::create(layout);
      const Status one = ChunkDecoder(1).decode(bad, dst->view());
      for (unsigned threads : kThreads) {
        const Status many = ChunkDecoder(threads).decode(bad, dst->view());
        EXPECT_EQ(many.code(), one.code()) << threads << " threads, byte " << back;
        EXPECT_EQ(many.message(), one.message()) << threads << " threads, byte " << back;
      }
      compared += one.code() == Errc::corrupt_data;
    }
  }
  codec::set_simd_decode_enabled(true);
  EXPECT_GE(compared, 10) << "too few damaged chunks were refused to compare their errors";
}

}  // namespace
}  // namespace kvstream
