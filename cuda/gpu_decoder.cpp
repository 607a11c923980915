// GpuDecoder: host-side validation and planning (decode_plan.cpp), then one kernel launch.
#include "kvstream/gpu_decoder.hpp"

#include <cstring>

#include "chunk_parse.hpp"
#include "cuda_handles.hpp"
#include "decode_kernel.hpp"
#include "decode_plan.hpp"
#include "device_view.hpp"
#include "table_bank.hpp"
#include "transform.hpp"

namespace kvstream {

using namespace gpu;

Expected<int> gpu_device_count() {
  int n = 0;
  KVS_CUDA(cudaGetDeviceCount(&n));
  if (n == 0) return Status(Errc::unsupported, "no CUDA device");
  return n;
}

Status gpu::use_device(int device) {
  KVS_ASSIGN_OR_RETURN(const int count, gpu_device_count());
  if (device < 0 || device >= count) {
    return Status(Errc::invalid_argument,
                  "CUDA device " + std::to_string(device) + " of " + std::to_string(count));
  }
  KVS_CUDA(cudaSetDevice(device));
  return Status::ok();
}

namespace {

constexpr std::size_t align16(std::size_t n) {
  return (n + 15) & ~std::size_t{15};
}

}  // namespace

struct GpuDecoder::Impl {
  int device = 0;
  Stream stream;
  Event began, ended;  // around the launched kernels: decode_ms()
  Event copied;        // after the chunk's copy to the device, from pinned memory
  DeviceBuffer bank_buckets, bank_tokens, steps;  // decode_plan.hpp's compact bank
  DecodePlanner planner;
  DecodePlan plan;
  bool staged = false;
  // The staged chunk and its plan (segments, substreams, channels, tasks, tables; 16-byte
  // aligned),
  // the predictor's references, per-substream failure codes, the view's pools and blocks.
  DeviceBuffer chunk, tables, refs, failures, view_arrays;
  std::size_t at_substreams = 0, at_channels = 0, at_tasks = 0, at_tables = 0;
  PinnedBuffer tables_host, failures_host;
  // Transform coding: S transposed for the transform it was made from (held, so that no other
  // transform takes its address), the staged chunk's angles, and its decoded coefficients.
  std::shared_ptr<const KvTransform> synthesis_for;
  DeviceBuffer synthesis_t, angles, coefficients;
  std::vector<float> host_floats;
  SynthesisArgs synthesis;
  std::vector<std::byte> view_host;
};

namespace {

// Uploads what a transform-coded chunk's synthesis needs besides its coefficients.
Status stage_transform(GpuDecoder::Impl& m, const ChunkInfo& info, const CodecProfile* profile) {
  KVS_ASSIGN_OR_RETURN(const KvTransform* t, codec::chunk_transform(info, profile));
  if (m.synthesis_for != profile->shared_transform()) {
    m.synthesis_for = nullptr;
    codec::transpose_layers(t->synthesis, 2 * std::size_t{t->channels}, m.host_floats);
    KVS_RETURN_IF_ERROR(m.synthesis_t.reserve(m.host_floats.size() * 4));
    KVS_CUDA(cudaMemcpy(m.synthesis_t.get(), m.host_floats.data(), m.host_floats.size() * 4,
                        cudaMemcpyHostToDevice));
    m.synthesis_for = profile->shared_transform();
  }
  m.synthesis = synthesis_args(info, *t);
  m.synthesis.synthesis_t = m.synthesis_t.get<float>();
  m.synthesis.angles = nullptr;
  if (!t->frequencies.empty()) {
    rope_angles(info, *t, m.host_floats);
    KVS_RETURN_IF_ERROR(m.angles.reserve(m.host_floats.size() * 4));
    KVS_CUDA(cudaMemcpy(m.angles.get(), m.host_floats.data(), m.host_floats.size() * 4,
                        cudaMemcpyHostToDevice));
    m.synthesis.angles = m.angles.get<float>();
  }
  const KvLayout cl{info.layers, info.kv_heads, info.head_dim, DType::f32, info.token_count};
  KVS_RETURN_IF_ERROR(m.coefficients.reserve(cl.total_bytes()));
  m.synthesis.coefficients = m.coefficients.get<float>();
  return Status::ok();
}

}  // namespace

GpuDecoder::GpuDecoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuDecoder::~GpuDecoder() = default;
GpuDecoder::GpuDecoder(GpuDecoder&&) noexcept = default;
GpuDecoder& GpuDecoder::operator=(GpuDecoder&&) noexcept = default;

Expected<GpuDecoder> GpuDecoder::create(int device) {
  KVS_RETURN_IF_ERROR(gpu::use_device(device));
  auto impl = std::make_unique<Impl>();
  impl->device = device;
  KVS_ASSIGN_OR_RETURN(impl->stream, Stream::create());
  KVS_ASSIGN_OR_RETURN(impl->began, Event::create());
  KVS_ASSIGN_OR_RETURN(impl->ended, Event::create());
  KVS_ASSIGN_OR_RETURN(impl->copied, Event::create());
  const auto upload = [](DeviceBuffer& to, const void* from, std::size_t bytes) -> Status {
    KVS_RETURN_IF_ERROR(to.reserve(bytes));
    KVS_CUDA(cudaMemcpy(to.get(), from, bytes, cudaMemcpyHostToDevice));
    return Status::ok();
  };
  KVS_RETURN_IF_ERROR(
      upload(impl->bank_buckets, bank_buckets(), std::size_t{codec::kBankTables} * kBuckets));
  KVS_RETURN_IF_ERROR(
      upload(impl->bank_tokens, bank_tokens(), std::size_t{codec::kBankTables} * 64 * 4));
  KVS_RETURN_IF_ERROR(upload(impl->steps, quantization_step_table(), 256 * 4));
  return GpuDecoder(std::move(impl));
}

std::string GpuDecoder::device_name() const {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, impl_->device) != cudaSuccess) return "unknown CUDA device";
  return p.name;
}

void* GpuDecoder::native_stream() const noexcept {
  return impl_->stream.get();
}

Status GpuDecoder::stage(std::span<const std::byte> chunk, const CodecProfile* profile) {
  Impl& m = *impl_;
  m.staged = false;
  KVS_CUDA(cudaSetDevice(m.device));
  // The previous launch may still read the buffers about to be overwritten.
  KVS_CUDA(cudaStreamSynchronize(m.stream.get()));
  KVS_RETURN_IF_ERROR(m.planner.plan(chunk, m.plan));
  const DecodePlan& p = m.plan;
  m.at_substreams = align16(p.segments.size() * sizeof(PlanSegment));
  m.at_channels = m.at_substreams + align16(p.substreams.size() * sizeof(PlanSubstream));
  m.at_tasks = m.at_channels + align16(p.channels.size() * 4);
  m.at_tables = m.at_tasks + align16(p.tasks.size() * sizeof(PlanTask));
  const std::size_t table_bytes = m.at_tables + p.tables.size() * 4;
  KVS_RETURN_IF_ERROR(m.tables_host.reserve(table_bytes));
  auto* h = m.tables_host.get<std::byte>();
  std::memcpy(h, p.segments.data(), p.segments.size() * sizeof(PlanSegment));
  std::memcpy(h + m.at_substreams, p.substreams.data(),
              p.substreams.size() * sizeof(PlanSubstream));
  std::memcpy(h + m.at_channels, p.channels.data(), p.channels.size() * 4);
  std::memcpy(h + m.at_tasks, p.tasks.data(), p.tasks.size() * sizeof(PlanTask));
  std::memcpy(h + m.at_tables, p.tables.data(), p.tables.size() * 4);
  KVS_RETURN_IF_ERROR(m.tables.reserve(table_bytes));
  KVS_RETURN_IF_ERROR(m.chunk.reserve(chunk.size()));
  KVS_RETURN_IF_ERROR(m.refs.reserve(std::size_t{p.ref_values} * 4));
  KVS_RETURN_IF_ERROR(m.failures.reserve(p.substreams.size() * 4 + 4));  // + the task counter
  KVS_RETURN_IF_ERROR(m.failures_host.reserve(p.substreams.size() * 4));
  KVS_CUDA(cudaMemcpyAsync(m.tables.get(), h, table_bytes, cudaMemcpyHostToDevice, m.stream.get()));
  KVS_CUDA(cudaMemcpyAsync(m.chunk.get(), chunk.data(), chunk.size(), cudaMemcpyHostToDevice,
                           m.stream.get()));
  // The caller may reuse the chunk's memory once this returns. From pageable memory the copy
  // has left it by then (CUDA stages it before returning); from pinned memory the DMA reads it
  // later, so wait for it.
  cudaPointerAttributes where{};
  KVS_CUDA(cudaPointerGetAttributes(&where, chunk.data()));
  if (where.type == cudaMemoryTypeHost) {
    KVS_CUDA(cudaEventRecord(m.copied.get(), m.stream.get()));
    KVS_CUDA(cudaEventSynchronize(m.copied.get()));
  }
  if (p.info.transformed) KVS_RETURN_IF_ERROR(stage_transform(m, p.info, profile));
  m.staged = true;
  return Status::ok();
}

Status GpuDecoder::launch(const KvView& dst) {
  Impl& m = *impl_;
  if (!m.staged) return Status(Errc::invalid_argument, "GpuDecoder::launch: no chunk staged");
  const DecodePlan& p = m.plan;
  KVS_RETURN_IF_ERROR(codec::check_destination(p.info, dst));
  KVS_CUDA(cudaSetDevice(m.device));
  // The pool list and block table of a paged view travel to the device with the launch.
  KVS_ASSIGN_OR_RETURN(const ViewDesc out,
                       device_view(dst, m.view_arrays, m.view_host, m.stream.get()));
  KVS_CUDA(cudaMemsetAsync(m.failures.get(), 0, p.substreams.size() * 4 + 4, m.stream.get()));
  DecodeArgs a;
  const auto* t = m.tables.get<std::byte>();
  a.chunk = m.chunk.get<std::byte>();
  a.segments = reinterpret_cast<const PlanSegment*>(t);
  a.substreams = reinterpret_cast<const PlanSubstream*>(t + m.at_substreams);
  a.channels = reinterpret_cast<const std::uint32_t*>(t + m.at_channels);
  a.tasks = reinterpret_cast<const PlanTask*>(t + m.at_tasks);
  a.task_count = static_cast<std::uint32_t>(p.tasks.size());
  a.tables = reinterpret_cast<const std::uint32_t*>(t + m.at_tables);
  a.table_count = static_cast<std::uint32_t>(p.tables.size());
  a.bank_buckets = m.bank_buckets.get<std::uint8_t>();
  a.bank_tokens = m.bank_tokens.get<std::uint32_t>();
  a.steps = m.steps.get<float>();
  a.refs = m.refs.get<std::int32_t>();
  a.failures = m.failures.get<std::uint32_t>();
  a.next_task = a.failures + p.substreams.size();
  a.dst = out;
  a.channels_per_row = p.info.kv_heads * p.info.head_dim;
  a.token_begin = p.info.token_begin;
  if (p.info.transformed) {  // the coefficients first, into their fp32 buffer
    m.synthesis.dst = a.dst;
    const KvLayout cl{p.info.layers, p.info.kv_heads, p.info.head_dim, DType::f32,
                      p.info.token_count};
    KVS_ASSIGN_OR_RETURN(const KvView cv,
                         KvView::contiguous(m.coefficients.get(), cl.total_bytes(), cl));
    a.dst = view_desc(cv, nullptr, nullptr);
    a.token_begin = 0;
  }
  a.source_dtype = static_cast<std::uint32_t>(p.info.dtype);
  KVS_CUDA(cudaEventRecord(m.began.get(), m.stream.get()));
  KVS_CUDA(launch_decode(a, p.segments[0].coding, m.stream.get()));
  if (p.info.transformed) KVS_CUDA(launch_synthesis(m.synthesis, m.stream.get()));
  KVS_CUDA(cudaEventRecord(m.ended.get(), m.stream.get()));
  KVS_CUDA(cudaMemcpyAsync(m.failures_host.get(), m.failures.get(), p.substreams.size() * 4,
                           cudaMemcpyDeviceToHost, m.stream.get()));
  return Status::ok();
}

Status GpuDecoder::wait() {
  Impl& m = *impl_;
  KVS_CUDA(cudaSetDevice(m.device));
  KVS_CUDA(cudaStreamSynchronize(m.stream.get()));
  return failures_status(
      m.plan, std::span(m.failures_host.get<const std::uint32_t>(), m.plan.substreams.size()));
}

Expected<bool> GpuDecoder::finished() {
  Impl& m = *impl_;
  KVS_CUDA(cudaSetDevice(m.device));
  const cudaError_t e = cudaStreamQuery(m.stream.get());
  if (e == cudaErrorNotReady) return false;  // not an error: the stream has work left
  KVS_CUDA(e);
  return true;
}

Expected<double> GpuDecoder::decode_ms() {
  Impl& m = *impl_;
  KVS_CUDA(cudaSetDevice(m.device));
  float ms = 0;
  KVS_CUDA(cudaEventElapsedTime(&ms, m.began.get(), m.ended.get()));
  return static_cast<double>(ms);
}

Status GpuDecoder::decode(std::span<const std::byte> chunk, const KvView& dst,
                          const CodecProfile* profile) {
  KVS_RETURN_IF_ERROR(stage(chunk, profile));
  KVS_RETURN_IF_ERROR(launch(dst));
  return wait();
}

}  // namespace kvstream
