// Level 0 as verbatim values (FORMAT.md coding 3): what the encoder writes, that every decode of
// it is the source bit for bit, and that the decoder holds such segments to their fixed shape.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "chunk_damage.hpp"
#include "chunk_format.hpp"
#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"

namespace kvstream {
namespace {

constexpr KvLayout kLayout{3, 2, 16, DType::f16, 80};
constexpr std::uint32_t kBegin = 10, kCount = 50;

std::vector<std::byte> encode(const KvView& v, std::uint8_t level, bool verbatim, Status* s) {
  std::vector<std::byte> out;
  EncodeOptions o;
  o.level = level;
  o.verbatim = verbatim;
  *s = encode_chunk(v, kBegin, kCount, o, out);
  return out;
}

KvBuffer source(DType dt) {
  KvLayout l = kLayout;
  l.dtype = dt;
  KvBuffer b = KvBuffer::create(l).value();
  testing_data::fill_synthetic(b.view(), 11, /*specials=*/true);  // NaN, Inf, -0, subnormals
  return b;
}

std::uint32_t segment_offset(const std::vector<std::byte>& chunk, std::uint32_t i) {
  std::uint32_t off;
  std::memcpy(&off, chunk.data() + 48 + 12 * i, 4);
  return off;
}

TEST(Verbatim, ChunksHoldTheSourceBitsAndDecodeToThemInEveryDtypeAndView) {
  for (DType dt : {DType::f16, DType::bf16, DType::f32}) {
    const KvBuffer src = source(dt);
    Status s;
    const auto chunk = encode(src.view(), 0, true, &s);
    ASSERT_TRUE(s.is_ok()) << s.to_string();
    const std::size_t row = kLayout.row_values() * dtype_size(dt);
    // Header, table, and per segment its 8 fixed bytes and the rows.
    EXPECT_EQ(chunk.size(), 48 + 2 * kLayout.layers * (12 + 8 + kCount * row));
    // The values are the rows as they are.
    EXPECT_EQ(std::memcmp(chunk.data() + segment_offset(chunk, 3) + 8,
                          src.view().row(1, KvPart::value, kBegin), row),
              0);
    const auto info = read_chunk_info(chunk);
    ASSERT_TRUE(info);
    EXPECT_EQ(info->level, 0);

    // Into a paged view of the same dtype: the bits come back.
    std::vector<std::uint32_t> table(10);
    for (std::uint32_t i = 0; i < 10; ++i)
      table[i] = 9 - i;
    KvLayout l = kLayout;
    l.dtype = dt;
    auto paged = PagedKvBuffer::create(l, 8, 10, table);
    ASSERT_TRUE(paged);
    ASSERT_TRUE(decode_chunk(chunk, paged->view()).is_ok());
    // Into f32: the same values as the entropy-coded level 0 decodes to.
    l.dtype = DType::f32;
    auto from_verbatim = KvBuffer::create(l), from_split = KvBuffer::create(l);
    ASSERT_TRUE(decode_chunk(chunk, from_verbatim->view()).is_ok());
    const auto split = encode(src.view(), 0, false, &s);
    ASSERT_TRUE(decode_chunk(split, from_split->view()).is_ok());
    for (std::uint32_t layer = 0; layer < kLayout.layers; ++layer) {
      for (KvPart p : {KvPart::key, KvPart::value}) {
        for (std::uint32_t t = kBegin; t < kBegin + kCount; ++t) {
          ASSERT_EQ(std::memcmp(paged->view().row(layer, p, t), src.view().row(layer, p, t), row),
                    0)
              << dtype_name(dt) << " layer " << layer << " token " << t;
          ASSERT_EQ(std::memcmp(from_verbatim->view().row(layer, p, t),
                                from_split->view().row(layer, p, t), l.row_bytes()),
                    0)
              << dtype_name(dt) << " into f32, layer " << layer << " token " << t;
        }
      }
    }
  }
}

TEST(Verbatim, OnlyLevelZeroHasIt) {
  const KvBuffer src = source(DType::f16);
  Status s;
  encode(src.view(), 2, true, &s);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("verbatim"), std::string::npos) << s.message();

  // A lossy chunk whose segment says coding 3 is corrupt, checksums or not.
  auto lossy = encode(src.view(), 2, false, &s);
  ASSERT_TRUE(s.is_ok());
  lossy[segment_offset(lossy, 1)] = std::byte{3};
  testing_data::reseal(lossy, 1);
  auto dst = KvBuffer::create(kLayout);
  const Status d = decode_chunk(lossy, dst->view());
  EXPECT_EQ(d.code(), Errc::corrupt_data);
  EXPECT_NE(d.message().find("coding 3"), std::string::npos) << d.message();
}

TEST(Verbatim, SegmentsOfAnotherShapeOrLengthAreCorrupt) {
  const KvBuffer src = source(DType::f16);
  Status s;
  const auto chunk = encode(src.view(), 0, true, &s);
  ASSERT_TRUE(s.is_ok());
  auto dst = KvBuffer::create(kLayout);
  const std::uint32_t seg = segment_offset(chunk, 2);
  struct Case {
    std::size_t at;
    std::uint8_t value;
    const char* mention;
  };
  for (const Case& c : {Case{seg + 1, 1, "predictor 1"}, Case{seg + 2, 8, "lanes 8"},
                        Case{seg + 3, 1, "reserved 1"}, Case{seg + 4, 2, "substreams 2"},
                        Case{seg + 6, 8, "tail 8"}}) {
    auto bad = chunk;
    bad[c.at] = std::byte{c.value};
    testing_data::reseal(bad, 2);
    const Status d = decode_chunk(bad, dst->view());
    EXPECT_EQ(d.code(), Errc::corrupt_data) << c.mention;
    EXPECT_NE(d.message().find(c.mention), std::string::npos) << d.message();
  }
  // One value short: segment 2 ends two bytes early (the table says so, and segment 3 starts
  // there), so every later segment moves with it.
  std::vector<std::byte> shorter(chunk);
  shorter.erase(shorter.begin() + segment_offset(chunk, 3) - 2,
                shorter.begin() + segment_offset(chunk, 3));
  for (std::uint32_t i = 2; i < 2 * kLayout.layers; ++i) {
    std::uint32_t off, size;
    std::memcpy(&off, shorter.data() + 48 + 12 * i, 4);
    std::memcpy(&size, shorter.data() + 52 + 12 * i, 4);
    if (i == 2) size -= 2;
    if (i > 2) off -= 2;
    std::memcpy(shorter.data() + 48 + 12 * i, &off, 4);
    std::memcpy(shorter.data() + 52 + 12 * i, &size, 4);
  }
  std::uint32_t total;
  std::memcpy(&total, shorter.data() + 36, 4);
  total -= 2;
  std::memcpy(shorter.data() + 36, &total, 4);
  for (std::uint32_t i = 0; i < 2 * kLayout.layers; ++i)
    testing_data::reseal(shorter, i);
  const Status d = decode_chunk(shorter, dst->view());
  EXPECT_EQ(d.code(), Errc::corrupt_data);
  EXPECT_NE(d.message().find("bytes of values"), std::string::npos) << d.message();
  // Every truncation of a verbatim chunk is an error, never a read past its end.
  for (std::size_t n = 0; n < chunk.size(); n += 7) {
    const std::vector<std::byte> cut(chunk.begin(), chunk.begin() + static_cast<long>(n));
    EXPECT_EQ(decode_chunk(cut, dst->view()).code(), Errc::corrupt_data) << "length " << n;
  }
}

}  // namespace
}  // namespace kvstream
