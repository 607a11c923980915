// Microbenchmarks of the codec's hot loops, in bytes of fp16 KV per second (one core).
// Shapes: stories260K's chunk (5 layers x 4 heads x 8 dims x 128 tokens) and a 7B-like slice
// (4 layers x 8 heads x 128 dims x 256 tokens). Data: the synthetic KV of the codec tests.
#include <benchmark/benchmark.h>

#include <vector>

#include "cpu_features.hpp"
#include "crc32c.hpp"
#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"
#include "transform.hpp"

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

// Decodes shape `which` coded at `level`, again and again, with one decoder (reused, as on a
// hot path) of `threads` threads.
void decode_loop(benchmark::State& state, int which, std::int64_t level, unsigned threads) {
  Fixture f(which);
  EncodeOptions o;
  o.level = static_cast<std::uint8_t>(level);
  std::vector<std::byte> chunk;
  if (!encode_chunk(f.kv.view(), 0, f.kv.layout().tokens, o, chunk).is_ok()) {
    state.SkipWithError("encode failed");
    return;
  }
  ChunkDecoder decoder(threads);
  for (auto _ : state) {
    if (!decoder.decode(chunk, f.out.view()).is_ok()) state.SkipWithError("decode failed");
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(
      static_cast<std::int64_t>(state.iterations() * f.kv.layout().total_bytes()));
}

void BM_Decode(benchmark::State& state) {
  decode_loop(state, static_cast<int>(state.range(0)), state.range(1), 1);
}

// The 7B-like slice decoded by one ChunkDecoder on range(1) threads, at level range(0): wall
// time, so that a second core shows as speed (against BM_Decode, one core, in the same run).
void BM_DecodeThreads(benchmark::State& state) {
  decode_loop(state, 1, state.range(0), static_cast<unsigned>(state.range(1)));
}

// Transform coding on the stories260K shape (the test transform of kv_test_data.hpp, its level
// 2). Only that shape: a layer's transform is dense over its 2C values, 2048 x 2048 for the
// 7B-like slice, which no CPU path is meant for.
struct TransformFixture : Fixture {
  TransformFixture()
      : Fixture(0),
        profile(testing_data::make_transform_profile(kv.layout().layers, kv.layout().kv_heads,
                                                     kv.layout().head_dim, 3)) {
    options.level = 2;
    options.profile = &profile;
  }
  CodecProfile profile;
  EncodeOptions options;
};

void BM_EncodeTransform(benchmark::State& state) {
  TransformFixture f;
  std::vector<std::byte> chunk;
  ChunkEncoder encoder;
  for (auto _ : state) {
    if (!encoder.encode(f.kv.view(), 0, f.kv.layout().tokens, f.options, chunk).is_ok()) {
      state.SkipWithError("encode failed");
    }
    benchmark::DoNotOptimize(chunk.data());
  }
  state.SetBytesProcessed(
      static_cast<std::int64_t>(state.iterations() * f.kv.layout().total_bytes()));
}

void BM_DecodeTransform(benchmark::State& state) {
  TransformFixture f;
  std::vector<std::byte> chunk;
  if (!encode_chunk(f.kv.view(), 0, f.kv.layout().tokens, f.options, chunk).is_ok()) {
    state.SkipWithError("encode failed");
    return;
  }
  ChunkDecoder decoder;
  for (auto _ : state) {
    if (!decoder.decode(chunk, f.out.view(), &f.profile).is_ok()) state.SkipWithError("decode");
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

// Transform coding's matrix product (codec/transform.hpp): one layer of a stories260K chunk,
// 128 tokens x 64 values, by a 64 x 64 matrix. Arg: 0 scalar, 1 AVX2, 2 AVX-512. Bytes: fp16
// values produced, for comparison with the decode benchmarks.
void BM_TransformMultiply(benchmark::State& state) {
  constexpr std::size_t n = 64, tokens = 128;
  std::vector<float> m(n * n), in(n * tokens), out(n * tokens);
  for (std::size_t i = 0; i < m.size(); ++i)
    m[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
  for (std::size_t i = 0; i < in.size(); ++i)
    in[i] = static_cast<float>(i % 97) - 48.0f;
  const auto path = state.range(0);
  if ((path == 2 && !codec::cpu_has_avx512()) || (path >= 1 && !codec::cpu_has_avx2_f16c())) {
    state.SkipWithError("this CPU lacks the path");
    return;
  }
  codec::set_simd_transform_enabled(path > 0);
  codec::set_avx512_enabled(path == 2);
  for (auto _ : state) {
    codec::multiply_rows(n, m, tokens, {in.data(), in.data(), n / 2, n},
                         {out.data(), out.data(), n / 2, n});
    benchmark::ClobberMemory();
  }
  codec::set_simd_transform_enabled(true);
  codec::set_avx512_enabled(true);
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * n * tokens * 2));
  state.counters["GFMA/s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * n * n * tokens) / 1e9, benchmark::Counter::kIsRate);
}

// Args: {shape (0 stories chunk, 1 7B-like slice), level}.
BENCHMARK(BM_Encode)->ArgsProduct({{0, 1}, {0, 2, 5}})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Decode)->ArgsProduct({{0, 1}, {0, 2, 5}})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeThreads)
    ->ArgsProduct({{0, 2}, {1, 2}})
    ->UseRealTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_EncodeTransform)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_DecodeTransform)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Crc32c)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_TransformMultiply)->Arg(0)->Arg(1)->Arg(2)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvstream

BENCHMARK_MAIN();
