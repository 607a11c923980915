#include "encode_plan.hpp"

#include <algorithm>
#include <optional>

#include "chunk_format.hpp"
#include "decode_plan.hpp"
#include "table_bank.hpp"
#include "transform.hpp"

namespace kvstream::gpu {

using codec::Coding;

Status prepare_encode(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                      const EncodeOptions& o, EncodeJob& job) {
  KVS_RETURN_IF_ERROR(
      codec::check_encode(src, token_begin, token_count, o, job.builtin, job.profile));
  if (o.verbatim) {
    // A copy needs no GPU: the CPU encoder writes verbatim chunks.
    return Status(Errc::unsupported, "verbatim level 0 (coding 3): use the CPU encoder");
  }
  const KvLayout& l = src.layout();
  job.level = o.level;
  job.transform = job.profile != nullptr ? job.profile->transform() : nullptr;
  job.layout = l;
  job.token_begin = token_begin;
  job.coding = codec::coding_for(o.level, l.dtype);
  job.segments = 2 * l.layers;
  job.channels = static_cast<std::uint32_t>(l.row_values());
  job.tokens = token_count;
  job.per = codec::substream_tokens(token_count, job.channels, o);
  job.substreams = (token_count + job.per - 1) / job.per;
  job.lanes = codec::substream_lanes(job.per, job.channels, o);
  job.shift =
      job.coding == Coding::quantized ? 0 : codec::split_shift(static_cast<std::uint8_t>(l.dtype));
  job.region_words = codec::rans_word_bound(std::size_t{job.per} * job.channels,
                                            job.coding == Coding::quantized ? 0 : job.shift + 1);
  return Status::ok();
}

const std::uint32_t* bank_costs() {
  static const std::vector<std::uint32_t> costs = [] {
    std::vector<std::uint32_t> c;
    for (const codec::TokenTable& t : codec::table_bank())
      c.insert(c.end(), t.cost.begin(), t.cost.end());
    return c;
  }();
  return costs.data();
}

EncodeArgs encode_args(const EncodeJob& job, const ViewDesc& src) {
  EncodeArgs a;
  a.src = src;
  a.src_begin = job.transform != nullptr ? 0 : job.token_begin;
  a.segments = job.segments;
  a.channels = job.channels;
  a.tokens = job.tokens;
  a.coding = static_cast<std::uint32_t>(job.coding);
  a.shift = job.shift;
  a.per = job.per;
  a.bank_costs = bank_costs();
  a.token_weights = codec::token_weights().data();
  a.spread_bounds = codec::spread_bounds().data();
  a.freq_cum = codec::table_bank_freq_cum();
  a.reciprocals = codec::table_bank_reciprocals();
  a.substreams = job.substreams;
  a.lanes = job.lanes;
  a.region_words = job.region_words;
  return a;
}

AnalysisArgs analysis_args(const EncodeJob& job, const ViewDesc& src) {
  AnalysisArgs a;
  a.src = src;
  a.src_begin = job.token_begin;
  a.channels = job.channels;
  a.head_dim = job.layout.head_dim;
  a.layers = job.layout.layers;
  a.tokens = job.tokens;
  a.halves = job.transform->pairs == RopePairs::halves;
  return a;
}

void job_angles(const EncodeJob& job, std::vector<float>& out) {
  ChunkInfo info;
  info.token_begin = job.token_begin;
  info.token_count = job.tokens;
  rope_angles(info, *job.transform, out);
}

namespace {

// Where a bad-value key points: segment 2 * layer + part, token (of the chunk, from 0), channel.
struct ValueAt {
  std::uint32_t segment, token, channel;
};

// The error for a bad value x at `at`: `coefficient` for transform coefficients, else a value
// of the source.
Status bad_value_status(const EncodeJob& job, const ValueAt& at, float x, bool coefficient) {
  const Status s = codec::lossy_value_error(at.segment / 2, static_cast<KvPart>(at.segment % 2),
                                            (coefficient ? 0 : job.token_begin) + at.token,
                                            at.channel, job.layout.head_dim, x);
  return coefficient ? s.with_context("transform coefficients") : s;
}

}  // namespace

Status bad_values_status(const EncodeJob& job, const ViewDesc& src, const EncodeArgs& coded,
                         std::uint64_t source_key, std::uint64_t coded_key, const ReadValue& read) {
  const std::uint32_t C = job.channels, T = job.tokens;
  if (source_key != kNoBadValue) {
    const std::uint64_t row = source_key / C;  // (layer * T + t) * 2 + part
    const ValueAt at{static_cast<std::uint32_t>(row / 2 / T * 2 + row % 2),
                     static_cast<std::uint32_t>(row / 2 % T),
                     static_cast<std::uint32_t>(source_key % C)};
    KVS_ASSIGN_OR_RETURN(const float x, read(src.row(at.segment, job.token_begin + at.token),
                                             at.channel, src.dtype));
    return bad_value_status(job, at, x, false);
  }
  if (coded_key != kNoBadValue) {
    const std::uint64_t row = coded_key / C;  // segment * T + t
    const ValueAt at{static_cast<std::uint32_t>(row / T), static_cast<std::uint32_t>(row % T),
                     static_cast<std::uint32_t>(coded_key % C)};
    KVS_ASSIGN_OR_RETURN(const float x,
                         read(coded.row(at.segment, at.token), at.channel, coded.src.dtype));
    return bad_value_status(job, at, x, job.transform != nullptr);
  }
  return Status::ok();
}

void choose_on_host(const EncodeJob& job, std::span<const std::int64_t> sum,
                    std::span<const std::int64_t> dev, std::span<const std::int64_t> step_dev,
                    std::span<const std::int64_t> absmax, Choices& out) {
  const std::uint32_t C = job.channels;
  const std::size_t n = job.segment_channels();
  out.predicted.assign(job.segments, 0);
  out.step_code.resize(n);
  out.step.resize(n);
  out.center.resize(n);
  std::vector<std::int64_t> mean(C);
  for (std::uint32_t s = 0; s < job.segments; ++s) {
    const std::size_t at = std::size_t{s} * C;
    for (std::uint32_t c = 0; c < C; ++c)
      mean[c] = sum[at + c] / job.tokens;
    const codec::ChannelStats stats{mean.data(), dev.data() + at, step_dev.data() + at,
                                    absmax.data() + at};
    out.predicted[s] = static_cast<std::uint8_t>(codec::choose_predictor(C, job.tokens, stats));
    codec::choose_steps(*job.profile, job.level, s / 2, static_cast<KvPart>(s % 2), C, job.tokens,
                        stats, &out.step_code[at], &out.step[at], &out.center[at]);
  }
}

Status assemble_chunk(const EncodeJob& job, const EncodedParts& p, std::vector<std::byte>& out) {
  const std::uint32_t C = job.channels;
  out.clear();
  codec::ByteWriter w(out);
  out.resize(codec::kHeaderSize + std::size_t{job.segments} * codec::kSegmentEntrySize);
  std::vector<std::uint32_t> offsets(job.segments);
  const bool lossy = job.coding == Coding::quantized;
  for (std::uint32_t s = 0; s < job.segments; ++s) {
    const std::size_t at = std::size_t{s} * C;
    const codec::SegmentFields f{
        job.coding,
        lossy ? static_cast<codec::Predictor>(p.predicted[s]) : codec::Predictor::none,
        job.lanes,
        job.substreams,
        C - p.coded[s],
        lossy ? p.step_code.subspan(at, C) : std::span<const std::uint8_t>(),
        p.table.subspan(at, C),
        p.center.subspan(at, C)};
    const std::uint64_t first = std::uint64_t{s} * job.substreams;
    offsets[s] = static_cast<std::uint32_t>(out.size());
    codec::write_segment(
        f, [&](std::uint32_t k) { return p.words(first + k); },
        [&](std::uint32_t k) { return p.states.subspan(32 * (first + k), job.lanes); }, w);
  }
  return codec::finish_chunk(
      {job.level, &job.layout, job.token_begin, job.tokens, job.transform != nullptr,
       job.transform != nullptr ? job.profile->transform_id() : 0},
      offsets, out);
}

namespace {

Expected<float> read_host_value(const std::byte* row, std::uint32_t c, std::uint32_t dtype) {
  return load_value(row, c, dtype);
}

// The transform's coefficients of the job's tokens into `out` (a contiguous fp32 KV of them),
// pass by pass as the kernels run them.
Status analyze_on_host(const EncodeJob& job, const KvView& src, KvBuffer& out) {
  const ViewDesc in = view_desc(src, src.pools().data(), src.block_table().data());
  std::uint64_t bad = kNoBadValue;
  for (std::uint32_t layer = 0; layer < job.layout.layers; ++layer) {
    for (std::uint32_t part = 0; part < 2; ++part) {
      for (std::uint32_t c = 0; c < job.channels; ++c) {
        bad = std::min(bad,
                       check_item(in, job.token_begin, job.tokens, job.channels, layer, part, c));
      }
    }
  }
  KVS_RETURN_IF_ERROR(bad_values_status(job, in, EncodeArgs{}, bad, kNoBadValue, read_host_value));
  const KvTransform& t = *job.transform;
  AnalysisArgs a = analysis_args(job, in);
  std::vector<float> angles, z(std::size_t{job.layout.layers} * job.tokens * 2 * job.channels),
      analysis_t;
  if (!t.frequencies.empty()) {
    job_angles(job, angles);
    a.angles = angles.data();
  }
  codec::transpose_layers(t.analysis, 2 * job.channels, analysis_t);
  a.z = z.data();
  a.analysis_t = analysis_t.data();
  a.coefficients = reinterpret_cast<float*>(out.bytes().data());
  for (std::uint32_t layer = 0; layer < a.layers; ++layer) {
    for (std::uint32_t tok = 0; tok < a.tokens; ++tok) {
      for (std::uint32_t q = 0; q < 2 * a.channels; ++q)
        unturn_item(a, layer, tok, q);
      for (std::uint32_t i = 0; i < 2 * a.channels; ++i)
        analysis_item(a, layer, tok, i);
    }
  }
  return Status::ok();
}

}  // namespace

Status encode_on_host(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                      const EncodeOptions& o, std::vector<std::byte>& out) {
  EncodeJob job;
  KVS_RETURN_IF_ERROR(prepare_encode(src, token_begin, token_count, o, job));
  const KvLayout& l = src.layout();
  std::optional<KvBuffer> coefficients;
  ViewDesc values = view_desc(src, src.pools().data(), src.block_table().data());
  if (job.transform != nullptr) {
    KVS_ASSIGN_OR_RETURN(
        KvBuffer b, KvBuffer::create({l.layers, l.kv_heads, l.head_dim, DType::f32, job.tokens}));
    coefficients.emplace(std::move(b));
    KVS_RETURN_IF_ERROR(analyze_on_host(job, src, *coefficients));
    values = view_desc(coefficients->view(), nullptr, nullptr);
  }
  EncodeArgs a = encode_args(job, values);
  const std::size_t n = job.segment_channels();
  const std::uint64_t values_n = job.values();
  std::vector<std::int64_t> sum(n), dev(n), step_dev(n), absmax(n);
  a.sum = sum.data();
  a.dev = dev.data();
  a.step_dev = step_dev.data();
  a.absmax = absmax.data();
  const auto each_channel = [&](auto&& item) {
    for (std::uint32_t s = 0; s < job.segments; ++s)
      for (std::uint32_t c = 0; c < job.channels; ++c)
        item(s, c);
  };
  std::uint64_t bad = kNoBadValue;
  each_channel([&](std::uint32_t s, std::uint32_t c) { bad = std::min(bad, sums_item(a, s, c)); });
  KVS_RETURN_IF_ERROR(bad_values_status(job, ViewDesc{}, a, kNoBadValue, bad, read_host_value));
  Choices choices;
  if (job.coding == Coding::quantized) {
    each_channel([&](std::uint32_t s, std::uint32_t c) { deviations_item(a, s, c); });
    choose_on_host(job, sum, dev, step_dev, absmax, choices);
  } else {
    choices.center.resize(n);
  }
  a.step = choices.step.data();
  a.center = choices.center.data();
  a.predicted = choices.predicted.data();
  std::vector<std::uint32_t> hist(codec::kTokens), table_row(n), states(32 * job.all_substreams());
  std::vector<std::uint8_t> table(n), constant(n), token(values_n);
  std::vector<std::uint32_t> coded(job.segments);
  std::vector<std::uint16_t> raw(values_n), words(job.region_words * job.all_substreams());
  std::vector<std::uint32_t> extra(job.coding == Coding::quantized ? 0 : values_n);
  std::vector<std::uint64_t> word_begin(job.all_substreams());
  a.table = table.data();
  a.table_row = table_row.data();
  a.constant = constant.data();
  a.coded = coded.data();
  a.token = token.data();
  a.raw = raw.data();
  a.extra = extra.data();
  a.words = words.data();
  a.states = states.data();
  a.word_begin = word_begin.data();
  each_channel([&](std::uint32_t s, std::uint32_t c) {
    const Histogram h{hist.data(), 1};
    tokenize_item(a, s, c, h);
    table_item(a, s, c, h);
  });
  HostTeam team;
  for (std::uint32_t s = 0; s < job.segments; ++s)
    for (std::uint32_t k = 0; k < job.substreams; ++k)
      substream_task(team, a, s, k);
  const EncodedParts parts{choices.predicted,
                           choices.step_code,
                           table,
                           choices.center,
                           coded,
                           states,
                           [&](std::uint64_t s) {
                             return std::span<const std::uint16_t>(words).subspan(
                                 s * job.region_words + word_begin[s],
                                 job.region_words - word_begin[s]);
                           }};
  return assemble_chunk(job, parts, out);
}

}  // namespace kvstream::gpu
