#include "cli/adapt_setup.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

#include "cli/eval_methods.hpp"
#include "kvstream/archive.hpp"
#include "kvstream/codec.hpp"
#include "runner/model_shaped.hpp"
#include "runner/runner.hpp"
#include "runner/sampling.hpp"

namespace kvstream::cli {

namespace {

// Contexts of ctx + continuation tokens sampled from the model (temperature 1, top-p 0.9), as
// `kvstream model generate` makes them.
Expected<std::vector<std::vector<std::int32_t>>> sample_contexts(const runner::Model& model,
                                                                 std::uint32_t count,
                                                                 std::uint32_t length,
                                                                 std::uint64_t seed) {
  std::vector<std::vector<std::int32_t>> out;
  for (std::uint32_t i = 0; i < count; ++i) {
    runner::Runner r(model);
    runner::Sampler sampler(seed + i, 0, 1.0f, 0.9f);
    KVS_ASSIGN_OR_RETURN(auto tokens, runner::sample_context(r, sampler, length));
    out.push_back(std::move(tokens));
  }
  return out;
}

}  // namespace

Expected<QualityScore> AdaptSetup::score(Carrier c,
                                         std::span<const scheduler::Choice> choices) const {
  std::vector<int> per_chunk;
  const int int8_method = static_cast<int>(meter->methods().size()) - 1;
  for (const scheduler::Choice& ch : choices) {
    if (ch.recompute() || c == Carrier::fp16) {
      per_chunk.push_back(QualityMeter::kExact);
    } else if (c == Carrier::int8) {
      per_chunk.push_back(int8_method);
    } else {
      per_chunk.push_back(static_cast<int>(ch.level));
    }
  }
  return meter->measure(per_chunk, options.threads);
}

Expected<std::unique_ptr<AdaptSetup>> prepare_adapt(const AdaptSetupOptions& o) {
  KVS_ASSIGN_OR_RETURN(runner::Model model, runner::Model::load(o.model_path));
  auto s = std::make_unique<AdaptSetup>(o, std::move(model));
  const runner::Model& m = s->model;
  if (o.ctx + o.continuation > m.config().seq_len) {
    return Status(Errc::invalid_argument,
                  fmt::format("ctx {} + continuation {} exceed the model's {} positions", o.ctx,
                              o.continuation, m.config().seq_len));
  }

  // The stream: a large model's shape, real values; its archive gives every chunk's sizes.
  KvLayout shape = o.shape;
  shape.tokens = o.ctx;
  KVS_ASSIGN_OR_RETURN(KvBuffer big, runner::model_shaped_kv(m, shape, 4, o.seed));
  KVS_ASSIGN_OR_RETURN(auto contexts,
                       sample_contexts(m, o.contexts, o.ctx + o.continuation, o.seed + 1000));
  ArchiveOptions ao;
  ao.chunk_tokens = o.chunk;
  ao.max_level = static_cast<std::uint8_t>(o.max_level);
  ao.verbatim_level0 = o.verbatim_level0;
  KVS_RETURN_IF_ERROR(
      write_archive(o.archive_path, big.view(), std::span(contexts[0]).first(o.ctx), ao));
  KVS_ASSIGN_OR_RETURN(ArchiveReader archive, ArchiveReader::open(o.archive_path));
  const ArchiveInfo& info = archive.info();

  // Decode speed, every chunk at every level, on the threads the fetch will decode with.
  KVS_ASSIGN_OR_RETURN(KvBuffer out, KvBuffer::create(shape));
  ChunkDecoder decoder(o.decode_threads);
  std::vector<std::byte> bytes;
  double seconds = 0, decoded = 0;
  for (std::uint32_t l = 0; l < info.levels; ++l) {
    double level_seconds = 0;
    for (std::uint32_t c = 0; c < info.chunk_count; ++c) {
      KVS_RETURN_IF_ERROR(archive.read_chunk(c, l, bytes));
      const auto t0 = std::chrono::steady_clock::now();
      KVS_RETURN_IF_ERROR(decoder.decode(bytes, out.view()));
      level_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    seconds += level_seconds;
    decoded += static_cast<double>(shape.total_bytes());
    s->level_decode_bytes_per_s.push_back(static_cast<double>(shape.total_bytes()) / level_seconds);
  }
  s->decode_bytes_per_s = decoded / seconds;

  // Sizes: the archive's levels; fp16 as it is; int8 as `codec eval` codes it.
  auto methods = make_eval_methods(CodecProfile::builtin(shape.layers, 1));
  EvalMethod *int8 = nullptr, *fp16 = nullptr;
  for (auto& method : methods) {
    if (method->name() == "int8") int8 = method.get();
    if (method->name() == "fp16") fp16 = method.get();
  }
  if (int8 == nullptr || fp16 == nullptr) return Status(Errc::internal, "no int8 or fp16 method");
  // The baselines' decode (a copy; a dequantization) at the same chunking, one core.
  for (auto [method, rate] : {std::pair{fp16, &s->fp16_decode_bytes_per_s},
                              std::pair{int8, &s->int8_decode_bytes_per_s}}) {
    double took = 0;
    Encoded enc;
    for (std::uint32_t b = 0; b < o.ctx; b += o.chunk) {
      const std::uint32_t n = std::min(o.chunk, o.ctx - b);
      KVS_RETURN_IF_ERROR(method->encode(big.view(), b, n, enc));
      const auto t0 = std::chrono::steady_clock::now();
      KVS_RETURN_IF_ERROR(method->decode(enc, out.view(), b, n));
      took += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    *rate = static_cast<double>(shape.total_bytes()) / took;
  }
  const std::uint64_t token_bytes = shape.total_bytes() / shape.tokens;
  Encoded scratch;
  for (std::uint32_t c = 0; c < info.chunk_count; ++c) {
    const std::uint32_t begin = c * o.chunk, n = std::min(o.chunk, o.ctx - begin);
    scheduler::ChunkCosts cc{n, token_bytes * n, {}};
    for (std::uint32_t l = 0; l < info.levels; ++l)
      cc.level_bytes.push_back(archive.chunk_size(c, l));
    s->levels.chunks.push_back(cc);
    s->fp16.chunks.push_back({n, cc.raw_bytes, {cc.raw_bytes}});
    KVS_RETURN_IF_ERROR(int8->encode(big.view(), begin, n, scratch));
    s->int8.chunks.push_back(
        {n, cc.raw_bytes, {static_cast<std::uint64_t>((scratch.wire_bits + 7) / 8)}});
  }

  // Quality on the reference model's own contexts, chunk k standing for tokens of chunk k.
  std::vector<std::string> names;
  for (std::uint32_t l = 0; l < info.levels; ++l)
    names.push_back(fmt::format("level{}", l));
  names.push_back("int8");
  KVS_ASSIGN_OR_RETURN(s->meter, QualityMeter::create(m, std::move(contexts), o.ctx, o.chunk,
                                                      CodecProfile::builtin(m.config().layers, 1),
                                                      names, o.threads));
  const std::uint32_t chunks = s->meter->chunks();
  for (std::uint32_t l = 0; l < info.levels; ++l) {
    KVS_ASSIGN_OR_RETURN(
        const QualityScore q,
        s->meter->measure(std::vector<int>(chunks, static_cast<int>(l)), o.threads));
    s->level_quality.push_back(q);
    s->levels.level_loss.push_back(std::max(0.0, q.delta_ppl_pct));
  }
  KVS_ASSIGN_OR_RETURN(
      s->int8_quality,
      s->meter->measure(std::vector<int>(chunks, static_cast<int>(info.levels)), o.threads));
  s->fp16.level_loss = {0};
  s->int8.level_loss = {std::max(0.0, s->int8_quality.delta_ppl_pct)};
  KVS_RETURN_IF_ERROR(s->levels.check());
  return s;
}

}  // namespace kvstream::cli
