// GPU decode and encode throughput, in bytes of fp16 KV written (decode) or read (encode) per
// second, next to the device-to-device copy bandwidth measured in the same run. The cache has a
// large model's shape (32 layers, 8 KV heads, head_dim 128, 512 tokens: 64 MiB of fp16) and real
// values: stories260K's KV of sampled contexts tiled across the channels (runner/model_shaped.hpp).
// Every level is checked against the CPU decoder bit for bit, and every encode against the CPU
// encoder byte for byte, before it is timed. Run: build/tests/bench/gpu_codec_bench
// (KVSTREAM_MODELS names the checkpoint folder).
#include <benchmark/benchmark.h>
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <tuple>

#include "cuda_handles.hpp"
#include "decode_plan.hpp"
#include "kvstream/codec.hpp"
#include "kvstream/gpu_decoder.hpp"
#include "kvstream/gpu_encoder.hpp"
#include "runner/model.hpp"
#include "runner/model_shaped.hpp"

namespace kvstream {
namespace {

constexpr std::uint32_t kTokens = 512, kContexts = 8;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "gpu_codec_bench: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T must(Expected<T> e, const char* what) {
  if (!e) die(std::string(what) + ": " + e.error().to_string());
  return std::move(*e);
}
void must(const Status& s, const char* what) {
  if (!s.is_ok()) die(std::string(what) + ": " + s.to_string());
}

// The model-shaped fp16 cache, built once.
const KvBuffer& big_cache() {
  static const KvBuffer cache = [] {
    const auto model =
        must(runner::Model::load(runner::models_dir() / "stories260K.bin"), "load stories260K");
    return must(
        runner::model_shaped_kv(model, KvLayout{32, 8, 128, DType::f16, kTokens}, kContexts, 100),
        "model-shaped cache");
  }();
  return cache;
}

// The chunk of the whole cache at benchmark arguments (level, lanes, substream values, lane
// values).
const std::vector<std::byte>& chunk_at(const benchmark::State& state) {
  static std::map<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t>,
                  std::vector<std::byte>>
      chunks;
  auto& c = chunks[{state.range(0), state.range(1), state.range(2), state.range(3)}];
  if (c.empty()) {
    EncodeOptions o;
    o.level = static_cast<std::uint8_t>(state.range(0));
    o.lanes = static_cast<std::uint32_t>(state.range(1));
    o.substream_values = static_cast<std::uint32_t>(state.range(2));
    o.lane_values = static_cast<std::uint32_t>(state.range(3));
    must(encode_chunk(big_cache().view(), 0, kTokens, o, c), "encode");
  }
  return c;
}

struct Device {
  GpuDecoder decoder;
  gpu::DeviceBuffer out, copy_src;
  gpu::Event start, stop;
};

Device& device() {
  static Device d = [] {
    auto n = gpu_device_count();
    if (!n) die("no usable CUDA device: " + n.error().to_string());
    Device dev{must(GpuDecoder::create(0), "GpuDecoder"),
               {},
               {},
               must(gpu::Event::create(), "event"),
               must(gpu::Event::create(), "event")};
    const std::size_t bytes = big_cache().layout().total_bytes();
    must(dev.out.reserve(bytes), "cudaMalloc");
    must(dev.copy_src.reserve(bytes), "cudaMalloc");
    std::fprintf(stderr, "device: %s\n", dev.decoder.device_name().c_str());
    return dev;
  }();
  return d;
}

// Seconds of GPU time between two events around `enqueue`.
template <typename F>
double timed(Device& d, F&& enqueue) {
  auto stream = static_cast<cudaStream_t>(d.decoder.native_stream());
  cudaEventRecord(d.start.get(), stream);
  enqueue(stream);
  cudaEventRecord(d.stop.get(), stream);
  cudaEventSynchronize(d.stop.get());
  float ms = 0;
  cudaEventElapsedTime(&ms, d.start.get(), d.stop.get());
  return ms * 1e-3;
}

void BM_DeviceCopy(benchmark::State& state) {
  Device& d = device();
  const std::size_t bytes = big_cache().layout().total_bytes();
  for (auto _ : state) {
    state.SetIterationTime(timed(d, [&](cudaStream_t s) {
      cudaMemcpyAsync(d.out.get(), d.copy_src.get(), bytes, cudaMemcpyDeviceToDevice, s);
    }));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
}

// Args: level, lanes, values per substream, values per lane (EncodeOptions).
void BM_GpuDecode(benchmark::State& state) {
  Device& d = device();
  const auto& chunk = chunk_at(state);
  const KvLayout& layout = big_cache().layout();
  const std::size_t bytes = layout.total_bytes();
  const KvView view = must(KvView::contiguous(d.out.get(), bytes, layout), "view");
  // Bit for bit what the CPU decoder writes, before any timing.
  KvBuffer want = must(KvBuffer::create(layout), "alloc");
  must(decode_chunk(chunk, want.view()), "CPU decode");
  must(gpu::cuda_status(cudaMemset(d.out.get(), 0xFF, bytes), "cudaMemset"), "poison");
  must(d.decoder.decode(chunk, view), "GPU decode");
  std::vector<std::byte> got(bytes);
  must(gpu::cuda_status(cudaMemcpy(got.data(), d.out.get(), bytes, cudaMemcpyDeviceToHost),
                        "cudaMemcpy"),
       "read back");
  if (std::memcmp(got.data(), want.bytes().data(), bytes) != 0) {
    state.SkipWithError("GPU output differs from the CPU decoder's");
    return;
  }
  must(d.decoder.stage(chunk), "stage");
  for (auto _ : state) {
    state.SetIterationTime(timed(d, [&](cudaStream_t) { must(d.decoder.launch(view), "launch"); }));
  }
  must(d.decoder.wait(), "decode");
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["bits_per_value"] =
      8.0 * static_cast<double>(chunk.size()) / static_cast<double>(layout.total_values());
  gpu::DecodePlanner planner;
  gpu::DecodePlan plan;
  must(planner.plan(chunk, plan), "plan");
  state.counters["tables"] = static_cast<double>(plan.tables.size());  // in shared memory
  state.counters["warps"] = static_cast<double>(plan.tasks.size());
}

// Host-side cost of a decode: validation (checksums, side information), planning and the copy
// of the chunk to the device, per fp16 byte that the chunk decodes to.
void BM_GpuStage(benchmark::State& state) {
  Device& d = device();
  const auto& chunk = chunk_at(state);
  for (auto _ : state) {
    must(d.decoder.stage(chunk), "stage");
    cudaStreamSynchronize(static_cast<cudaStream_t>(d.decoder.native_stream()));
  }
  state.SetBytesProcessed(
      static_cast<std::int64_t>(state.iterations() * big_cache().layout().total_bytes()));
}

// Encoding the cache held in device memory (push mode), to the CPU encoder's bytes: end to end
// (bytes_per_second: wall time of GpuEncoder::encode, the host's choices, copies and assembly
// included) and on the device alone (device_GBps: its kernels and copies, CUDA events).
void BM_GpuEncode(benchmark::State& state) {
  Device& d = device();
  static GpuEncoder encoder = must(GpuEncoder::create(0), "GpuEncoder");
  const auto& want = chunk_at(state);
  const KvLayout& layout = big_cache().layout();
  const std::size_t bytes = layout.total_bytes();
  must(gpu::cuda_status(
           cudaMemcpy(d.copy_src.get(), big_cache().bytes().data(), bytes, cudaMemcpyHostToDevice),
           "cudaMemcpy"),
       "upload");
  const KvView src = must(KvView::contiguous(d.copy_src.get(), bytes, layout), "view");
  EncodeOptions o;
  o.level = static_cast<std::uint8_t>(state.range(0));
  o.lanes = static_cast<std::uint32_t>(state.range(1));
  o.substream_values = static_cast<std::uint32_t>(state.range(2));
  o.lane_values = static_cast<std::uint32_t>(state.range(3));
  std::vector<std::byte> got;
  must(encoder.encode(src, 0, kTokens, o, got), "GPU encode");
  if (got != want) {
    state.SkipWithError("GPU chunk differs from the CPU encoder's");
    return;
  }
  double device_ms = 0;
  for (auto _ : state) {
    const auto t0 = std::chrono::steady_clock::now();
    must(encoder.encode(src, 0, kTokens, o, got), "GPU encode");
    state.SetIterationTime(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    device_ms += encoder.device_ms();
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * bytes));
  state.counters["device_GBps"] =
      static_cast<double>(state.iterations() * bytes) / (device_ms * 1e-3) / 1e9;
  state.counters["bits_per_value"] =
      8.0 * static_cast<double>(got.size()) / static_cast<double>(layout.total_values());
}

BENCHMARK(BM_DeviceCopy)->UseManualTime()->Unit(benchmark::kMicrosecond);
// A stream for GPUs (32 lanes of ~256 values: one thread each), the same with the encoder's
// lane sizing, more and smaller lanes, and the encoder's defaults (8 lanes, for the CPU).
BENCHMARK(BM_GpuDecode)
    ->ArgsProduct({{0, 1, 2, 3, 4, 5}, {32}, {4096}, {256}})
    ->ArgsProduct({{0, 2, 5}, {32}, {16384}, {512}})
    ->Args({2, 32, 4096, 128})
    ->Args({2, 32, 2048, 64})
    ->Args({2, 8, 16384, 512})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GpuStage)->Args({2, 32, 4096, 256})->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_GpuEncode)
    ->ArgsProduct({{0, 2, 5}, {32}, {4096}, {256}})
    ->Args({2, 8, 16384, 512})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace kvstream

BENCHMARK_MAIN();
