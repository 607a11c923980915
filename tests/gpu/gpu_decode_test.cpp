// GpuDecoder on a real device: every case of decode_cases.hpp decodes into device memory exactly
// as the CPU decoder decodes it, contiguous and paged, and damaged chunks fail as they do on the
// CPU. Skips, saying why, where no CUDA device is usable.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "cuda_handles.hpp"
#include "decode_cases.hpp"
#include "kvstream/gpu_decoder.hpp"

namespace kvstream {
namespace {

using testing_data::DecodeCase;

class GpuDecode : public ::testing::Test {
 protected:
  void SetUp() override {
    auto n = gpu_device_count();
    if (!n) GTEST_SKIP() << "no usable CUDA device: " << n.error().to_string();
    auto d = GpuDecoder::create(0);
    ASSERT_TRUE(d.has_value()) << d.error().to_string();
    decoder_ = std::make_unique<GpuDecoder>(std::move(*d));
  }

  // Decodes into a zeroed device buffer of c.layout and returns its bytes.
  Expected<std::vector<std::byte>> decode_on_gpu(const DecodeCase& c) {
    gpu::DeviceBuffer dev;
    const std::size_t bytes = c.layout.total_bytes();
    KVS_RETURN_IF_ERROR(dev.reserve(bytes));
    KVS_CUDA(cudaMemset(dev.get(), 0, bytes));
    KVS_ASSIGN_OR_RETURN(const KvView view, KvView::contiguous(dev.get(), bytes, c.layout));
    KVS_RETURN_IF_ERROR(decoder_->decode(c.chunk, view, c.profile.get()));
    std::vector<std::byte> out(bytes);
    KVS_CUDA(cudaMemcpy(out.data(), dev.get(), bytes, cudaMemcpyDeviceToHost));
    return out;
  }

  void expect_same(const std::vector<DecodeCase>& cases) {
    ASSERT_FALSE(cases.empty());
    for (const DecodeCase& c : cases) {
      auto want = KvBuffer::create(c.layout).value();
      ASSERT_TRUE(decode_chunk(c.chunk, want.view(), c.profile.get()).is_ok()) << c.name;
      auto got = decode_on_gpu(c);
      ASSERT_TRUE(got.has_value()) << c.name << ": " << got.error().to_string();
      ASSERT_TRUE(std::equal(got->begin(), got->end(), want.bytes().begin())) << c.name;
    }
  }

  std::unique_ptr<GpuDecoder> decoder_;
};

TEST_F(GpuDecode, GoldenFilesDecodeAsOnTheCpu) {
  expect_same(testing_data::golden_cases());
}

TEST_F(GpuDecode, SyntheticCachesDecodeAsOnTheCpu) {
  expect_same(testing_data::synthetic_cases());
}

TEST_F(GpuDecode, Stories260kCachesDecodeAsOnTheCpu) {
  expect_same(testing_data::stories_cases());
}

TEST_F(GpuDecode, PagedDeviceMemoryGetsTheSameValues) {
  const KvLayout l{2, 2, 16, DType::f16, 96};
  auto src = KvBuffer::create(l).value();
  testing_data::fill_smooth(src.view(), 3);
  const std::uint32_t block = 16, pool_blocks = 8;
  const std::vector<std::uint32_t> table{5, 0, 7, 2, 6, 1};
  const std::size_t pool_bytes = std::size_t{pool_blocks} * block * l.row_bytes();
  std::vector<gpu::DeviceBuffer> pools(2 * l.layers);
  std::vector<void*> pool_ptrs;
  for (auto& p : pools) {
    ASSERT_TRUE(p.reserve(pool_bytes).is_ok());
    pool_ptrs.push_back(p.get());
  }
  auto view = KvView::paged(pool_ptrs, pool_bytes, block, table, l).value();
  auto host = PagedKvBuffer::create(l, block, pool_blocks, table).value();
  for (std::uint8_t level : {0, 2, 4}) {
    const DecodeCase c =
        testing_data::encode_case("paged", src.view(), 16, 64, level, 32, 600, DType::f16);
    ASSERT_TRUE(decoder_->decode(c.chunk, view).is_ok());
    ASSERT_TRUE(decode_chunk(c.chunk, host.view()).is_ok());
    std::vector<std::byte> row(l.row_bytes());
    for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
      for (KvPart p : {KvPart::key, KvPart::value}) {
        for (std::uint32_t t = 16; t < 80; ++t) {
          ASSERT_EQ(
              cudaMemcpy(row.data(), view.row(layer, p, t), row.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
          ASSERT_EQ(std::memcmp(row.data(), host.view().row(layer, p, t), row.size()), 0)
              << "level " << int{level} << " layer " << layer << " token " << t;
        }
      }
    }
  }
}

TEST_F(GpuDecode, DamagedChunkIsRefusedAndTheDecoderStaysUsable) {
  const KvLayout l{1, 2, 16, DType::f16, 64};
  auto src = KvBuffer::create(l).value();
  testing_data::fill_synthetic(src.view(), 9, false);
  DecodeCase c =
      testing_data::encode_case("damaged", src.view(), 0, 64, 3, 32, 1 << 20, DType::f16);
  DecodeCase bad = c;
  bad.chunk[bad.chunk.size() - 3] ^= std::byte{0x10};  // checksum mismatch
  const auto got = decode_on_gpu(bad);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code(), Errc::corrupt_data) << got.error().to_string();
  expect_same({c});
}

// DeviceKvBuffer, the cache `kvstream perf -m cuda` decodes into: chunks of a context land at
// their tokens, as the CPU decoder puts them.
TEST_F(GpuDecode, ADeviceKvBufferTakesAContextChunkByChunk) {
  const KvLayout l{2, 2, 16, DType::f16, 96};
  auto src = KvBuffer::create(l).value();
  testing_data::fill_synthetic(src.view(), 4, false);
  auto want = KvBuffer::create(l).value();
  auto cache = DeviceKvBuffer::create(l, 0);
  ASSERT_TRUE(cache.has_value()) << cache.error().to_string();
  EXPECT_EQ(cache->view().layout().tokens, 96u);
  for (std::uint32_t begin = 0; begin < 96; begin += 32) {
    DecodeCase c =
        testing_data::encode_case("chunk", src.view(), begin, 32, 2, 32, 1 << 20, DType::f16);
    ASSERT_TRUE(decode_chunk(c.chunk, want.view()).is_ok());
    ASSERT_TRUE(decoder_->decode(c.chunk, cache->view()).is_ok());
  }
  std::vector<std::byte> got(l.total_bytes());
  ASSERT_EQ(cudaMemcpy(got.data(), cache->view().base(), got.size(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_TRUE(std::equal(got.begin(), got.end(), want.bytes().begin()));
  EXPECT_EQ(DeviceKvBuffer::create(l, 99).error().code(), Errc::invalid_argument);
}

TEST_F(GpuDecode, TransformCodedChunkWithoutItsProfileIsRefused) {
  for (DecodeCase c : testing_data::golden_cases()) {
    if (!c.profile) continue;
    const std::string want = [&] {
      auto buf = KvBuffer::create(c.layout).value();
      return decode_chunk(c.chunk, buf.view()).message();
    }();
    c.profile = nullptr;
    const auto got = decode_on_gpu(c);
    ASSERT_FALSE(got.has_value());
    EXPECT_EQ(got.error().code(), Errc::invalid_argument);
    EXPECT_EQ(got.error().message(), want);
    return;
  }
  FAIL() << "no transform-coded golden file";
}

// A ring of two streams takes a run of chunks back to back (each host buffer overwritten as
// soon as submit returns, as a receive slot would be), reports them in order, and writes what
// the CPU decoder writes: from a pageable slot (CUDA stages the copy) and from a pinned one
// (a DMA that stage() waits for).
TEST_F(GpuDecode, ADecodeRingTakesChunksAsTheyLandAndReportsThemInOrder) {
  const auto cases = testing_data::synthetic_cases();
  ASSERT_GE(cases.size(), 3u);
  std::size_t largest = 0;
  for (const DecodeCase& c : cases)
    largest = std::max(largest, c.chunk.size());
  std::vector<std::byte> pageable(largest);
  auto pinned = allocate_pinned(largest, 0);
  ASSERT_TRUE(pinned.has_value()) << pinned.error().to_string();
  for (std::byte* slot : {pageable.data(), pinned->get()}) {
    SCOPED_TRACE(slot == pageable.data() ? "pageable slot" : "pinned slot");
    auto ring = GpuDecodeRing::create(0, 2);
    ASSERT_TRUE(ring.has_value()) << ring.error().to_string();
    std::vector<gpu::DeviceBuffer> outputs(cases.size());
    std::vector<std::size_t> ready;
    const GpuDecodeRing::Ready record = [&](std::size_t id, const DecodeTimes& t) {
      ready.push_back(id);
      EXPECT_GT(t.kernel_ms, 0) << id;  // CUDA events around the chunk's kernels
      EXPECT_GT(t.staging_ms, 0) << id;
    };
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const DecodeCase& c = cases[i];
      ASSERT_TRUE(outputs[i].reserve(c.layout.total_bytes()).is_ok());
      ASSERT_EQ(cudaMemset(outputs[i].get(), 0, c.layout.total_bytes()), cudaSuccess);
      const KvView view =
          KvView::contiguous(outputs[i].get(), c.layout.total_bytes(), c.layout).value();
      std::memcpy(slot, c.chunk.data(), c.chunk.size());
      const Status s =
          ring->submit(i, std::span(slot, c.chunk.size()), view, c.profile.get(), record);
      ASSERT_TRUE(s.is_ok()) << c.name << ": " << s.to_string();
      std::memset(slot, 0xA5, c.chunk.size());
    }
    ASSERT_TRUE(ring->drain(record).is_ok());
    ASSERT_EQ(ready.size(), cases.size());
    for (std::size_t i = 0; i < ready.size(); ++i)
      EXPECT_EQ(ready[i], i);
    for (std::size_t i = 0; i < cases.size(); ++i) {
      const DecodeCase& c = cases[i];
      auto want = KvBuffer::create(c.layout).value();
      ASSERT_TRUE(decode_chunk(c.chunk, want.view(), c.profile.get()).is_ok()) << c.name;
      std::vector<std::byte> got(c.layout.total_bytes());
      ASSERT_EQ(cudaMemcpy(got.data(), outputs[i].get(), got.size(), cudaMemcpyDeviceToHost),
                cudaSuccess);
      EXPECT_TRUE(std::equal(got.begin(), got.end(), want.bytes().begin())) << c.name;
    }
  }
}

}  // namespace
}  // namespace kvstream
