// GpuEncoder on a real device: every encoded case of decode_cases.hpp, its source in device
// memory (contiguous or paged), encodes to the CPU encoder's bytes, and bad values are refused
// with the CPU encoder's error. Skips, saying why, where no CUDA device is usable.
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <cmath>

#include "cuda_handles.hpp"
#include "decode_cases.hpp"
#include "kvstream/gpu_decoder.hpp"
#include "kvstream/gpu_encoder.hpp"
#include "kvstream/half.hpp"

namespace kvstream {
namespace {

using testing_data::DecodeCase;

class GpuEncode : public ::testing::Test {
 protected:
  void SetUp() override {
    auto n = gpu_device_count();
    if (!n) GTEST_SKIP() << "no usable CUDA device: " << n.error().to_string();
    auto e = GpuEncoder::create(0);
    ASSERT_TRUE(e.has_value()) << e.error().to_string();
    encoder_ = std::make_unique<GpuEncoder>(std::move(*e));
  }

  // Encodes tokens [begin, begin + count) of a device copy of `src`.
  Status encode_on_gpu(const KvBuffer& src, std::uint32_t begin, std::uint32_t count,
                       const EncodeOptions& o, std::vector<std::byte>& out) {
    gpu::DeviceBuffer dev;
    const std::size_t bytes = src.layout().total_bytes();
    KVS_RETURN_IF_ERROR(dev.reserve(bytes));
    KVS_CUDA(cudaMemcpy(dev.get(), src.bytes().data(), bytes, cudaMemcpyHostToDevice));
    KVS_ASSIGN_OR_RETURN(const KvView view, KvView::contiguous(dev.get(), bytes, src.layout()));
    return encoder_->encode(view, begin, count, o, out);
  }

  void expect_same_bytes(const std::vector<DecodeCase>& cases) {
    EXPECT_GT(testing_data::expect_cpu_encoder_bytes(
                  cases,
                  [&](const DecodeCase& c, std::vector<std::byte>& out) {
                    return encode_on_gpu(*c.source, c.begin, c.count, c.options, out);
                  }),
              0);
  }

  std::unique_ptr<GpuEncoder> encoder_;
};

TEST_F(GpuEncode, GoldenFilesAreEncodedByteForByte) {
  expect_same_bytes(testing_data::golden_encode_cases());
}

TEST_F(GpuEncode, SyntheticCachesEncodeAsOnTheCpu) {
  expect_same_bytes(testing_data::synthetic_cases());
}

TEST_F(GpuEncode, Stories260kCachesEncodeAsOnTheCpu) {
  expect_same_bytes(testing_data::stories_cases());
}

TEST_F(GpuEncode, PagedDeviceMemoryEncodesLikeContiguousHostMemory) {
  const KvLayout l{2, 2, 16, DType::f16, 96};
  auto src = KvBuffer::create(l).value();
  testing_data::fill_smooth(src.view(), 3);
  const std::uint32_t block = 16, pool_blocks = 8;
  const std::vector<std::uint32_t> table{5, 0, 7, 2, 6, 1};
  auto host = PagedKvBuffer::create(l, block, pool_blocks, table).value();
  ASSERT_TRUE(copy_kv(src.view(), host.view()).is_ok());
  const std::size_t pool_bytes = std::size_t{pool_blocks} * block * l.row_bytes();
  std::vector<gpu::DeviceBuffer> pools(2 * l.layers);
  std::vector<void*> pool_ptrs;
  for (std::size_t i = 0; i < pools.size(); ++i) {
    ASSERT_TRUE(pools[i].reserve(pool_bytes).is_ok());
    ASSERT_EQ(
        cudaMemcpy(pools[i].get(), host.view().pools()[i], pool_bytes, cudaMemcpyHostToDevice),
        cudaSuccess);
    pool_ptrs.push_back(pools[i].get());
  }
  const KvView view = KvView::paged(pool_ptrs, pool_bytes, block, table, l).value();
  const auto profile = testing_data::transform_profile(l, 5, RopePairs::halves, true);
  for (std::uint8_t level : {0, 1, 3}) {
    for (const CodecProfile* p : {static_cast<const CodecProfile*>(nullptr), profile.get()}) {
      EncodeOptions o;
      o.level = level;
      o.profile = p;
      o.substream_values = 500;
      std::vector<std::byte> want, got;
      ASSERT_TRUE(encode_chunk(src.view(), 16, 64, o, want).is_ok());
      const Status s = encoder_->encode(view, 16, 64, o, got);
      ASSERT_TRUE(s.is_ok()) << s.to_string();
      EXPECT_EQ(got, want) << "level " << int{level} << (p != nullptr ? " transform" : "");
    }
  }
}

TEST_F(GpuEncode, BadValuesAreRefusedAsOnTheCpuAndTheEncoderStaysUsable) {
  const KvLayout l{3, 2, 8, DType::f16, 64};
  auto buf = KvBuffer::create(l).value();
  testing_data::fill_synthetic(buf.view(), 4, false);
  auto good = KvBuffer::create(l).value();
  ASSERT_TRUE(copy_kv(buf.view(), good.view()).is_ok());
  reinterpret_cast<std::uint16_t*>(buf.view().row(1, KvPart::value, 40))[3] =
      float_to_half(std::nanf(""));
  reinterpret_cast<std::uint16_t*>(buf.view().row(2, KvPart::key, 20))[5] = float_to_half(INFINITY);
  const auto profile = testing_data::transform_profile(l, 2, RopePairs::interleaved, true);
  for (const CodecProfile* p : {static_cast<const CodecProfile*>(nullptr), profile.get()}) {
    EncodeOptions o;
    o.level = 2;
    o.profile = p;
    std::vector<std::byte> want, got;
    const Status w = encode_chunk(buf.view(), 8, 56, o, want);
    const Status g = encode_on_gpu(buf, 8, 56, o, got);
    ASSERT_FALSE(w.is_ok());
    EXPECT_EQ(g.code(), w.code()) << g.to_string();
    EXPECT_EQ(g.message(), w.message());
    ASSERT_TRUE(encode_chunk(good.view(), 8, 56, o, want).is_ok());
    ASSERT_TRUE(encode_on_gpu(good, 8, 56, o, got).is_ok());
    EXPECT_EQ(got, want);
  }
}

}  // namespace
}  // namespace kvstream
