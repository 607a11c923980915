// The CPU reference decoder of codec/FORMAT.md. It validates the whole chunk before writing
// anything, and every read of the payload stays inside the substream it belongs to.
#include <fmt/format.h>

#include <immintrin.h>

#include <cstring>

#include "chunk_parse.hpp"
#include "decoder_avx2.hpp"
#include "kvstream/codec.hpp"
#include "kvstream/half.hpp"
#include "kvstream/parallel.hpp"
#include "rans.hpp"
#include "symbols.hpp"
#include "transform.hpp"

namespace kvstream {

using namespace codec;

namespace {

struct Channel;

}  // namespace

// Everything decoding allocates, kept between chunks by a ChunkDecoder.
struct ChunkDecoder::Scratch {
  // What each of the decoding threads works in.
  struct Worker {
    std::vector<Channel> channels;
    std::vector<std::int32_t> ref;  // per channel: the reference of its next value
    std::vector<float> z, k;        // a layer's synthesized rows, and its K turned by RoPE
    std::vector<std::byte> tail;    // a segment's constant tail, as a destination row ends
    SparseScratch sparse;           // the coefficients' nonzeros, token by token
  };
  std::vector<Worker> workers;
  std::vector<SegmentEntry> segments;
  std::vector<SegmentView> views;
  // The vector path: per segment channel arrays (C entries each), and one job per substream.
  std::vector<std::int32_t> simd_lut, simd_ref;
  std::vector<float> simd_step;
  std::vector<SimdChannels> simd_channels;
  std::vector<SimdJob> jobs;
  std::vector<std::size_t> first_job;  // per segment: its first job, or kNoJobs
  std::vector<std::byte> tail_copy;    // the chunk's last substream, padded (decode_simd)
  // Transform coding: the decoded coefficients (fp32, tokens from 0), RoPE turn tables, and S
  // transposed for the transform it was made from.
  std::unique_ptr<KvBuffer> coefficients;
  std::vector<float> synthesis_t;
  TurnCache turns;
  std::shared_ptr<const KvTransform> transposed_for;
};

namespace {

// How many of a segment's last channels decode to zero at every token: the zeros of its
// constant tail (FORMAT.md), which the product need not look at.
std::size_t zero_tail(const SegmentView& s) {
  std::size_t c = s.centers.size();
  while (c > s.coded && s.centers[c - 1] == 0)
    --c;
  return s.centers.size() - c;
}

// Writes one decoded value; `T` is the destination dtype's storage.
inline void store(std::byte* row, std::size_t c, DType dt, float f) {
  if (dt == DType::f32) {
    std::memcpy(row + 4 * c, &f, 4);
  } else {
    const std::uint16_t h = dt == DType::f16 ? float_to_half(f) : float_to_bf16(f);
    std::memcpy(row + 2 * c, &h, 2);
  }
}

// Source bits (lossless codings) into the destination dtype: exact copy when they match.
inline void store_bits(std::byte* row, std::size_t c, DType src, DType dst, std::uint32_t bits) {
  if (src == dst) {
    if (dst == DType::f32) {
      std::memcpy(row + 4 * c, &bits, 4);
    } else {
      const auto h = static_cast<std::uint16_t>(bits);
      std::memcpy(row + 2 * c, &h, 2);
    }
    return;
  }
  const float f = src == DType::f32   ? std::bit_cast<float>(bits)
                  : src == DType::f16 ? half_to_float(static_cast<std::uint16_t>(bits))
                                      : bf16_to_float(static_cast<std::uint16_t>(bits));
  store(row, c, dst, f);
}

__attribute__((target("avx2,f16c"))) void store_row_f16c(const float* z, std::size_t n,
                                                         std::byte* row) {
  std::size_t c = 0;
  for (; c + 8 <= n; c += 8) {
    _mm_storeu_si128(
        reinterpret_cast<__m128i*>(row + 2 * c),
        _mm256_cvtps_ph(_mm256_loadu_ps(z + c), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  for (; c < n; ++c)
    store(row, c, DType::f16, z[c]);
}

// A row of decoded floats into the destination dtype (round-to-nearest-even; F16C's conversion
// rounds as float_to_half does).
void store_row(const float* z, std::size_t n, DType dt, std::byte* row) {
  if (dt == DType::f32) {
    std::memcpy(row, z, n * sizeof(float));
  } else if (dt == DType::f16 && simd_decode_available()) {
    store_row_f16c(z, n, row);
  } else {
    for (std::size_t c = 0; c < n; ++c)
      store(row, c, dt, z[c]);
  }
}

// Branch-free renormalisation: mispredicted refills would cost more than the decode itself.
// A refill past the end of the substream's words reads a zero and raises `overrun` instead.
struct Words {
  const std::byte* p;
  const std::byte* end;
  bool overrun = false;
  [[gnu::always_inline]] void refill(std::uint32_t& x) noexcept {
    const bool need = x < kRansLow;
    const bool have = p < end;
    static constexpr std::byte kZero[2] = {};
    const std::byte* src = have ? p : kZero;
    const std::uint32_t w = static_cast<std::uint32_t>(static_cast<unsigned char>(src[0])) |
                            static_cast<std::uint32_t>(static_cast<unsigned char>(src[1])) << 8;
    x = need ? (x << 16) | w : x;
    p += need && have ? 2 : 0;
    overrun |= need && !have;
  }
};

// Per-channel decoding state, gathered once per segment.
struct Channel {
  const std::uint32_t* decode;  // the bank table's packed slot lookup
  float step;
};

// Reads a raw field of `bits` bits from a lane state (FORMAT.md).
[[gnu::always_inline]] inline std::uint32_t get_raw(std::uint32_t& x, std::uint32_t bits,
                                                    Words& words) noexcept {
  const std::uint32_t v = x & ((1u << bits) - 1u);
  x >>= bits;
  words.refill(x);
  return v;
}

constexpr std::size_t kNoJobs = SIZE_MAX;

// Decodes a segment; `resume`, when not null, holds where the vector path left each of its
// substreams, and the scalar loop finishes them.
template <Coding kCoding, DType kOut>
Status decode_segment_as(const SegmentView& s, std::uint32_t layer, KvPart part,
                         const ChunkInfo& info, const KvView& dst, std::uint32_t index,
                         const SimdJob* resume, ChunkDecoder::Scratch::Worker& scratch) {
  const auto& bank = table_bank();
  const std::size_t C = std::size_t{info.kv_heads} * info.head_dim;
  std::vector<Channel>& channels = scratch.channels;
  channels.resize(C);
  std::vector<std::int32_t>& ref = scratch.ref;
  const bool predicted = s.predictor == Predictor::previous_token;
  for (std::size_t c = 0; c < C; ++c) {
    channels[c].decode = bank[static_cast<std::uint8_t>(s.table_ids[c])].decode.data();
    channels[c].step = kCoding == Coding::quantized
                           ? step_table()[static_cast<std::uint8_t>(s.step_codes[c])]
                           : 0.0f;
  }
  // Lossless codings: v is the exponent field, R low mantissa bits and the sign travel raw.
  const std::uint32_t R = split_shift(static_cast<std::uint8_t>(info.dtype));
  const std::uint32_t sign_shift = info.dtype == DType::f32 ? 31 : 15;
  const std::int32_t v_limit = 1 << (sign_shift - R);
  const std::uint32_t extra_bits = std::min(R + 1, 16u);
  const std::uint32_t extra2_bits = R + 1 > 16 ? R + 1 - 16 : 0;

  const std::uint32_t per = (info.token_count + s.substreams - 1) / s.substreams;
  const std::uint32_t L = s.lanes;
  const std::uint32_t coded = s.coded;  // the rest of a row is the constant tail
  std::uint32_t x[32];
  // One group of L values (one per lane) at a time, step by step across the lanes.
  std::byte* rows[32];
  std::uint32_t cols[32], entries[32], extra[32];
  std::int32_t vals[32];
  std::size_t word_offset = 0;
  for (std::uint32_t k = 0; k < s.substreams; ++k) {
    const auto fail = [&](const char* what) {
      return corrupt(
          fmt::format("segment {} (layer {} {}) substream {}: {}; tokens {}..{} of the "
                      "destination are unspecified",
                      index, layer, part == KvPart::key ? "K" : "V", k, what, info.token_begin,
                      info.token_begin + info.token_count - 1));
    };
    std::memcpy(x, s.states.data() + std::size_t{4} * k * L, 4 * L);
    Words words{s.words.data() + word_offset, s.words.data() + word_offset + s.stream_bytes[k]};
    word_offset += s.stream_bytes[k];
    const std::uint32_t t_end = std::min(info.token_count, (k + 1) * per);
    std::uint32_t t = k * per;
    std::uint32_t c = 0;
    std::byte* row = dst.row(layer, part, info.token_begin + t);
    std::size_t left = std::size_t{t_end - t} * coded;
    bool values_ok = true;
    // Each value's reference (FORMAT.md "Symbols"): the centers, then, with the previous-token
    // predictor, the last value decoded in each channel.
    ref.assign(s.centers.begin(), s.centers.end());
    if (resume != nullptr) {
      const SimdJob& job = resume[k];
      if (predicted) std::copy(job.ref, job.ref + C, ref.begin());
      std::memcpy(x, job.x, sizeof job.x);
      words.p = job.copy_begin == nullptr ? job.p : job.original_begin + (job.p - job.copy_begin);
      t = job.t;
      c = job.c;
      left = job.left;
      row = job.row;
      values_ok = job.values_ok;
    }
    while (left > 0) {
      const std::uint32_t g = static_cast<std::uint32_t>(std::min<std::size_t>(L, left));
      left -= g;
      for (std::uint32_t j = 0; j < g; ++j) {  // step 1: tokens
        rows[j] = row;
        cols[j] = c;
        if (++c == coded) {
          c = 0;
          if (++t < t_end) row = dst.row(layer, part, info.token_begin + t);
        }
        const std::uint32_t e = channels[cols[j]].decode[x[j] & (kProbScale - 1)];
        x[j] = (e & 0xFFFu) * (x[j] >> kProbBits) + ((e >> 12) & 0xFFFu);
        words.refill(x[j]);
        entries[j] = e;
      }
      for (std::uint32_t j = 0; j < g; ++j) {  // step 2: the tokens' raw bits (maybe none)
        const std::uint32_t n = (entries[j] >> 24) & 0xFu;
        const std::uint32_t u = ((entries[j] >> 28) << n) | get_raw(x[j], n, words);
        // In value order, so that a reference updated earlier in the group is seen (a group
        // spans tokens when it has more lanes than the row has channels).
        vals[j] = wrap16(unzigzag(u) + ref[cols[j]]);
        if (predicted) ref[cols[j]] = vals[j];
      }
      if constexpr (kCoding == Coding::quantized) {
        for (std::uint32_t j = 0; j < g; ++j) {
          store(rows[j], cols[j], kOut, static_cast<float>(vals[j]) * channels[cols[j]].step);
        }
      } else {
        for (std::uint32_t j = 0; j < g; ++j)
          extra[j] = get_raw(x[j], extra_bits, words);
        if constexpr (kCoding == Coding::split32) {  // step 4: split32's high raw field
          for (std::uint32_t j = 0; j < g; ++j)
            extra[j] |= get_raw(x[j], extra2_bits, words) << 16;
        }
        for (std::uint32_t j = 0; j < g; ++j) {
          const std::uint32_t e = extra[j];  // ((m mod 2^R) << 1) | sign
          values_ok &= vals[j] >= 0 && vals[j] < v_limit;
          store_bits(
              rows[j], cols[j], info.dtype, kOut,
              ((e & 1u) << sign_shift) | (static_cast<std::uint32_t>(vals[j]) << R) | (e >> 1));
        }
      }
    }
    if (words.overrun || words.p > words.end) return fail("words run out");
    if (!values_ok) return fail("lossless exponent field out of range");
    if (words.p != words.end) return fail("words left over");
    for (std::uint32_t j = 0; j < L; ++j) {
      if (x[j] != kRansLow) return fail("final lane state is not the initial one");
    }
  }
  if constexpr (kCoding == Coding::quantized) {
    if (coded == C) return Status::ok();
    // The constant tail: one row of it in the destination dtype, copied to every token.
    std::vector<std::byte>& tail = scratch.tail;
    const std::size_t bytes = dtype_size(kOut);
    tail.resize((C - coded) * bytes);
    for (std::size_t c = coded; c < C; ++c)
      store(tail.data(), c - coded, kOut, static_cast<float>(s.centers[c]) * channels[c].step);
    for (std::uint32_t t = 0; t < info.token_count; ++t)
      std::memcpy(dst.row(layer, part, info.token_begin + t) + coded * bytes, tail.data(),
                  tail.size());
  }
  return Status::ok();
}

template <Coding kCoding>
Status decode_segment_to(const SegmentView& s, std::uint32_t layer, KvPart part,
                         const ChunkInfo& info, const KvView& dst, std::uint32_t index,
                         const SimdJob* resume, ChunkDecoder::Scratch::Worker& scratch) {
  switch (dst.layout().dtype) {
    case DType::f32:
      return decode_segment_as<kCoding, DType::f32>(s, layer, part, info, dst, index, resume,
                                                    scratch);
    case DType::f16:
      return decode_segment_as<kCoding, DType::f16>(s, layer, part, info, dst, index, resume,
                                                    scratch);
    case DType::bf16:
      return decode_segment_as<kCoding, DType::bf16>(s, layer, part, info, dst, index, resume,
                                                     scratch);
  }
  return Status(Errc::internal, "unknown destination dtype");
}

// Verbatim values (parse_segment checked their length): row copies, or each value converted
// when the destination's dtype is another.
void decode_verbatim(const SegmentView& s, std::uint32_t layer, KvPart part, const ChunkInfo& info,
                     const KvView& dst) {
  const std::size_t C = std::size_t{info.kv_heads} * info.head_dim;
  const std::size_t size = dtype_size(info.dtype), row_bytes = C * size;
  const DType out = dst.layout().dtype;
  for (std::uint32_t t = 0; t < info.token_count; ++t) {
    const std::byte* in = s.words.data() + t * row_bytes;
    std::byte* row = dst.row(layer, part, info.token_begin + t);
    if (out == info.dtype) {
      std::memcpy(row, in, row_bytes);
      continue;
    }
    for (std::size_t c = 0; c < C; ++c) {
      std::uint32_t bits = 0;
      if (size == 4) {
        std::memcpy(&bits, in + 4 * c, 4);
      } else {
        std::uint16_t h = 0;
        std::memcpy(&h, in + 2 * c, 2);
        bits = h;
      }
      store_bits(row, c, info.dtype, out, bits);
    }
  }
}

Status decode_segment(const SegmentView& s, std::uint32_t layer, KvPart part, const ChunkInfo& info,
                      const KvView& dst, std::uint32_t index, const SimdJob* resume,
                      ChunkDecoder::Scratch::Worker& scratch) {
  switch (s.coding) {
    case Coding::verbatim:
      decode_verbatim(s, layer, part, info, dst);
      return Status::ok();
    case Coding::quantized:
      return decode_segment_to<Coding::quantized>(s, layer, part, info, dst, index, resume,
                                                  scratch);
    case Coding::split16:
      return decode_segment_to<Coding::split16>(s, layer, part, info, dst, index, resume, scratch);
    case Coding::split32:
      return decode_segment_to<Coding::split32>(s, layer, part, info, dst, index, resume, scratch);
  }
  return Status(Errc::internal, "unknown coding");
}

enum class SimdPath { none, quantized_f16, quantized_f32, split16 };

// The vector path that applies to this chunk decoded into this destination, if any.
SimdPath simd_path(const ChunkInfo& info, const KvView& dst) {
  const DType out = dst.layout().dtype;
  if ((std::size_t{info.kv_heads} * info.head_dim) % 8 != 0 || !simd_decode_available()) {
    return SimdPath::none;
  }
  if (info.level > 0) {
    return out == DType::f16   ? SimdPath::quantized_f16
           : out == DType::f32 ? SimdPath::quantized_f32
                               : SimdPath::none;
  }
  return info.dtype != DType::f32 && info.dtype == out ? SimdPath::split16 : SimdPath::none;
}

// Runs the vector path over every 8-lane substream of the chunk, all segments together, and
// records in `first_job` where each segment's substreams were left. Substreams are independent:
// with several threads, each takes a run of them holding about as many values as the others.
void decode_simd(SimdPath path, const ChunkInfo& info, const KvView& dst,
                 const std::byte* chunk_end, WorkerPool* pool, ChunkDecoder::Scratch& sc) {
  const std::size_t C = std::size_t{info.kv_heads} * info.head_dim;
  const std::size_t segments = sc.views.size();
  sc.simd_lut.resize(segments * C);
  sc.simd_step.resize(segments * C);
  sc.simd_channels.resize(segments);
  sc.first_job.assign(segments, kNoJobs);
  sc.jobs.clear();
  std::size_t last_bytes = 0;  // of the last job's substream
  for (std::size_t i = 0; i < segments; ++i) {
    SegmentView& s = sc.views[i];
    // The vector loops take rows of whole groups of eight channels: a segment that codes none,
    // or a number that is not a multiple of 8 (which no encoder writes), is the scalar loop's.
    if (s.lanes != 8 || s.coded == 0 || s.coded % 8 != 0) continue;
    for (std::size_t c = 0; c < C; ++c) {
      sc.simd_lut[i * C + c] =
          static_cast<std::int32_t>(static_cast<std::uint8_t>(s.table_ids[c]) * kProbScale);
      sc.simd_step[i * C + c] = s.coding == Coding::quantized
                                    ? step_table()[static_cast<std::uint8_t>(s.step_codes[c])]
                                    : 0.0f;
    }
    sc.simd_channels[i] = {&sc.simd_lut[i * C], &sc.simd_step[i * C], s.coded};
    sc.first_job[i] = sc.jobs.size();
    const std::uint32_t per = (info.token_count + s.substreams - 1) / s.substreams;
    const auto layer = static_cast<std::uint32_t>(i / 2);
    const auto part = static_cast<KvPart>(i % 2);
    std::size_t word_offset = 0;
    for (std::uint32_t k = 0; k < s.substreams; ++k) {
      SimdJob& job = sc.jobs.emplace_back();
      std::memcpy(job.x, s.states.data() + std::size_t{32} * k, sizeof job.x);
      job.p = s.words.data() + word_offset;
      word_offset += s.stream_bytes[k];
      last_bytes = s.stream_bytes[k];
      job.limit = chunk_end;
      job.copy_begin = nullptr;
      job.original_begin = job.p;
      job.t = k * per;
      job.t_end = std::min(info.token_count, (k + 1) * per);
      job.c = 0;
      job.left = std::size_t{job.t_end - job.t} * s.coded;
      job.row = dst.row(layer, part, info.token_begin + job.t);
      job.ch = &sc.simd_channels[i];
      job.dst = &dst;
      job.layer = layer;
      job.part = part;
      job.token_begin = info.token_begin;
      job.values_ok = true;
      job.ref = s.centers.data();  // read only; previous-token segments get a copy below
      job.predicted = s.predictor == Predictor::previous_token;
    }
  }
  sc.simd_ref.resize(sc.jobs.size() * C);
  for (std::size_t j = 0; j < sc.jobs.size(); ++j) {
    SimdJob& job = sc.jobs[j];
    if (!job.predicted) continue;
    std::copy(job.ref, job.ref + C, &sc.simd_ref[j * C]);
    job.ref = &sc.simd_ref[j * C];
  }
  // The chunk's last substream would stop its batch of jobs a row short of the end (reads may
  // not pass the chunk), and leave its last rows, and its batch's, to the slow paths: it goes
  // through a zero-padded copy instead, when it is small enough for the copy not to matter.
  if (!sc.jobs.empty() && sc.jobs.back().p + last_bytes == chunk_end &&
      last_bytes <= kMaxCopiedSubstream) {
    SimdJob& job = sc.jobs.back();
    sc.tail_copy.assign(last_bytes + kMaxRowBytesForCopy, std::byte{0});
    std::memcpy(sc.tail_copy.data(), job.p, last_bytes);
    job.copy_begin = job.p = sc.tail_copy.data();
    job.limit = sc.tail_copy.data() + sc.tail_copy.size();
  }
  const std::uint32_t R = split_shift(static_cast<std::uint8_t>(info.dtype));
  const auto run = [&](std::span<SimdJob> jobs) {
    if (path == SimdPath::quantized_f16) {
      decode_jobs_quantized_f16_avx2(jobs);
    } else if (path == SimdPath::quantized_f32) {
      decode_jobs_quantized_f32_avx2(jobs);
    } else {
      decode_jobs_split16_avx2(jobs, R, std::int32_t{1} << (15 - R));
    }
  };
  const std::size_t parts =
      pool == nullptr ? 1 : std::min<std::size_t>(pool->threads(), sc.jobs.size());
  if (parts <= 1) {
    run(sc.jobs);
    return;
  }
  std::size_t total = 0;
  for (const SimdJob& job : sc.jobs)
    total += job.left;
  std::vector<std::size_t> bounds{0};
  std::size_t values = 0;
  for (std::size_t j = 0; j < sc.jobs.size() && bounds.size() < parts; ++j) {
    values += sc.jobs[j].left;
    if (values * parts >= total * bounds.size()) bounds.push_back(j + 1);
  }
  bounds.push_back(sc.jobs.size());
  pool->run(bounds.size() - 1,
            [&](unsigned, std::size_t i) {
              run(std::span(sc.jobs).subspan(bounds[i], bounds[i + 1] - bounds[i]));
              return Status::ok();
            })
      .ignore();  // the runs cannot fail: the scalar pass reports what they found
}

}  // namespace

Expected<ChunkInfo> read_chunk_info(std::span<const std::byte> chunk) {
  std::vector<SegmentEntry> segments;
  return parse_header(chunk, segments);
}

ChunkDecoder::ChunkDecoder() : ChunkDecoder(1) {}
ChunkDecoder::ChunkDecoder(unsigned threads) : scratch_(std::make_unique<Scratch>()) {
  if (threads > 1) pool_ = std::make_unique<WorkerPool>(threads);
  scratch_->workers.resize(std::max(1u, threads));
}
ChunkDecoder::~ChunkDecoder() = default;
ChunkDecoder::ChunkDecoder(ChunkDecoder&&) noexcept = default;
ChunkDecoder& ChunkDecoder::operator=(ChunkDecoder&&) noexcept = default;

Status ChunkDecoder::decode(std::span<const std::byte> chunk, const KvView& dst,
                            const CodecProfile* profile) {
  Scratch& sc = *scratch_;
  KVS_ASSIGN_OR_RETURN(const ChunkInfo info, parse_header(chunk, sc.segments));
  KVS_RETURN_IF_ERROR(check_destination(info, dst));
  split_ = pool_ != nullptr &&
           std::size_t{2} * info.layers * info.kv_heads * info.head_dim * info.token_count >=
               kMinValuesToSplit;
  if (!info.transformed) return decode_values(chunk, info, dst);
  KVS_ASSIGN_OR_RETURN(const KvTransform* t, chunk_transform(info, profile));
  if (sc.transposed_for != profile->shared_transform()) {
    // Held, so that no other transform can take its address while the copy is in use.
    sc.transposed_for = profile->shared_transform();
    transpose_layers(t->synthesis, 2 * std::size_t{t->channels}, sc.synthesis_t);
  }
  // The coefficients decode like an fp32 KV cache of the chunk's tokens, then go through S.
  // One spare token per segment, so that segments do not start a multiple of 4 KiB apart: the
  // vector path writes all of them at once (4% faster on the stories260K chunk, quiet machine).
  const KvLayout cl{info.layers, info.kv_heads, info.head_dim, DType::f32, info.token_count + 1};
  if (!sc.coefficients || !sc.coefficients->layout().same_shape(cl) ||
      sc.coefficients->layout().tokens != cl.tokens) {
    KVS_ASSIGN_OR_RETURN(KvBuffer b, KvBuffer::create(cl));
    sc.coefficients = std::make_unique<KvBuffer>(std::move(b));
  }
  ChunkInfo local = info;
  local.token_begin = 0;
  const KvView coefficients = sc.coefficients->view();
  KVS_RETURN_IF_ERROR(decode_values(chunk, local, coefficients));
  synthesize(*t, info, coefficients, dst);
  return Status::ok();
}

void ChunkDecoder::synthesize(const KvTransform& t, const ChunkInfo& info,
                              const KvView& coefficients, const KvView& dst) {
  Scratch& sc = *scratch_;
  const std::size_t C = t.channels, n = 2 * C, T = info.token_count;
  const bool rotated = !t.frequencies.empty();
  std::size_t first_row = 0;
  const RopeTurns* turns = rotated ? &sc.turns.rows(sc.transposed_for, 1.0f, info.token_begin,
                                                    info.token_count, first_row)
                                   : nullptr;
  const DType out = dst.layout().dtype;
  // Layers are independent: one thread each at a time, in its own rows.
  for_items(split_, info.layers, [&](unsigned worker, std::size_t layer) {
    Scratch::Worker& w = sc.workers[worker];
    w.z.resize(T * n);
    w.k.resize(T * C);
    const auto l = static_cast<std::uint32_t>(layer);
    // The coefficient buffer is contiguous: the layer's "K" rows, then its "V" rows.
    const auto* k_rows = reinterpret_cast<const float*>(coefficients.row(l, KvPart::key, 0));
    const auto* v_rows = reinterpret_cast<const float*>(coefficients.row(l, KvPart::value, 0));
    // At low rates most coefficients quantize to zero.
    multiply_sparse_rows(n, std::span(sc.synthesis_t).subspan(layer * n * n, n * n), T,
                         HalfRows<const float>{k_rows, v_rows - C, C, C},
                         HalfRows<float>{w.z.data(), w.z.data(), C, n}, w.sparse,
                         {zero_tail(sc.views[2 * layer]), zero_tail(sc.views[2 * layer + 1])});
    if (rotated) turn_keys(t, *turns, first_row, T, w.z.data(), n, w.k.data(), C);
    for (std::size_t i = 0; i < T; ++i) {
      const auto token = info.token_begin + static_cast<std::uint32_t>(i);
      store_row(rotated ? &w.k[i * C] : &w.z[i * n], C, out, dst.row(l, KvPart::key, token));
      store_row(&w.z[i * n + C], C, out, dst.row(l, KvPart::value, token));
    }
    return Status::ok();
  }).ignore();  // no layer can fail
}

Status ChunkDecoder::decode_values(std::span<const std::byte> chunk, const ChunkInfo& info,
                                   const KvView& dst) {
  Scratch& sc = *scratch_;
  sc.views.resize(sc.segments.size());
  for (std::uint32_t i = 0; i < sc.segments.size(); ++i) {
    KVS_RETURN_IF_ERROR(parse_segment(chunk, sc.segments[i], i, info, sc.views[i]));
  }
  const SimdPath path = simd_path(info, dst);
  if (path != SimdPath::none) {
    decode_simd(path, info, dst, chunk.data() + chunk.size(), split_ ? pool_.get() : nullptr, sc);
  } else {
    sc.first_job.assign(sc.views.size(), kNoJobs);
  }
  // The scalar loop finishes what the vector path left (a few values per substream), and decodes
  // the segments it did not take (no vector path, or lanes other than 8, as streams for GPUs
  // have), segment by segment.
  return for_items(split_, sc.views.size(), [&](unsigned worker, std::size_t i) {
    const SimdJob* resume = sc.first_job[i] == kNoJobs ? nullptr : &sc.jobs[sc.first_job[i]];
    const auto index = static_cast<std::uint32_t>(i);
    return decode_segment(sc.views[i], index / 2, static_cast<KvPart>(index % 2), info, dst, index,
                          resume, sc.workers[worker]);
  });
}

Status ChunkDecoder::for_items(bool split, std::size_t count,
                               const std::function<Status(unsigned, std::size_t)>& fn) {
  return split ? pool_->run(count, fn) : parallel_for(count, 1, fn);
}

Status decode_chunk(std::span<const std::byte> chunk, const KvView& dst,
                    const CodecProfile* profile) {
  ChunkDecoder decoder;
  return decoder.decode(chunk, dst, profile);
}

}  // namespace kvstream
