// GpuEncoder: encode_logic.hpp's passes as kernels, with the host's choices (encode_plan.cpp)
// between the statistics and the tokens, and the chunk assembled on the host.
#include "kvstream/gpu_encoder.hpp"

#include <algorithm>

#include "cuda_handles.hpp"
#include "decode_plan.hpp"
#include "device_view.hpp"
#include "encode_kernel.hpp"
#include "encode_plan.hpp"
#include "table_bank.hpp"
#include "transform.hpp"

namespace kvstream {

using namespace gpu;

struct GpuEncoder::Impl {
  int device = 0;
  Stream stream;
  Event began[2], ended[2];  // around the two device phases: device_ms()
  double device_ms = 0;
  // The format's tables, uploaded once: bank costs, token weights, spread bounds, the bank's
  // freq | cum << 16 and reciprocals.
  DeviceBuffer costs, weights, bounds, freq_cum, reciprocals;
  // Per encode: the view's pools and blocks, the bad-value keys (source check, statistics),
  // statistics, choices, tables, symbols, words, states and packed words.
  DeviceBuffer view_arrays, bad, stats, step, center, predicted, table, table_row, constant, coded;
  DeviceBuffer token, raw, extra, words, states, word_begin, packed_at, packed;
  // Transform coding: A transposed for the transform it was made from (held, so that no other
  // transform takes its address), the chunk's angles, z rows and coefficients.
  std::shared_ptr<const KvTransform> analysis_for;
  DeviceBuffer analysis_t, angles, z, coefficients;
  std::vector<float> host_floats;
  std::vector<std::byte> view_host;
  std::vector<std::int64_t> stats_host;
  std::vector<std::uint8_t> table_host;
  std::vector<std::int32_t> center_host;
  std::vector<std::uint32_t> states_host, coded_host;
  std::vector<std::uint64_t> begin_host, at_host;
  PinnedBuffer packed_host;
};

namespace {

template <class T>
Status upload(DeviceBuffer& to, const T* from, std::size_t count, cudaStream_t stream) {
  KVS_RETURN_IF_ERROR(to.reserve(count * sizeof(T)));
  KVS_CUDA(cudaMemcpyAsync(to.get(), from, count * sizeof(T), cudaMemcpyHostToDevice, stream));
  return Status::ok();
}

template <class T>
Status download(T* to, const void* from, std::size_t count, cudaStream_t stream) {
  KVS_CUDA(cudaMemcpyAsync(to, from, count * sizeof(T), cudaMemcpyDeviceToHost, stream));
  return Status::ok();
}

// The value at `row` + channel c of a device view, for an error message.
Expected<float> device_value(const std::byte* row, std::uint32_t c, std::uint32_t dtype) {
  std::byte bytes[4] = {};
  const std::size_t size = dtype == 0 ? 4 : 2;
  KVS_CUDA(cudaMemcpy(bytes, row + size * c, size, cudaMemcpyDeviceToHost));
  return load_value(bytes, 0, dtype);
}

// Enqueues a transform's source check and analysis; `values` becomes the coefficients.
Status enqueue_analysis(GpuEncoder::Impl& m, const EncodeJob& job, const ViewDesc& src,
                        ViewDesc& values) {
  const KvTransform& t = *job.transform;
  const cudaStream_t stream = m.stream.get();
  const std::shared_ptr<const KvTransform> shared = job.profile->shared_transform();
  if (m.analysis_for != shared) {
    m.analysis_for = nullptr;
    codec::transpose_layers(t.analysis, 2 * std::size_t{t.channels}, m.host_floats);
    KVS_RETURN_IF_ERROR(upload(m.analysis_t, m.host_floats.data(), m.host_floats.size(), stream));
    KVS_CUDA(cudaStreamSynchronize(stream));  // host_floats is reused below
    m.analysis_for = shared;
  }
  AnalysisArgs a = analysis_args(job, src);
  a.analysis_t = m.analysis_t.get<float>();
  if (!t.frequencies.empty()) {
    job_angles(job, m.host_floats);
    KVS_RETURN_IF_ERROR(upload(m.angles, m.host_floats.data(), m.host_floats.size(), stream));
    a.angles = m.angles.get<float>();
  }
  const std::size_t values_n = std::size_t{job.segments} * job.tokens * job.channels;
  KVS_RETURN_IF_ERROR(m.z.reserve(values_n * 4));
  KVS_RETURN_IF_ERROR(m.coefficients.reserve(values_n * 4));
  a.z = m.z.get<float>();
  a.coefficients = m.coefficients.get<float>();
  KVS_CUDA(launch_check(src, job.token_begin, job.tokens, job.channels, job.layout.layers,
                        m.bad.get<std::uint64_t>(), stream));
  KVS_CUDA(launch_analysis(a, stream));
  const KvLayout cl{job.layout.layers, job.layout.kv_heads, job.layout.head_dim, DType::f32,
                    job.tokens};
  KVS_ASSIGN_OR_RETURN(const KvView cv,
                       KvView::contiguous(m.coefficients.get(), cl.total_bytes(), cl));
  values = view_desc(cv, nullptr, nullptr);
  return Status::ok();
}

Status elapsed(const Event& from, const Event& to, double& ms) {
  float f = 0;
  KVS_CUDA(cudaEventElapsedTime(&f, from.get(), to.get()));
  ms += static_cast<double>(f);
  return Status::ok();
}

// Device phase 1: (the transform's analysis,) the statistics, and their copy to the host
// (m.stats_host: sums, deviations, step deviations, largest magnitudes); an error for the first
// bad value. Sets `a` up for the coded values.
Status run_statistics(GpuEncoder::Impl& m, const EncodeJob& job, const KvView& src, EncodeArgs& a) {
  const cudaStream_t stream = m.stream.get();
  KVS_CUDA(cudaEventRecord(m.began[0].get(), stream));
  KVS_CUDA(cudaMemsetAsync(m.bad.get(), 0xFF, 2 * sizeof(std::uint64_t), stream));
  KVS_ASSIGN_OR_RETURN(const ViewDesc in, device_view(src, m.view_arrays, m.view_host, stream));
  ViewDesc values = in;
  if (job.transform != nullptr) KVS_RETURN_IF_ERROR(enqueue_analysis(m, job, in, values));
  a = encode_args(job, values);
  a.bank_costs = m.costs.get<std::uint32_t>();
  a.token_weights = m.weights.get<std::uint32_t>();
  a.spread_bounds = m.bounds.get<double>();
  a.freq_cum = m.freq_cum.get<std::uint32_t>();
  a.reciprocals = m.reciprocals.get<std::uint32_t>();
  const std::size_t n = job.segment_channels();
  KVS_RETURN_IF_ERROR(m.stats.reserve(4 * n * 8));
  a.sum = m.stats.get<std::int64_t>();
  a.dev = a.sum + n;
  a.step_dev = a.dev + n;
  a.absmax = a.step_dev + n;
  KVS_CUDA(launch_statistics(a, m.bad.get<std::uint64_t>() + 1, stream));
  std::uint64_t bad[2];
  KVS_RETURN_IF_ERROR(download(bad, m.bad.get(), 2, stream));
  m.stats_host.resize(4 * n);
  if (job.coding == codec::Coding::quantized) {
    KVS_RETURN_IF_ERROR(download(m.stats_host.data(), m.stats.get(), 4 * n, stream));
  }
  KVS_CUDA(cudaEventRecord(m.ended[0].get(), stream));
  KVS_CUDA(cudaStreamSynchronize(stream));
  KVS_RETURN_IF_ERROR(elapsed(m.began[0], m.ended[0], m.device_ms));
  return bad_values_status(job, in, a, bad[0], bad[1], device_value);
}

// Device phase 2, from the host's choices: tokens, tables and substreams, then each
// substream's words packed back to back in chunk order (m.at_host[s]: where substream s's
// begin), and what the chunk needs copied to the host.
Status run_coding(GpuEncoder::Impl& m, const EncodeJob& job, const Choices& choices,
                  EncodeArgs& a) {
  const cudaStream_t stream = m.stream.get();
  const std::size_t n = job.segment_channels(), values_n = job.values();
  const std::size_t subs = job.all_substreams();
  const bool lossy = job.coding == codec::Coding::quantized;
  KVS_CUDA(cudaEventRecord(m.began[1].get(), stream));
  if (lossy) {
    KVS_RETURN_IF_ERROR(upload(m.step, choices.step.data(), n, stream));
    KVS_RETURN_IF_ERROR(upload(m.center, choices.center.data(), n, stream));
    KVS_RETURN_IF_ERROR(upload(m.predicted, choices.predicted.data(), job.segments, stream));
  } else {
    KVS_RETURN_IF_ERROR(m.center.reserve(n * 4));
  }
  KVS_RETURN_IF_ERROR(m.table.reserve(n));
  KVS_RETURN_IF_ERROR(m.table_row.reserve(n * 4));
  KVS_RETURN_IF_ERROR(m.constant.reserve(n));
  KVS_RETURN_IF_ERROR(m.coded.reserve(job.segments * 4));
  KVS_RETURN_IF_ERROR(m.token.reserve(values_n));
  KVS_RETURN_IF_ERROR(m.raw.reserve(values_n * 2));
  KVS_RETURN_IF_ERROR(m.extra.reserve(lossy ? 0 : values_n * 4));
  KVS_RETURN_IF_ERROR(m.words.reserve(subs * job.region_words * 2));
  KVS_RETURN_IF_ERROR(m.states.reserve(subs * 32 * 4));
  KVS_RETURN_IF_ERROR(m.word_begin.reserve(subs * 8));
  a.step = m.step.get<float>();
  a.center = m.center.get<std::int32_t>();
  a.predicted = m.predicted.get<std::uint8_t>();
  a.table = m.table.get<std::uint8_t>();
  a.table_row = m.table_row.get<std::uint32_t>();
  a.constant = m.constant.get<std::uint8_t>();
  a.coded = m.coded.get<std::uint32_t>();
  a.token = m.token.get<std::uint8_t>();
  a.raw = m.raw.get<std::uint16_t>();
  a.extra = m.extra.get<std::uint32_t>();
  a.words = m.words.get<std::uint16_t>();
  a.states = m.states.get<std::uint32_t>();
  a.word_begin = m.word_begin.get<std::uint64_t>();
  KVS_CUDA(launch_coding(a, stream));
  m.table_host.resize(n);
  m.states_host.resize(subs * 32);
  m.begin_host.resize(subs);
  KVS_RETURN_IF_ERROR(download(m.table_host.data(), m.table.get(), n, stream));
  m.coded_host.resize(job.segments);
  KVS_RETURN_IF_ERROR(download(m.coded_host.data(), m.coded.get(), job.segments, stream));
  if (!lossy) {  // the kernels chose them; lossy centers are the host's own choices
    m.center_host.resize(n);
    KVS_RETURN_IF_ERROR(download(m.center_host.data(), m.center.get(), n, stream));
  }
  KVS_RETURN_IF_ERROR(download(m.states_host.data(), m.states.get(), subs * 32, stream));
  KVS_RETURN_IF_ERROR(download(m.begin_host.data(), m.word_begin.get(), subs, stream));
  KVS_CUDA(cudaStreamSynchronize(stream));
  m.at_host.resize(subs);
  std::uint64_t total = 0;
  for (std::size_t s = 0; s < subs; ++s) {
    m.at_host[s] = total;
    total += job.region_words - m.begin_host[s];
  }
  KVS_RETURN_IF_ERROR(upload(m.packed_at, m.at_host.data(), subs, stream));
  KVS_RETURN_IF_ERROR(m.packed.reserve(total * 2));
  KVS_RETURN_IF_ERROR(m.packed_host.reserve(total * 2));
  KVS_CUDA(launch_pack(a, m.packed_at.get<std::uint64_t>(), m.packed.get<std::uint16_t>(), stream));
  KVS_RETURN_IF_ERROR(download(m.packed_host.get<std::uint16_t>(), m.packed.get(), total, stream));
  KVS_CUDA(cudaEventRecord(m.ended[1].get(), stream));
  KVS_CUDA(cudaStreamSynchronize(stream));
  return elapsed(m.began[1], m.ended[1], m.device_ms);
}

}  // namespace

GpuEncoder::GpuEncoder(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuEncoder::~GpuEncoder() = default;
GpuEncoder::GpuEncoder(GpuEncoder&&) noexcept = default;
GpuEncoder& GpuEncoder::operator=(GpuEncoder&&) noexcept = default;

Expected<GpuEncoder> GpuEncoder::create(int device) {
  KVS_RETURN_IF_ERROR(gpu::use_device(device));
  auto impl = std::make_unique<Impl>();
  Impl& m = *impl;
  m.device = device;
  KVS_ASSIGN_OR_RETURN(m.stream, Stream::create());
  for (int i = 0; i < 2; ++i) {
    KVS_ASSIGN_OR_RETURN(m.began[i], Event::create());
    KVS_ASSIGN_OR_RETURN(m.ended[i], Event::create());
  }
  const cudaStream_t s = m.stream.get();
  const std::size_t entries = std::size_t{codec::kBankTables} * codec::kTokens;
  KVS_RETURN_IF_ERROR(upload(m.costs, bank_costs(), entries, s));
  KVS_RETURN_IF_ERROR(upload(m.weights, codec::token_weights().data(), codec::kTokens, s));
  KVS_RETURN_IF_ERROR(
      upload(m.bounds, codec::spread_bounds().data(), codec::spread_bounds().size(), s));
  KVS_RETURN_IF_ERROR(upload(m.freq_cum, codec::table_bank_freq_cum(), entries, s));
  KVS_RETURN_IF_ERROR(upload(m.reciprocals, codec::table_bank_reciprocals(), entries, s));
  KVS_RETURN_IF_ERROR(m.bad.reserve(2 * sizeof(std::uint64_t)));
  KVS_CUDA(cudaStreamSynchronize(s));
  return GpuEncoder(std::move(impl));
}

std::string GpuEncoder::device_name() const {
  cudaDeviceProp p{};
  if (cudaGetDeviceProperties(&p, impl_->device) != cudaSuccess) return "unknown CUDA device";
  return p.name;
}

double GpuEncoder::device_ms() const noexcept {
  return impl_->device_ms;
}

Status GpuEncoder::encode(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                          const EncodeOptions& o, std::vector<std::byte>& out) {
  Impl& m = *impl_;
  m.device_ms = 0;
  EncodeJob job;
  KVS_RETURN_IF_ERROR(prepare_encode(src, token_begin, token_count, o, job));
  KVS_CUDA(cudaSetDevice(m.device));
  KVS_CUDA(cudaStreamSynchronize(m.stream.get()));  // a failed encode may have left work queued
  EncodeArgs a;
  KVS_RETURN_IF_ERROR(run_statistics(m, job, src, a));
  Choices choices;
  const bool lossy = job.coding == codec::Coding::quantized;
  if (lossy) {
    const std::size_t n = job.segment_channels();
    const std::span<const std::int64_t> st(m.stats_host);
    choose_on_host(job, st.subspan(0, n), st.subspan(n, n), st.subspan(2 * n, n),
                   st.subspan(3 * n, n), choices);
  }
  KVS_RETURN_IF_ERROR(run_coding(m, job, choices, a));
  const std::uint16_t* packed = m.packed_host.get<const std::uint16_t>();
  const EncodedParts parts{choices.predicted,
                           choices.step_code,
                           m.table_host,
                           lossy ? std::span<const std::int32_t>(choices.center)
                                 : std::span<const std::int32_t>(m.center_host),
                           m.coded_host,
                           m.states_host,
                           [&](std::uint64_t s) {
                             return std::span(packed + m.at_host[s],
                                              job.region_words - m.begin_host[s]);
                           }};
  return assemble_chunk(job, parts, out);
}

}  // namespace kvstream
