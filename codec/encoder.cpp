// The CPU reference encoder of codec/FORMAT.md. Every choice it makes (steps, centers, tables)
// is computed with integer or exactly specified float operations, so that another encoder (the
// CUDA one) can produce the same bytes.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "byte_io.hpp"
#include "chunk_format.hpp"
#include "cpu_features.hpp"
#include "crc32c.hpp"
#include "encoder_avx2.hpp"
#include "kvstream/codec.hpp"
#include "kvstream/half.hpp"
#include "rans.hpp"
#include "rans_avx2.hpp"
#include "segment_encoding.hpp"
#include "symbols.hpp"
#include "table_choice.hpp"
#include "transform.hpp"

namespace kvstream {

using namespace codec;

namespace {

constexpr double kFixedScale = 65536.0;  // channel statistics in 16.16 fixed point

std::uint16_t load_bits16(const std::byte* row, std::size_t c) {
  std::uint16_t h;
  std::memcpy(&h, row + 2 * c, 2);
  return h;
}

std::uint32_t load_bits32(const std::byte* row, std::size_t c) {
  std::uint32_t b;
  std::memcpy(&b, row + 4 * c, 4);
  return b;
}

float load_float(const std::byte* row, std::size_t c, DType dt) {
  switch (dt) {
    case DType::f32:
      return std::bit_cast<float>(load_bits32(row, c));
    case DType::f16:
      return half_to_float(load_bits16(row, c));
    case DType::bf16:
      return bf16_to_float(load_bits16(row, c));
  }
  return 0.0f;
}

// A row of n values as floats (exact: every f16 and bf16 value is a float); false when one is
// not finite or beyond the lossy levels' +-2^30.
bool load_row(const std::byte* row, std::size_t n, DType dt, float* out) {
  if (simd_encode_available() && n % 8 == 0) {
    return load_row_avx2(row, n, dt, kMaxLossyMagnitude, out);
  }
  bool ok = true;
  if (dt == DType::f32) {
    std::memcpy(out, row, n * sizeof(float));
  } else {
    for (std::size_t c = 0; c < n; ++c)
      out[c] = load_float(row, c, dt);
  }
  for (std::size_t c = 0; c < n; ++c)
    ok &= std::fabs(out[c]) <= kMaxLossyMagnitude;  // NaN compares false
  return ok;
}

// One segment being encoded, with everything its passes allocate.
struct SegmentScratch {
  std::vector<float> x;
  std::vector<std::int32_t> v;
  std::vector<std::uint32_t> extra;  // lossless: the raw low mantissa bits and sign
  std::vector<std::int64_t> sum, dev, step_dev, absmax;
  std::vector<std::uint8_t> step_code, table;
  std::vector<float> step;               // per channel, of its step code
  std::vector<std::uint32_t> table_row;  // per channel: table id * kTokens
  std::vector<std::int32_t> center;
  std::vector<std::int32_t> ref;  // per channel: the reference of its next value (tokenizing)
  Predictor predictor = Predictor::none;
  std::vector<std::uint32_t> hist;  // per channel, per token
  std::vector<std::uint8_t> token;  // per value
  std::vector<std::uint16_t> raw;   // per value: the token's raw bits
  // Its substreams: `per` tokens each (the last may have fewer), `lanes` lanes; they code the
  // first `coded` channels of each token, the rest being its constant tail.
  std::uint32_t per = 0, substreams = 0, lanes = 0, coded = 0;
  RansSymbols symbols{};
  std::vector<RansStream> streams;
};

}  // namespace

// Everything encoding allocates, kept between chunks by a ChunkEncoder.
struct ChunkEncoder::Scratch {
  // Segments are prepared a window at a time, so that their substreams go through the
  // entropy coder together.
  std::vector<SegmentScratch> window;
  std::vector<RansJob> jobs;
  std::vector<std::uint32_t> offsets;
  // Transform coding: the chunk's coefficients (fp32, tokens from 0), RoPE turn tables, rows.
  std::unique_ptr<KvBuffer> coefficients;
  TurnCache turns;
  std::vector<float> k, z, analysis_t;  // a layer's K rows and z rows; A transposed
  std::shared_ptr<const KvTransform> analysis_for;
};

namespace {

constexpr std::uint32_t kWindow = 4;

// Tokens, raw bits and the per-channel token histogram of the values in s.v, each coded
// relative to its reference (FORMAT.md "Symbols"): the center, or with the previous-token
// predictor the channel's value at the previous token of the substream (`per` tokens each).
void tokenize(std::uint32_t tokens, std::size_t C, std::uint32_t per, SegmentScratch& s) {
  const bool previous = s.predictor == Predictor::previous_token;
  for (std::uint32_t t = 0; t < tokens; ++t) {
    if (t % per == 0) s.ref.assign(s.center.begin(), s.center.end());
    for (std::size_t c = 0; c < C; ++c) {
      const std::size_t i = std::size_t{t} * C + c;
      const TokenCode tc = token_of(zigzag(wrap16(s.v[i] - s.ref[c])));
      if (previous) s.ref[c] = s.v[i];
      s.token[i] = static_cast<std::uint8_t>(tc.token);
      s.raw[i] = static_cast<std::uint16_t>(tc.raw);
      ++s.hist[c * kTokens + tc.token];
    }
  }
}

// The scalar statistics of a lossy segment: s.x, then per channel the sum and largest
// magnitude of x in 16.16 fixed point.
Status lossy_sums(const SegmentRows& rows, DType dtype, SegmentScratch& s) {
  const std::size_t C = rows.channels;
  const std::uint32_t head_dim = rows.src->layout().head_dim;
  s.x.resize(std::size_t{rows.tokens} * C);
  for (std::uint32_t t = 0; t < rows.tokens; ++t) {
    const std::byte* row = rows.row(t);
    for (std::size_t c = 0; c < C; ++c) {
      const float x = load_float(row, c, dtype);
      if (!std::isfinite(x) || std::fabs(x) > kMaxLossyMagnitude) {
        return lossy_value_error(rows.layer, rows.part, rows.begin + t,
                                 static_cast<std::uint32_t>(c), head_dim, x);
      }
      s.x[t * C + c] = x;
      const auto xf = static_cast<std::int64_t>(static_cast<double>(x) * kFixedScale);
      s.sum[c] += xf;
      s.absmax[c] = std::max(s.absmax[c], xf < 0 ? -xf : xf);
    }
  }
  return Status::ok();
}

// Per channel: step code and center from the statistics, then tokens, raw bits and the
// histogram of v = round(x / step). The vector passes, where they apply, compute the same.
Status quantize(const SegmentRows& rows, DType dtype, const CodecProfile& profile,
                std::uint8_t level, std::uint32_t per, SegmentScratch& s) {
  const std::size_t C = rows.channels;
  const std::uint32_t tokens = rows.tokens;
  s.sum.assign(C, 0);
  s.dev.assign(C, 0);
  s.step_dev.assign(C, 0);
  s.absmax.assign(C, 0);
  const bool avx512 = simd_encode_available() && C % 16 == 0 && avx512_enabled();
  const bool simd = simd_encode_available() && C % 8 == 0 &&
                    (avx512 ? lossy_sums_avx512(rows, dtype, s.sum.data(), s.absmax.data())
                            : lossy_sums_avx2(rows, dtype, s.sum.data(), s.absmax.data()));
  if (!simd) {
    s.sum.assign(C, 0);
    s.absmax.assign(C, 0);
    KVS_RETURN_IF_ERROR(lossy_sums(rows, dtype, s));
  }
  for (std::size_t c = 0; c < C; ++c)
    s.sum[c] /= tokens;  // now the mean
  if (simd && avx512) {
    lossy_deviations_avx512(rows, dtype, s.sum.data(), s.dev.data(), s.step_dev.data());
  } else if (simd) {
    lossy_deviations_avx2(rows, dtype, s.sum.data(), s.dev.data(), s.step_dev.data());
  } else {
    const auto fixed = [&](std::size_t i) {
      return static_cast<std::int64_t>(static_cast<double>(s.x[i]) * kFixedScale);
    };
    for (std::uint32_t t = 0; t < tokens; ++t) {
      for (std::size_t c = 0; c < C; ++c) {
        const std::int64_t xf = fixed(t * C + c);
        const std::int64_t prev = fixed((t == 0 ? 0 : t - 1) * C + c);
        s.dev[c] += xf > s.sum[c] ? xf - s.sum[c] : s.sum[c] - xf;
        s.step_dev[c] += xf > prev ? xf - prev : prev - xf;
      }
    }
  }
  const ChannelStats stats{s.sum.data(), s.dev.data(), s.step_dev.data(), s.absmax.data()};
  s.predictor = choose_predictor(C, tokens, stats);
  s.step_code.resize(C);
  s.step.resize(C);
  s.center.resize(C);
  choose_steps(profile, level, rows.layer, rows.part, C, tokens, stats, s.step_code.data(),
               s.step.data(), s.center.data());
  const std::size_t n = std::size_t{tokens} * C;
  s.token.resize(n);
  s.raw.resize(n);
  s.hist.assign(C * kTokens, 0);
  if (simd) {
    s.ref.resize(C);
    const References refs{s.center.data(), s.predictor == Predictor::previous_token, per,
                          s.ref.data()};
    if (avx512) {
      lossy_tokenize_avx512(rows, dtype, s.step.data(), refs, s.token.data(), s.raw.data(),
                            s.hist.data());
    } else {
      lossy_tokenize_avx2(rows, dtype, s.step.data(), refs, s.token.data(), s.raw.data(),
                          s.hist.data());
    }
    return Status::ok();
  }
  s.v.resize(n);
  for (std::uint32_t t = 0; t < tokens; ++t) {
    for (std::size_t c = 0; c < C; ++c) {
      const float q = std::nearbyint(s.x[t * C + c] / s.step[c]);
      s.v[t * C + c] = static_cast<std::int32_t>(std::clamp(q, -32767.0f, 32767.0f));
    }
  }
  tokenize(tokens, C, per, s);
  return Status::ok();
}

// Lossless codings: v (exponent and top mantissa bits), the raw field, the center (mean v),
// then tokens, raw bits and the histogram.
void split(const SegmentRows& rows, DType dtype, SegmentScratch& s) {
  s.predictor = Predictor::none;  // FORMAT.md: prediction is for quantized values only
  const std::size_t C = rows.channels;
  const std::uint32_t tokens = rows.tokens;
  const std::size_t n = std::size_t{tokens} * C;
  const std::uint32_t R = split_shift(static_cast<std::uint8_t>(dtype));
  s.extra.resize(n);
  s.sum.assign(C, 0);
  s.center.resize(C);
  s.token.resize(n);
  s.raw.resize(n);
  s.hist.assign(C * kTokens, 0);
  if (dtype != DType::f32 && C % 8 == 0 && simd_encode_available()) {
    split16_sums_avx2(rows, R, s.sum.data());
    for (std::size_t c = 0; c < C; ++c)
      s.center[c] = static_cast<std::int32_t>(s.sum[c] / tokens);
    if (C % 16 == 0 && avx512_enabled()) {
      split16_tokenize_avx512(rows, R, s.center.data(), s.token.data(), s.raw.data(),
                              s.extra.data(), s.hist.data());
    } else {
      split16_tokenize_avx2(rows, R, s.center.data(), s.token.data(), s.raw.data(), s.extra.data(),
                            s.hist.data());
    }
    return;
  }
  const std::uint32_t sign_shift = dtype == DType::f32 ? 31 : 15;
  s.v.resize(n);
  for (std::uint32_t t = 0; t < tokens; ++t) {
    const std::byte* row = rows.row(t);
    for (std::size_t c = 0; c < C; ++c) {
      const std::uint32_t bits =
          dtype == DType::f32 ? load_bits32(row, c) : std::uint32_t{load_bits16(row, c)};
      const std::uint32_t m = bits & ((1u << sign_shift) - 1u);
      s.v[t * C + c] = static_cast<std::int32_t>(m >> R);
      s.extra[t * C + c] = ((m & ((1u << R) - 1u)) << 1) | (bits >> sign_shift);
      s.sum[c] += s.v[t * C + c];
    }
  }
  for (std::size_t c = 0; c < C; ++c)
    s.center[c] = static_cast<std::int32_t>(s.sum[c] / tokens);
  tokenize(tokens, C, tokens, s);
}

// The cheapest bank table of every channel for its histogram of `values` values
// (table_choice.hpp).
void choose_tables(std::size_t C, std::uint32_t values, SegmentScratch& s) {
  s.table.resize(C);
  s.table_row.resize(C);
  if (simd_encode_available()) {
    choose_tables_avx2(s.hist.data(), C, values, s.table.data());
  } else {
    const auto& bank = table_bank();
    const auto& weights = token_weights();
    for (std::size_t c = 0; c < C; ++c) {
      const std::uint32_t* h = &s.hist[c * kTokens];
      std::uint64_t weight_sum = 0;
      for (std::uint32_t k = 0; k < kTokens; ++k)
        weight_sum += std::uint64_t{h[k]} * weights[k];
      s.table[c] = static_cast<std::uint8_t>(cheapest_table(
          spread_guess(spread_bounds().data(), weight_sum, values), [&](std::uint32_t t) {
            std::uint32_t sum = 0;
            for (std::uint32_t k = 0; k < kTokens; ++k)
              sum += h[k] * bank[t].cost[k];
            return sum;
          }));
    }
  }
  for (std::size_t c = 0; c < C; ++c)
    s.table_row[c] = s.table[c] * kTokens;
}

// A quantized segment's constant tail (FORMAT.md): its channels whose every token is 0, which
// leave the symbols, whose rows close up to the coded channels.
void drop_constant_tail(std::uint32_t tokens, std::size_t C, SegmentScratch& s) {
  s.coded = static_cast<std::uint32_t>(C) -
            constant_tail(static_cast<std::uint32_t>(C),
                          [&](std::uint32_t c) { return s.hist[c * kTokens] == tokens; });
  if (s.coded == C) return;
  for (std::uint32_t t = 1; t < tokens; ++t) {  // row t moves down to t * coded (overlap-safe)
    std::memmove(&s.token[t * s.coded], &s.token[t * C], s.coded);
    std::memmove(&s.raw[t * s.coded], &s.raw[t * C], s.coded * sizeof(std::uint16_t));
  }
}

// A segment's substreams (substream_tokens each, as quantize's predictor assumed), their lanes,
// and the symbols the entropy coder reads.
void plan_substreams(Coding coding, DType dtype, std::uint32_t tokens, std::size_t C,
                     const EncodeOptions& o, SegmentScratch& s) {
  s.per = substream_tokens(tokens, C, o);
  s.substreams = (tokens + s.per - 1) / s.per;
  s.lanes = substream_lanes(s.per, C, o);
  s.symbols = {s.token.data(),
               s.raw.data(),
               coding == Coding::quantized ? nullptr : s.extra.data(),
               coding == Coding::quantized ? 0 : split_shift(static_cast<std::uint8_t>(dtype)) + 1,
               s.table_row.data(),
               s.coded};
  s.streams.resize(s.substreams);
}

void add_jobs(std::uint32_t tokens, SegmentScratch& s, std::vector<RansJob>& jobs) {
  for (std::uint32_t k = 0; k < s.substreams; ++k) {
    const std::size_t first = std::size_t{k} * s.per * s.coded;
    const std::size_t last = std::min<std::size_t>(std::size_t{k + 1} * s.per, tokens) * s.coded;
    jobs.push_back({&s.symbols, first, last, s.lanes, &s.streams[k]});
  }
}

void write_segment(Coding coding, std::size_t C, const SegmentScratch& s, ByteWriter& w) {
  const SegmentFields f{coding,
                        s.predictor,
                        s.lanes,
                        s.substreams,
                        static_cast<std::uint32_t>(C) - s.coded,
                        coding == Coding::quantized ? std::span(s.step_code.data(), C)
                                                    : std::span<const std::uint8_t>(),
                        std::span(s.table.data(), C),
                        std::span(s.center.data(), C)};
  codec::write_segment(
      f, [&](std::uint32_t k) { return s.streams[k].words(); },
      [&](std::uint32_t k) { return std::span<const std::uint32_t>(s.streams[k].states); }, w);
}

// Transform coding: the coefficients of tokens [begin, begin + count) of src into `out` (whose
// token 0 is `begin`), with a bad input value named as the lossy levels name it.
Status analyze_chunk(const KvView& src, std::uint32_t begin, std::uint32_t count,
                     const CodecProfile& profile, ChunkEncoder::Scratch& sc, const KvView& out) {
  const KvTransform& t = *profile.transform();
  const KvLayout& l = src.layout();
  const std::size_t C = l.row_values(), n = 2 * C;
  if (sc.analysis_for != profile.shared_transform()) {
    sc.analysis_for = profile.shared_transform();  // held: its address stays its own
    transpose_layers(t.analysis, n, sc.analysis_t);
  }
  const bool rotated = !t.frequencies.empty();
  std::size_t first_row = 0;
  const RopeTurns* turns =
      rotated ? &sc.turns.rows(profile.shared_transform(), -1.0f, begin, count, first_row)
              : nullptr;
  sc.k.resize(count * C);
  sc.z.resize(count * n);
  for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
    // z rows: K (RoPE undone below), then V.
    for (std::uint32_t i = 0; i < count; ++i) {
      for (std::uint32_t part = 0; part < 2; ++part) {
        const std::byte* row = src.row(layer, static_cast<KvPart>(part), begin + i);
        float* dst = part == 1 ? &sc.z[i * n + C] : rotated ? &sc.k[i * C] : &sc.z[i * n];
        if (load_row(row, C, l.dtype, dst)) continue;
        for (std::size_t c = 0; c < C; ++c) {
          const float x = dst[c];
          if (!(std::fabs(x) <= kMaxLossyMagnitude)) {
            return lossy_value_error(layer, static_cast<KvPart>(part), begin + i,
                                     static_cast<std::uint32_t>(c), l.head_dim, x);
          }
        }
      }
    }
    if (rotated) turn_keys(t, *turns, first_row, count, sc.k.data(), C, sc.z.data(), n);
    // Coefficients 0..C-1 go to the layer's "K" rows, C..2C-1 to its "V" rows (contiguous).
    auto* k_rows = reinterpret_cast<float*>(out.row(layer, KvPart::key, 0));
    auto* v_rows = reinterpret_cast<float*>(out.row(layer, KvPart::value, 0));
    multiply_rows(n, std::span(sc.analysis_t).subspan(layer * n * n, n * n), count,
                  HalfRows<const float>{sc.z.data(), sc.z.data(), C, n},
                  HalfRows<float>{k_rows, v_rows - C, C, C});
  }
  return Status::ok();
}

}  // namespace

ChunkEncoder::ChunkEncoder() : scratch_(std::make_unique<Scratch>()) {}
ChunkEncoder::~ChunkEncoder() = default;
ChunkEncoder::ChunkEncoder(ChunkEncoder&&) noexcept = default;
ChunkEncoder& ChunkEncoder::operator=(ChunkEncoder&&) noexcept = default;

std::size_t chunk_size_bound(const KvLayout& layout, std::uint32_t token_count) {
  const std::size_t C = layout.row_values(), T = token_count, values = T * C;
  // A segment: its fixed fields, step codes, table ids, centers (3-byte varints at most),
  // substream sizes and lane states (at most T substreams of 32 lanes), and words (split32's
  // 22 extra bits make four words a value at most).
  const std::size_t segment =
      kSegmentFixedSize + 5 * C + 4 * T + 4 * T * 32 + 2 * codec::rans_word_bound(values, 22);
  return kHeaderSize + 2 * std::size_t{layout.layers} * (kSegmentEntrySize + segment);
}

Status encode_chunk(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                    const EncodeOptions& options, std::vector<std::byte>& out) {
  ChunkEncoder encoder;
  return encoder.encode(src, token_begin, token_count, options, out);
}

Status ChunkEncoder::encode(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                            const EncodeOptions& o, std::vector<std::byte>& out) {
  const KvLayout& l = src.layout();
  CodecProfile builtin;
  const CodecProfile* profile = nullptr;
  KVS_RETURN_IF_ERROR(check_encode(src, token_begin, token_count, o, builtin, profile));
  const KvTransform* transform = o.level > 0 ? profile->transform() : nullptr;
  const Coding coding = coding_for(o.level, l.dtype);
  const std::size_t C = l.row_values();
  const std::uint32_t segments = 2 * l.layers;

  out.clear();
  ByteWriter w(out);
  out.resize(kHeaderSize + std::size_t{segments} * kSegmentEntrySize);
  Scratch& scratch = *scratch_;
  // Transform coding codes the coefficients as if they were an fp32 KV cache of the chunk.
  const KvView* values = &src;
  KvView coefficient_view;
  DType values_dtype = l.dtype;
  std::uint32_t values_begin = token_begin;
  if (transform != nullptr) {
    const KvLayout cl{l.layers, l.kv_heads, l.head_dim, DType::f32, token_count};
    if (!scratch.coefficients || !scratch.coefficients->layout().same_shape(cl) ||
        scratch.coefficients->layout().tokens != token_count) {
      KVS_ASSIGN_OR_RETURN(KvBuffer b, KvBuffer::create(cl));
      scratch.coefficients = std::make_unique<KvBuffer>(std::move(b));
    }
    KVS_RETURN_IF_ERROR(analyze_chunk(src, token_begin, token_count, *profile, scratch,
                                      scratch.coefficients->view()));
    coefficient_view = scratch.coefficients->view();
    values = &coefficient_view;
    values_dtype = DType::f32;
    values_begin = 0;
  }
  std::vector<std::uint32_t>& offsets = scratch.offsets;
  offsets.assign(segments, 0);
  if (o.verbatim) {
    const std::size_t row_bytes = C * dtype_size(l.dtype);
    for (std::uint32_t i = 0; i < segments; ++i) {
      offsets[i] = static_cast<std::uint32_t>(w.size());
      w.put(static_cast<std::uint8_t>(Coding::verbatim));
      w.put(std::uint8_t{0});   // predictor
      w.put(std::uint8_t{1});   // lanes
      w.put(std::uint8_t{0});   // reserved
      w.put(std::uint16_t{1});  // substreams
      w.put(std::uint16_t{0});  // tail
      for (std::uint32_t t = 0; t < token_count; ++t) {
        w.put_bytes(
            std::span(src.row(i / 2, static_cast<KvPart>(i % 2), token_begin + t), row_bytes));
      }
    }
    return finish_chunk({0, &l, token_begin, token_count, false, 0}, offsets, out);
  }
  scratch.window.resize(std::min(segments, kWindow));
  for (std::uint32_t first = 0; first < segments; first += kWindow) {
    const std::uint32_t count = std::min(kWindow, segments - first);
    scratch.jobs.clear();
    for (std::uint32_t i = 0; i < count; ++i) {
      SegmentScratch& seg = scratch.window[i];
      const SegmentRows rows{values,       (first + i) / 2, static_cast<KvPart>((first + i) % 2),
                             values_begin, token_count,     C};
      if (coding == Coding::quantized) {
        Status q = quantize(rows, values_dtype, *profile, o.level,
                            substream_tokens(token_count, C, o), seg);
        // Coefficients are named like channels; say so (only an extreme transform gets here).
        if (!q.is_ok() && transform != nullptr) q = q.with_context("transform coefficients");
        KVS_RETURN_IF_ERROR(q);
      } else {
        split(rows, l.dtype, seg);
      }
      choose_tables(C, token_count, seg);
      seg.coded = static_cast<std::uint32_t>(C);
      if (coding == Coding::quantized) drop_constant_tail(token_count, C, seg);
      plan_substreams(coding, l.dtype, token_count, C, o, seg);
      add_jobs(token_count, seg, scratch.jobs);
    }
    rans_encode(scratch.jobs);
    for (std::uint32_t i = 0; i < count; ++i) {
      offsets[first + i] = static_cast<std::uint32_t>(w.size());
      write_segment(coding, C, scratch.window[i], w);
    }
  }
  return finish_chunk({o.level, &l, token_begin, token_count, transform != nullptr,
                       transform != nullptr ? profile->transform_id() : 0},
                      offsets, out);
}

}  // namespace kvstream
