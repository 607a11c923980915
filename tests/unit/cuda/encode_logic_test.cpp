// The GPU encoder's per-thread logic, run item by item on the CPU over the same passes the
// kernels run, must write the CPU encoder's bytes and refuse what it refuses, with the same
// error.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "decode_cases.hpp"
#include "encode_plan.hpp"
#include "kvstream/half.hpp"

namespace kvstream {
namespace {

using testing_data::DecodeCase;

void expect_same_bytes(const std::vector<DecodeCase>& cases) {
  EXPECT_GT(testing_data::expect_cpu_encoder_bytes(
                cases,
                [](const DecodeCase& c, std::vector<std::byte>& out) {
                  return gpu::encode_on_host(c.source->view(), c.begin, c.count, c.options, out);
                }),
            0);
}

TEST(GpuEncodeLogic, GoldenFilesAreEncodedByteForByte) {
  expect_same_bytes(testing_data::golden_encode_cases());
}

TEST(GpuEncodeLogic, SyntheticCachesEncodeAsOnTheCpu) {
  expect_same_bytes(testing_data::synthetic_cases());
}

TEST(GpuEncodeLogic, Stories260kCachesEncodeAsOnTheCpu) {
  expect_same_bytes(testing_data::stories_cases());
}

// A paged source (blocks shuffled in a larger pool) encodes to the bytes of a contiguous one.
TEST(GpuEncodeLogic, PagedSourceEncodesLikeAContiguousOne) {
  const KvLayout l{2, 2, 16, DType::f16, 96};
  auto src = KvBuffer::create(l).value();
  testing_data::fill_smooth(src.view(), 3);
  const std::vector<std::uint32_t> table{5, 0, 7, 2, 6, 1};
  auto paged = PagedKvBuffer::create(l, 16, 8, table).value();
  ASSERT_TRUE(copy_kv(src.view(), paged.view()).is_ok());
  const auto profile = testing_data::transform_profile(l, 5, RopePairs::halves, true);
  for (std::uint8_t level : {0, 1, 3}) {
    for (const CodecProfile* p : {static_cast<const CodecProfile*>(nullptr), profile.get()}) {
      EncodeOptions o;
      o.level = level;
      o.profile = p;
      o.substream_values = 500;
      std::vector<std::byte> want, got;
      const Status w = encode_chunk(src.view(), 16, 64, o, want);
      ASSERT_TRUE(w.is_ok()) << w.to_string();
      const Status s = gpu::encode_on_host(paged.view(), 16, 64, o, got);
      ASSERT_TRUE(s.is_ok()) << s.to_string();
      EXPECT_EQ(got, want) << "level " << int{level} << (p != nullptr ? " transform" : "");
    }
  }
}

// Bad values and bad requests get the CPU encoder's status, message included.
TEST(GpuEncodeLogic, RefusesWhatTheCpuEncoderRefuses) {
  const KvLayout l{3, 2, 8, DType::f16, 64};
  const auto profile = testing_data::transform_profile(l, 2, RopePairs::interleaved, true);
  struct Bad {
    std::uint32_t layer;
    KvPart part;
    std::uint32_t token, channel;
    float value;
  };
  const float inf = std::numeric_limits<float>::infinity();
  int refused = 0;
  for (const Bad b : {Bad{1, KvPart::value, 40, 3, std::nanf("")}, Bad{2, KvPart::key, 20, 15, inf},
                      Bad{0, KvPart::key, 63, 0, -inf}, Bad{1, KvPart::key, 33, 7, 65504.0f}}) {
    auto buf = KvBuffer::create(l).value();
    testing_data::fill_synthetic(buf.view(), 4, false);
    // A second bad value later in the cache: the first one is named.
    for (const Bad at : {b, Bad{2, KvPart::value, 60, 1, std::nanf("")}}) {
      auto* row = reinterpret_cast<std::uint16_t*>(buf.view().row(at.layer, at.part, at.token));
      row[at.channel] = float_to_half(at.value);
    }
    for (const CodecProfile* p : {static_cast<const CodecProfile*>(nullptr), profile.get()}) {
      for (std::uint8_t level : {0, 1, 3}) {
        EncodeOptions o;
        o.level = level;
        o.profile = p;
        std::vector<std::byte> want, got;
        const Status w = encode_chunk(buf.view(), 8, 56, o, want);
        const Status g = gpu::encode_on_host(buf.view(), 8, 56, o, got);
        ASSERT_EQ(g.code(), w.code()) << g.to_string() << " vs " << w.to_string();
        EXPECT_EQ(g.message(), w.message());
        if (w.is_ok()) {
          EXPECT_EQ(got, want);
        } else {
          ++refused;
        }
      }
    }
  }
  EXPECT_GE(refused, 12);  // 65504 is within range: only the NaN and Inf caches fail
  // Requests the encoder refuses before it looks at a value.
  auto buf = KvBuffer::create(l).value();
  EncodeOptions o;
  o.level = 2;
  for (const auto& [begin, count, lanes] :
       {std::tuple{60u, 8u, 8u}, std::tuple{0u, 0u, 8u}, std::tuple{0u, 16u, 3u}}) {
    o.lanes = lanes;
    std::vector<std::byte> out;
    const Status w = encode_chunk(buf.view(), begin, count, o, out);
    const Status g = gpu::encode_on_host(buf.view(), begin, count, o, out);
    ASSERT_FALSE(w.is_ok());
    EXPECT_EQ(g.code(), w.code());
    EXPECT_EQ(g.message(), w.message());
  }
}

}  // namespace
}  // namespace kvstream
