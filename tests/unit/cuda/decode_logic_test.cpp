// The GPU decoder's per-thread logic, run lane by lane on the CPU (HostTeam) over the same tasks
// the kernel gets, must write what the CPU decoder writes, byte for byte, and refuse what it
// refuses.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "chunk_damage.hpp"
#include "decode_cases.hpp"
#include "decode_plan.hpp"

namespace kvstream {
namespace {

using testing_data::DecodeCase;
using testing_data::reseal;

std::vector<std::byte> decode_cpu(const DecodeCase& c) {
  auto buf = KvBuffer::create(c.layout).value();
  const Status s = decode_chunk(c.chunk, buf.view(), c.profile.get());
  EXPECT_TRUE(s.is_ok()) << c.name << ": " << s.to_string();
  return {buf.bytes().begin(), buf.bytes().end()};
}

std::vector<std::byte> decode_logic(const DecodeCase& c) {
  auto buf = KvBuffer::create(c.layout).value();
  gpu::DecodePlanner planner;
  gpu::DecodePlan plan;
  Status s = planner.plan(c.chunk, plan);
  if (s.is_ok()) s = gpu::decode_on_host(c.chunk, plan, buf.view(), c.profile.get());
  EXPECT_TRUE(s.is_ok()) << c.name << ": " << s.to_string();
  return {buf.bytes().begin(), buf.bytes().end()};
}

void expect_same(const std::vector<DecodeCase>& cases) {
  ASSERT_FALSE(cases.empty());
  for (const DecodeCase& c : cases) {
    ASSERT_EQ(decode_logic(c), decode_cpu(c)) << c.name;
  }
}

TEST(GpuDecodeLogic, GoldenFilesDecodeAsOnTheCpu) {
  expect_same(testing_data::golden_cases());
}

TEST(GpuDecodeLogic, SyntheticCachesDecodeAsOnTheCpu) {
  expect_same(testing_data::synthetic_cases());
}

TEST(GpuDecodeLogic, Stories260kCachesDecodeAsOnTheCpu) {
  expect_same(testing_data::stories_cases());
}

TEST(GpuDecodeLogic, PagedDestinationGetsTheSameValues) {
  const KvLayout l{2, 2, 16, DType::f16, 96};
  auto src = KvBuffer::create(l).value();
  testing_data::fill_smooth(src.view(), 3);
  for (std::uint8_t level : {0, 2}) {
    const DecodeCase c =
        testing_data::encode_case("paged", src.view(), 16, 64, level, 32, 600, DType::f16);
    // Blocks of 16 tokens, shuffled in a pool with room to spare.
    const std::vector<std::uint32_t> table{5, 0, 7, 2, 6, 1};
    auto paged = PagedKvBuffer::create(l, 16, 8, table).value();
    gpu::DecodePlanner planner;
    gpu::DecodePlan plan;
    ASSERT_TRUE(planner.plan(c.chunk, plan).is_ok());
    ASSERT_TRUE(gpu::decode_on_host(c.chunk, plan, paged.view()).is_ok());
    auto want = KvBuffer::create(l).value();
    ASSERT_TRUE(decode_chunk(c.chunk, want.view()).is_ok());
    for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
      for (KvPart p : {KvPart::key, KvPart::value}) {
        for (std::uint32_t t = 16; t < 80; ++t) {
          ASSERT_EQ(std::memcmp(paged.view().row(layer, p, t), want.view().row(layer, p, t),
                                l.row_bytes()),
                    0)
              << "level " << int{level} << " layer " << layer << " token " << t;
        }
      }
    }
  }
}

TEST(GpuDecodeLogic, DamagedWordsFailAsOnTheCpu) {
  const KvLayout l{1, 2, 16, DType::f16, 64};
  auto src = KvBuffer::create(l).value();
  testing_data::fill_synthetic(src.view(), 9, false);
  int failures = 0;
  for (std::uint8_t level : {0, 3}) {
    const DecodeCase c =
        testing_data::encode_case("damaged", src.view(), 0, 64, level, 32, 1 << 20, DType::f16);
    std::uint32_t offset, size;
    std::memcpy(&offset, c.chunk.data() + 48, 4);
    std::memcpy(&size, c.chunk.data() + 52, 4);
    for (std::uint32_t k = 0; k < 64; ++k) {
      DecodeCase bad = c;
      // Somewhere in segment 0's last bytes: its words.
      const std::size_t at = offset + size - 1 - (k * 7) % (size / 4);
      bad.chunk[at] ^= std::byte{static_cast<unsigned char>(1u << (k % 8))};
      reseal(bad.chunk, 0);
      auto cpu = KvBuffer::create(l).value();
      auto logic = KvBuffer::create(l).value();
      const Status want = decode_chunk(bad.chunk, cpu.view());
      gpu::DecodePlanner planner;
      gpu::DecodePlan plan;
      Status got = planner.plan(bad.chunk, plan);
      if (got.is_ok()) got = gpu::decode_on_host(bad.chunk, plan, logic.view());
      ASSERT_EQ(got.code(), want.code())
          << k << ": " << got.to_string() << " vs " << want.to_string();
      EXPECT_EQ(got.message(), want.message());
      if (!want.is_ok()) {
        ++failures;
      } else {  // damage the checks cannot see decodes to the same values on both
        EXPECT_TRUE(std::equal(cpu.bytes().begin(), cpu.bytes().end(), logic.bytes().begin()));
      }
    }
  }
  EXPECT_GT(failures, 32);  // the damage is seen, not silently decoded
}

TEST(GpuDecodeLogic, TransformCodedChunksNeedTheirProfile) {
  for (const DecodeCase& c : testing_data::golden_cases()) {
    if (!c.profile) continue;
    auto buf = KvBuffer::create(c.layout).value();
    gpu::DecodePlanner planner;
    gpu::DecodePlan plan;
    ASSERT_TRUE(planner.plan(c.chunk, plan).is_ok());
    const Status want = decode_chunk(c.chunk, buf.view());
    const Status got = gpu::decode_on_host(c.chunk, plan, buf.view());
    EXPECT_EQ(got.code(), Errc::invalid_argument);
    EXPECT_EQ(got.message(), want.message());
    const auto other = testing_data::transform_profile(c.layout, 4, RopePairs::interleaved, true);
    EXPECT_EQ(gpu::decode_on_host(c.chunk, plan, buf.view(), other.get()).message(),
              decode_chunk(c.chunk, buf.view(), other.get()).message());
    return;
  }
  FAIL() << "no transform-coded golden file";
}

// Verbatim level 0 (coding 3) is the CPU decoder's: the GPU planner says so instead of
// decoding something else. The GPU encoder does not write it either.
TEST(GpuDecodeLogic, VerbatimChunksAreRefusedByName) {
  const KvLayout l{2, 2, 16, DType::f16, 40};
  auto src = KvBuffer::create(l).value();
  testing_data::fill_smooth(src.view(), 5);
  EncodeOptions o;
  o.verbatim = true;
  std::vector<std::byte> chunk;
  ASSERT_TRUE(encode_chunk(src.view(), 0, 40, o, chunk).is_ok());
  gpu::DecodePlanner planner;
  gpu::DecodePlan plan;
  const Status s = planner.plan(chunk, plan);
  EXPECT_EQ(s.code(), Errc::unsupported);
  EXPECT_NE(s.message().find("verbatim"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace kvstream
