#include "kvstream/kv_cache.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <random>
#include <vector>

#include "kvstream/half.hpp"

namespace kvstream {
namespace {

KvLayout small_layout(DType dtype, std::uint32_t tokens = 37) {
  return KvLayout{3, 2, 4, dtype, tokens};
}

// A value that identifies (layer, part, token, index), exact in f32 and f16 (bf16 rounds some
// of them; the f32 and f16 runs are the ones that pin the addressing).
float tag(std::uint32_t layer, KvPart part, std::uint32_t token, std::size_t i) {
  return static_cast<float>((layer * 2 + static_cast<unsigned>(part)) * 64 + token % 64) +
         static_cast<float>(i) * 0.25f - 8.0f;
}

float as_dtype(float f, DType dt) {
  switch (dt) {
    case DType::f32:
      return f;
    case DType::f16:
      return half_to_float(float_to_half(f));
    case DType::bf16:
      return bf16_to_float(float_to_bf16(f));
  }
  return f;
}

void fill(const KvView& v) {
  const KvLayout& l = v.layout();
  for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
    for (KvPart part : {KvPart::key, KvPart::value}) {
      for (std::uint32_t t = 0; t < l.tokens; ++t) {
        std::byte* row = v.row(layer, part, t);
        for (std::size_t i = 0; i < l.row_values(); ++i) {
          const float f = tag(layer, part, t, i);
          if (l.dtype == DType::f32) {
            std::memcpy(row + 4 * i, &f, 4);
          } else {
            const std::uint16_t h = l.dtype == DType::f16 ? float_to_half(f) : float_to_bf16(f);
            std::memcpy(row + 2 * i, &h, 2);
          }
        }
      }
    }
  }
}

float read(const KvView& v, std::uint32_t layer, KvPart part, std::uint32_t token, std::size_t i) {
  const std::byte* row = v.row(layer, part, token);
  if (v.layout().dtype == DType::f32) {
    float f;
    std::memcpy(&f, row + 4 * i, 4);
    return f;
  }
  std::uint16_t h;
  std::memcpy(&h, row + 2 * i, 2);
  return v.layout().dtype == DType::f16 ? half_to_float(h) : bf16_to_float(h);
}

void expect_tagged(const KvView& v, std::uint32_t begin, std::uint32_t count,
                   std::uint32_t tag_offset) {
  const KvLayout& l = v.layout();
  for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
    for (KvPart part : {KvPart::key, KvPart::value}) {
      for (std::uint32_t t = begin; t < begin + count; ++t) {
        for (std::size_t i = 0; i < l.row_values(); ++i) {
          ASSERT_EQ(read(v, layer, part, t, i),
                    as_dtype(tag(layer, part, t - begin + tag_offset, i), l.dtype))
              << "layer " << layer << " token " << t << " index " << i;
        }
      }
    }
  }
}

std::vector<std::uint32_t> shuffled_table(std::uint32_t blocks, std::uint32_t pool_blocks) {
  std::vector<std::uint32_t> all(pool_blocks);
  std::iota(all.begin(), all.end(), 0u);
  std::shuffle(all.begin(), all.end(), std::mt19937(42));
  all.resize(blocks);
  return all;
}

TEST(KvLayout, SizesAndValidation) {
  const KvLayout l = small_layout(DType::f16, 10);
  EXPECT_EQ(l.row_values(), 8u);
  EXPECT_EQ(l.row_bytes(), 16u);
  EXPECT_EQ(l.total_values(), 2u * 3 * 10 * 8);
  EXPECT_EQ(l.total_bytes(), 2u * l.total_values());
  EXPECT_TRUE(l.validate().is_ok());
  EXPECT_EQ((KvLayout{0, 2, 4, DType::f16, 1}).validate().code(), Errc::invalid_argument);
  EXPECT_EQ((KvLayout{1, 2, 0, DType::f16, 1}).validate().code(), Errc::invalid_argument);
  const KvLayout huge{0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, DType::f32, 0xFFFFFFFFu};
  EXPECT_EQ(huge.validate().code(), Errc::invalid_argument);
}

TEST(DType, ParseAndName) {
  EXPECT_EQ(*parse_dtype("fp16"), DType::f16);
  EXPECT_EQ(*parse_dtype("bf16"), DType::bf16);
  EXPECT_EQ(*parse_dtype("f32"), DType::f32);
  EXPECT_EQ(dtype_name(DType::bf16), "bf16");
  EXPECT_EQ(parse_dtype("int4").error().code(), Errc::invalid_argument);
}

TEST(KvView, ContiguousAddressing) {
  auto buf = KvBuffer::create(small_layout(DType::f16, 5));
  ASSERT_TRUE(buf);
  const KvView v = buf->view();
  // [layer][K|V][token][head][dim]: layer 1, V, token 2 is row (1*2+1)*5+2.
  EXPECT_EQ(v.row(1, KvPart::value, 2) - v.row(0, KvPart::key, 0), (3 * 5 + 2) * 16);
  EXPECT_FALSE(v.is_paged());
}

TEST(KvView, ContiguousRejectsSmallNullOrMisalignedBuffers) {
  const KvLayout l = small_layout(DType::f32, 4);
  std::vector<std::byte> mem(l.total_bytes() + 4);
  EXPECT_EQ(KvView::contiguous(mem.data(), l.total_bytes() - 1, l).error().code(),
            Errc::invalid_argument);
  EXPECT_EQ(KvView::contiguous(nullptr, l.total_bytes(), l).error().code(), Errc::invalid_argument);
  EXPECT_EQ(KvView::contiguous(mem.data() + 1, l.total_bytes(), l).error().code(),
            Errc::invalid_argument);
  EXPECT_TRUE(KvView::contiguous(mem.data(), l.total_bytes(), l));
}

TEST(KvView, PagedAddressingFollowsBlockTable) {
  const KvLayout l = small_layout(DType::bf16, 10);
  const std::vector<std::uint32_t> table = {3, 0, 2};
  auto buf = PagedKvBuffer::create(l, 4, 4, table);
  ASSERT_TRUE(buf);
  const KvView v = buf->view();
  EXPECT_TRUE(v.is_paged());
  // Token 5 is in logical block 1 -> physical block 0, slot 1.
  EXPECT_EQ(v.row(2, KvPart::key, 5) - v.row(2, KvPart::key, 4), l.row_bytes());
  EXPECT_EQ(v.row(2, KvPart::key, 4) - v.row(2, KvPart::key, 0), -3 * 4 * std::ptrdiff_t(16));
}

TEST(KvView, PagedRejectsBadTablesAndPools) {
  const KvLayout l = small_layout(DType::f16, 10);
  const std::size_t block_bytes = 4 * l.row_bytes();
  std::vector<std::vector<std::byte>> pools(6, std::vector<std::byte>(4 * block_bytes));
  std::vector<void*> ptrs;
  for (auto& p : pools)
    ptrs.push_back(p.data());
  const std::vector<std::uint32_t> ok = {0, 1, 2};
  EXPECT_TRUE(KvView::paged(ptrs, 4 * block_bytes, 4, ok, l));

  const std::vector<std::uint32_t> short_table = {0, 1};
  EXPECT_EQ(KvView::paged(ptrs, 4 * block_bytes, 4, short_table, l).error().code(),
            Errc::invalid_argument);
  const std::vector<std::uint32_t> out_of_pool = {0, 1, 4};
  EXPECT_EQ(KvView::paged(ptrs, 4 * block_bytes, 4, out_of_pool, l).error().code(),
            Errc::out_of_range);
  EXPECT_EQ(KvView::paged(ptrs, 4 * block_bytes, 0, ok, l).error().code(), Errc::invalid_argument);
  EXPECT_EQ(KvView::paged(std::span(ptrs).first(5), 4 * block_bytes, 4, ok, l).error().code(),
            Errc::invalid_argument);
  ptrs[3] = nullptr;
  const auto null_pool = KvView::paged(ptrs, 4 * block_bytes, 4, ok, l);
  ASSERT_FALSE(null_pool);
  EXPECT_NE(null_pool.error().message().find("layer 1, V"), std::string::npos);
}

TEST(KvCopy, ContiguousToPagedAndBackIsExact) {
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    const KvLayout l = small_layout(dt);
    auto src = KvBuffer::create(l);
    ASSERT_TRUE(src);
    fill(src->view());
    const std::uint32_t blocks = (l.tokens + 7) / 8;
    const auto table = shuffled_table(blocks, blocks + 3);
    auto paged = PagedKvBuffer::create(l, 8, blocks + 3, table);
    ASSERT_TRUE(paged);
    ASSERT_TRUE(copy_kv(src->view(), paged->view()).is_ok());
    expect_tagged(paged->view(), 0, l.tokens, 0);
    auto back = KvBuffer::create(l);
    ASSERT_TRUE(copy_kv(paged->view(), back->view()).is_ok());
    EXPECT_EQ(std::memcmp(back->bytes().data(), src->bytes().data(), l.total_bytes()), 0)
        << dtype_name(dt);
  }
}

TEST(KvCopy, PagedToPagedWithDifferentBlockSizes) {
  const KvLayout l = small_layout(DType::f16);
  auto a = PagedKvBuffer::create(l, 16, 3, shuffled_table(3, 3));
  auto b = PagedKvBuffer::create(l, 5, 10, shuffled_table(8, 10));
  ASSERT_TRUE(a && b);
  fill(a->view());
  ASSERT_TRUE(copy_kv(a->view(), b->view()).is_ok());
  expect_tagged(b->view(), 0, l.tokens, 0);
}

TEST(KvCopy, TokenSubrangesLandAtTheirOffsets) {
  auto src = KvBuffer::create(small_layout(DType::f32, 20));
  auto dst = PagedKvBuffer::create(small_layout(DType::f32, 30), 4, 8, shuffled_table(8, 8));
  ASSERT_TRUE(src && dst);
  fill(src->view());
  ASSERT_TRUE(copy_tokens(src->view(), 5, dst->view(), 17, 10).is_ok());
  expect_tagged(dst->view(), 17, 10, 5);
}

TEST(KvCopy, ConvertsDtypesWithRounding) {
  const KvLayout l32 = small_layout(DType::f32, 3);
  auto src = KvBuffer::create(l32);
  ASSERT_TRUE(src);
  std::vector<float> values(l32.total_values());
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  for (float& v : values)
    v = dist(rng);
  std::memcpy(src->bytes().data(), values.data(), l32.total_bytes());

  for (DType dt : {DType::f16, DType::bf16}) {
    KvLayout ln = l32;
    ln.dtype = dt;
    auto narrow = KvBuffer::create(ln);
    ASSERT_TRUE(copy_kv(src->view(), narrow->view()).is_ok());
    for (std::size_t i = 0; i < values.size(); ++i) {
      std::uint16_t h;
      std::memcpy(&h, narrow->bytes().data() + 2 * i, 2);
      const std::uint16_t want =
          dt == DType::f16 ? float_to_half(values[i]) : float_to_bf16(values[i]);
      ASSERT_EQ(h, want) << dtype_name(dt) << " value " << i;
    }
    // Widening back is exact: narrowing again changes nothing.
    auto wide = KvBuffer::create(l32);
    ASSERT_TRUE(copy_kv(narrow->view(), wide->view()).is_ok());
    auto again = KvBuffer::create(ln);
    ASSERT_TRUE(copy_kv(wide->view(), again->view()).is_ok());
    EXPECT_EQ(std::memcmp(again->bytes().data(), narrow->bytes().data(), ln.total_bytes()), 0);
  }
}

TEST(KvCopy, RejectsMismatchedShapesAndRanges) {
  auto a = KvBuffer::create(small_layout(DType::f16, 8));
  auto b = KvBuffer::create(KvLayout{3, 2, 8, DType::f16, 8});
  auto c = KvBuffer::create(small_layout(DType::f16, 6));
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(copy_kv(a->view(), b->view()).code(), Errc::invalid_argument);
  EXPECT_EQ(copy_kv(a->view(), c->view()).code(), Errc::invalid_argument);
  EXPECT_EQ(copy_tokens(a->view(), 4, c->view(), 0, 5).code(), Errc::out_of_range);
  EXPECT_EQ(copy_tokens(a->view(), 0, c->view(), 2, 5).code(), Errc::out_of_range);
  EXPECT_EQ(copy_tokens(a->view(), 0xFFFFFFF0u, c->view(), 0, 0x20).code(), Errc::out_of_range);
  EXPECT_TRUE(copy_tokens(a->view(), 3, c->view(), 1, 5).is_ok());
}

}  // namespace
}  // namespace kvstream
