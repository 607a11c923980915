// Chunk -> kernel tables, and the CPU run of the kernel's logic.
#include "decode_plan.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "chunk_parse.hpp"
#include "table_bank.hpp"
#include "transform.hpp"

namespace kvstream::gpu {

using codec::check_destination;
using codec::chunk_transform;
using codec::SegmentEntry;
using codec::SegmentView;

struct DecodePlanner::Scratch {
  std::vector<SegmentEntry> entries;
  SegmentView view;
  std::array<std::int16_t, codec::kBankTables> compact;  // bank id -> index in plan.tables
};

namespace {

struct CompactBank {
  std::vector<std::uint8_t> buckets;
  std::vector<std::uint32_t> tokens;
};

const CompactBank& compact_bank() {
  static const CompactBank bank = [] {
    CompactBank b;
    b.buckets.resize(std::size_t{codec::kBankTables} * kBuckets);
    b.tokens.resize(std::size_t{codec::kBankTables} * 64);
    const auto& tables = codec::table_bank();
    for (std::uint32_t t = 0; t < codec::kBankTables; ++t) {
      const codec::TokenTable& table = tables[t];
      for (std::uint32_t tok = 0; tok < codec::kTokens; ++tok) {
        const std::uint32_t entry = codec::decode_entry(table.freq[tok], 0, tok);
        b.tokens[t * 64 + tok] = entry | std::uint32_t{table.cum[tok]} << 12;
        for (std::uint32_t slot = table.cum[tok]; slot < table.cum[tok] + table.freq[tok]; ++slot) {
          if (slot % 2 == 0) b.buckets[t * kBuckets + slot / 2] = static_cast<std::uint8_t>(tok);
        }
      }
    }
    return b;
  }();
  return bank;
}

}  // namespace

const std::uint8_t* bank_buckets() {
  return compact_bank().buckets.data();
}
const std::uint32_t* bank_tokens() {
  return compact_bank().tokens.data();
}
const float* quantization_step_table() {
  return codec::step_table().data();
}

void gather_luts(std::span<const std::uint32_t> tables, std::vector<std::uint8_t>& buckets,
                 std::vector<std::uint32_t>& tokens) {
  buckets.resize(tables.size() * kBuckets);
  tokens.resize(tables.size() * 64);
  for (std::size_t i = 0; i < tables.size(); ++i) {
    std::memcpy(&buckets[i * kBuckets], bank_buckets() + tables[i] * kBuckets, kBuckets);
    std::memcpy(&tokens[i * 64], bank_tokens() + tables[i] * 64, 64 * 4);
  }
}

DecodePlanner::DecodePlanner() : scratch_(std::make_unique<Scratch>()) {}
DecodePlanner::~DecodePlanner() = default;
DecodePlanner::DecodePlanner(DecodePlanner&&) noexcept = default;
DecodePlanner& DecodePlanner::operator=(DecodePlanner&&) noexcept = default;

Status DecodePlanner::plan(std::span<const std::byte> chunk, DecodePlan& p) {
  Scratch& sc = *scratch_;
  KVS_ASSIGN_OR_RETURN(p.info, codec::parse_header(chunk, sc.entries));
  const std::uint32_t C = p.info.kv_heads * p.info.head_dim;
  const std::uint32_t segments = static_cast<std::uint32_t>(sc.entries.size());
  p.segments.resize(segments);
  p.channels.resize(std::size_t{segments} * C);
  p.substreams.clear();
  p.tasks.clear();
  p.ref_values = 0;
  p.tables.clear();
  sc.compact.fill(-1);
  for (std::uint32_t i = 0; i < segments; ++i) {
    SegmentView& s = sc.view;
    KVS_RETURN_IF_ERROR(codec::parse_segment(chunk, sc.entries[i], i, p.info, s));
    if (s.coding == codec::Coding::verbatim) {
      return Status(Errc::unsupported,
                    fmt::format("segment {}: verbatim values (coding 3); the GPU decoder does not "
                                "copy them yet, the CPU decoder does",
                                i));
    }
    const bool predicted = s.predictor == codec::Predictor::previous_token;
    p.segments[i] = {static_cast<std::uint32_t>(s.coding), predicted ? 1u : 0u, s.lanes, i * C,
                     s.coded};
    for (std::uint32_t c = 0; c < C; ++c) {
      const auto table = static_cast<std::uint8_t>(s.table_ids[c]);
      if (sc.compact[table] < 0) {
        sc.compact[table] = static_cast<std::int16_t>(p.tables.size());
        p.tables.push_back(table);
      }
      const std::uint32_t step =
          s.coding == codec::Coding::quantized ? static_cast<std::uint8_t>(s.step_codes[c]) : 0;
      p.channels[std::size_t{i} * C + c] =
          pack_channel(static_cast<std::uint32_t>(sc.compact[table]), step, s.centers[c]);
    }
    // Offsets into the chunk: the spans point into it.
    const auto offset = [&](const std::byte* q) {
      return static_cast<std::uint32_t>(q - chunk.data());
    };
    const std::uint32_t per = (p.info.token_count + s.substreams - 1) / s.substreams;
    const std::uint32_t first = static_cast<std::uint32_t>(p.substreams.size());
    std::uint32_t words = offset(s.words.data());
    for (std::uint32_t k = 0; k < s.substreams; ++k) {
      const std::uint32_t t_end = std::min(p.info.token_count, (k + 1) * per);
      p.substreams.push_back({words, s.stream_bytes[k] / 2,
                              offset(s.states.data()) + 4 * k * s.lanes, k * per, t_end,
                              predicted ? p.ref_values : 0});
      words += s.stream_bytes[k];
      if (predicted) p.ref_values += C;
    }
    const std::uint32_t per_task = 32 / s.lanes;
    for (std::uint32_t k = 0; k < s.substreams; k += per_task) {
      p.tasks.push_back({i, first + k, std::min(per_task, s.substreams - k)});
    }
  }
  return Status::ok();
}

ViewDesc view_desc(const KvView& dst, std::byte* const* pools, const std::uint32_t* blocks) {
  ViewDesc d;
  d.base = dst.base();
  d.block_size = dst.block_size();
  if (d.block_size != 0) {
    d.pools = pools;
    d.blocks = blocks;
  }
  d.tokens = dst.layout().tokens;
  d.row_bytes = dst.layout().row_bytes();
  d.dtype = static_cast<std::uint32_t>(dst.layout().dtype);
  return d;
}

Status failures_status(const DecodePlan& plan, std::span<const std::uint32_t> failures) {
  for (const PlanTask& task : plan.tasks) {
    for (std::uint32_t k = 0; k < task.count; ++k) {
      const std::uint32_t code = failures[task.first + k];
      if (code == kFailNone) continue;
      const char* what = code == kFailWordsOut    ? "words run out"
                         : code == kFailExponent  ? "lossless exponent field out of range"
                         : code == kFailWordsLeft ? "words left over"
                                                  : "final lane state is not the initial one";
      const PlanTask& first =
          *std::find_if(plan.tasks.begin(), plan.tasks.end(),
                        [&](const PlanTask& t) { return t.segment == task.segment; });
      const ChunkInfo& info = plan.info;
      return codec::corrupt(fmt::format(
          "segment {} (layer {} {}) substream {}: {}; tokens {}..{} of the destination are "
          "unspecified",
          task.segment, task.segment / 2, task.segment % 2 == 0 ? "K" : "V",
          task.first + k - first.first, what, info.token_begin,
          info.token_begin + info.token_count - 1));
    }
  }
  return Status::ok();
}

namespace {

// Runs every task of `plan` through HostTeam into `dst`, the chunk's first token at
// `token_begin`.
Status run_tasks_on_host(std::span<const std::byte> chunk, const DecodePlan& plan,
                         const ViewDesc& dst, std::uint32_t token_begin) {
  std::vector<std::int32_t> refs(plan.ref_values);
  std::vector<std::uint32_t> failures(plan.substreams.size(), kFailNone);
  DecodeArgs a;
  a.chunk = chunk.data();
  a.segments = plan.segments.data();
  a.substreams = plan.substreams.data();
  a.channels = plan.channels.data();
  a.tasks = plan.tasks.data();
  a.task_count = static_cast<std::uint32_t>(plan.tasks.size());
  a.tables = plan.tables.data();
  a.table_count = static_cast<std::uint32_t>(plan.tables.size());
  a.refs = refs.data();
  a.failures = failures.data();
  a.dst = dst;
  a.channels_per_row = plan.info.kv_heads * plan.info.head_dim;
  a.token_begin = token_begin;
  a.source_dtype = static_cast<std::uint32_t>(plan.info.dtype);
  std::vector<std::uint8_t> buckets;  // what the kernel holds in shared memory
  std::vector<std::uint32_t> tokens;
  gather_luts(plan.tables, buckets, tokens);
  const Luts luts{buckets.data(), tokens.data(), quantization_step_table()};
  HostTeam team;
  dispatch(plan.segments.empty() ? 0 : plan.segments[0].coding, a.dst.dtype,
           [&]<std::uint32_t kCoding, std::uint32_t kOut>() {
             for (std::uint32_t t = 0; t < a.task_count; ++t)
               decode_task<kCoding, kOut>(team, a, luts, t);
           });
  return failures_status(plan, failures);
}

}  // namespace

SynthesisArgs synthesis_args(const ChunkInfo& info, const KvTransform& t) {
  SynthesisArgs s;
  s.coefficient_tokens = info.token_count;
  s.channels = t.channels;
  s.head_dim = t.head_dim;
  s.layers = info.layers;
  s.tokens = info.token_count;
  s.halves = t.pairs == RopePairs::halves;
  s.token_begin = info.token_begin;
  return s;
}

void rope_angles(const ChunkInfo& info, const KvTransform& t, std::vector<float>& out) {
  std::vector<codec::CosSin> angles;
  codec::rope_table(info.token_begin, info.token_count, t.frequencies, angles);
  out.resize(2 * angles.size());
  for (std::size_t i = 0; i < angles.size(); ++i) {
    out[2 * i] = angles[i].c;
    out[2 * i + 1] = angles[i].s;
  }
}

Status decode_on_host(std::span<const std::byte> chunk, const DecodePlan& plan, const KvView& dst,
                      const CodecProfile* profile) {
  const ChunkInfo& info = plan.info;
  KVS_RETURN_IF_ERROR(check_destination(info, dst));
  const ViewDesc out = view_desc(dst, dst.pools().data(), dst.block_table().data());
  if (!info.transformed) return run_tasks_on_host(chunk, plan, out, info.token_begin);
  KVS_ASSIGN_OR_RETURN(const KvTransform* t, codec::chunk_transform(info, profile));
  // The coefficients decode like an fp32 KV cache of the chunk's tokens, then go through S.
  KVS_ASSIGN_OR_RETURN(
      KvBuffer coefficients,
      KvBuffer::create({info.layers, info.kv_heads, info.head_dim, DType::f32, info.token_count}));
  const KvView cv = coefficients.view();
  KVS_RETURN_IF_ERROR(run_tasks_on_host(chunk, plan, view_desc(cv, nullptr, nullptr), 0));
  std::vector<float> synthesis_t, angles;
  codec::transpose_layers(t->synthesis, 2 * std::size_t{t->channels}, synthesis_t);
  SynthesisArgs s = synthesis_args(info, *t);
  s.coefficients = reinterpret_cast<const float*>(coefficients.bytes().data());
  s.synthesis_t = synthesis_t.data();
  if (!t->frequencies.empty()) {
    rope_angles(info, *t, angles);
    s.angles = angles.data();
  }
  s.dst = out;
  for (std::uint64_t i = 0; i < s.items(); ++i)
    synthesize_item(s, i);
  return Status::ok();
}

}  // namespace kvstream::gpu
