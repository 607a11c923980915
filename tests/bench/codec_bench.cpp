// Microbenchmarks of the codec's hot loops, in bytes of fp16 KV per second (one core).
// Shapes: stories260K's chunk (5 layers x 4 heads x 8 dims x 128 tokens) and a 7B-like slice
// (4 layers x 8 heads x 128 dims x 256 tokens). Data: the synthetic KV of the codec tests.
#include <benchmark/benchmark.h>

#include <vector>

#include "crc32c.hpp"
#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"

namespace kvstream {
namespace {

KvLayout shape(int which) {
  return which == 0 ? KvLayout{5, 4, 8, DType::f16, 128} : KvLayout{4, 8, 128, DType::f16, 256};
}

struct Fixture {
  explicit Fixture(int which)
      : kv(*KvBuffer::create(shape(which))), out(*KvBuffer::create(shape(which))) {
    testing_data::fill_synthetic(kv.view(), 3, false);
  }
  KvBuffer kv, out;
};

void BM_Encode(benchmark::State& state) {
  Fixture f(static_cast<int>(state.range(0)));
  EncodeOptions o;
  o.level = static_cast<std::uint8_t>(state.range(1));
  std::vector<std::byte> chunk;
  ChunkEncoder encoder;  // reused, as on a hot path
  for (auto _ : state) {
    if (!encoder.encode(f.kv.view(), 0, f.kv.layout().tokens, o, chunk).is_ok()) {
      state.SkipWithError("encode failed");
    }
    benchmark::DoNotOptimize(chunk.data());
  }
  state.SetBytesProcessed(
      static_cast<std::int64_t>(state.iterations() * f.kv.layout().total_bytes()));
  state.counters["bits_per_value"] =
      8.0 * static_cast<double>(chunk.size()) / static_cast<double>(f.kv.layout().total_values());
}

void BM_Decode(benchmark::State& state) {
  Fixture f(static_cast<int>(state.range(0)));
  EncodeOptions o;
  o.level = static_cast<std::uint8_t>(state.range(1));
  std::vector<std::byte> chunk;
  if (!encode_chunk(f.kv.view(), 0, f.kv.layout().tokens, o, chunk).is_ok()) {
    state.SkipWithError("encode failed");
    return;
  }
  ChunkDecoder decoder;  // reused, as on a hot path
  for (auto _ : state) {
    if (!decoder.decode(chunk, f.out.view()).is_ok()) state.SkipWithError("decode failed");
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(
      static_cast<std::int64_t>(state.iterations() * f.kv.layout().total_bytes()));
}

void BM_Crc32c(benchmark::State& state) {
  std::vector<std::byte> data(1 << 20, std::byte{0x5A});
  for (auto _ : state)
    benchmark::DoNotOptimize(codec::crc32c(data));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * data.size()));
}

// Args: {shape (0 stories chunk, 1 7B-like slice), level}.
BENCHMARK(BM_Encode)->ArgsProduct({{0, 1}, {0, 2, 5}})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Decode)->ArgsProduct({{0, 1}, {0, 2, 5}})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Crc32c)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvstream

BENCHMARK_MAIN();
