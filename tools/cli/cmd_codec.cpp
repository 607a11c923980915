// `kvstream codec eval`: size, quality and speed of every level and baseline on real KV caches.
#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <memory>

#include "cli/calibration.hpp"
#include "cli/common.hpp"
#include "cli/eval_methods.hpp"
#include "runner/model.hpp"
#include "runner/parallel.hpp"
#include "runner/scoring.hpp"

namespace kvstream::cli {

namespace {

struct MethodResult {
  double bits = 0;
  std::uint64_t values = 0;
  runner::LogitComparison cmp;
  double encode_s = 0, decode_s = 0;
  double encode_gbps = 0, decode_gbps = 0;  // fp16 bytes per second, one core
};

struct EvalSetup {
  const runner::Model* model;
  std::uint32_t ctx, chunk;
};

// Encodes the prefix chunk by chunk with `m` and decodes it into `out`; returns the wire bits.
Expected<double> round_trip(EvalMethod& m, const KvView& ref, const KvView& out,
                            std::uint32_t chunk, Encoded& scratch) {
  double bits = 0;
  const std::uint32_t tokens = ref.layout().tokens;
  for (std::uint32_t s = 0; s < tokens; s += chunk) {
    const std::uint32_t n = std::min(chunk, tokens - s);
    KVS_RETURN_IF_ERROR(m.encode(ref, s, n, scratch).with_context(m.name()));
    bits += scratch.wire_bits;
    KVS_RETURN_IF_ERROR(m.decode(scratch, out, s, n).with_context(m.name()));
  }
  return bits;
}

Status eval_context(const EvalSetup& e, runner::Runner& runner,
                    std::vector<std::unique_ptr<EvalMethod>>& methods,
                    std::span<const std::int32_t> tokens, std::vector<MethodResult>& results) {
  if (tokens.size() < std::size_t{e.ctx} + 2) {
    return Status(Errc::invalid_argument, fmt::format("{} tokens; --ctx {} needs at least {}",
                                                      tokens.size(), e.ctx, e.ctx + 2));
  }
  const KvLayout layout = e.model->kv_layout(e.ctx, DType::f16);
  KVS_ASSIGN_OR_RETURN(KvBuffer ref, KvBuffer::create(layout));
  KVS_ASSIGN_OR_RETURN(KvBuffer decoded, KvBuffer::create(layout));
  KVS_RETURN_IF_ERROR(runner::capture_kv(runner, tokens.first(e.ctx), ref.view()));
  const auto fed = tokens.subspan(e.ctx, tokens.size() - e.ctx - 1);
  const auto targets = tokens.subspan(e.ctx + 1);
  KVS_ASSIGN_OR_RETURN(std::vector<float> ref_logits,
                       runner::continue_from(runner, ref.view(), e.ctx, fed));
  Encoded scratch;
  for (std::size_t i = 0; i < methods.size(); ++i) {
    KVS_ASSIGN_OR_RETURN(double bits,
                         round_trip(*methods[i], ref.view(), decoded.view(), e.chunk, scratch));
    KVS_ASSIGN_OR_RETURN(std::vector<float> logits,
                         runner::continue_from(runner, decoded.view(), e.ctx, fed));
    results[i].bits += bits;
    results[i].values += layout.total_values();
    results[i].cmp.add(
        runner::compare_logits(ref_logits, logits, targets, e.model->config().vocab));
  }
  return Status::ok();
}

// One-core encode and decode time of each method over the prefix of a few contexts.
Status time_methods(const EvalSetup& e, std::span<const std::vector<std::int32_t>> contexts,
                    std::vector<std::unique_ptr<EvalMethod>>& methods,
                    std::vector<MethodResult>& results) {
  using Clock = std::chrono::steady_clock;
  runner::Runner runner(*e.model);
  const KvLayout layout = e.model->kv_layout(e.ctx, DType::f16);
  KVS_ASSIGN_OR_RETURN(KvBuffer out, KvBuffer::create(layout));
  std::vector<KvBuffer> refs;
  for (const auto& tokens : contexts) {
    KVS_ASSIGN_OR_RETURN(KvBuffer kv, KvBuffer::create(layout));
    KVS_RETURN_IF_ERROR(runner::capture_kv(runner, std::span(tokens).first(e.ctx), kv.view()));
    refs.push_back(std::move(kv));
  }
  std::vector<Encoded> encoded;
  for (std::size_t i = 0; i < methods.size(); ++i) {
    if (!methods[i]->timed()) continue;
    MethodResult& r = results[i];
    // Encode, then decode, each repeated until it spans at least 0.3 s, so that timer noise
    // does not matter and the decoder runs warm as it does on a serving path.
    encoded.resize(refs.size() * ((e.ctx + e.chunk - 1) / e.chunk));
    double encode_bytes = 0, decode_bytes = 0;
    while (r.encode_s < 0.3) {
      const auto t0 = Clock::now();
      std::size_t k = 0;
      for (const KvBuffer& ref : refs) {
        for (std::uint32_t s = 0; s < e.ctx; s += e.chunk) {
          KVS_RETURN_IF_ERROR(
              methods[i]->encode(ref.view(), s, std::min(e.chunk, e.ctx - s), encoded[k++]));
        }
      }
      r.encode_s += std::chrono::duration<double>(Clock::now() - t0).count();
      encode_bytes += static_cast<double>(refs.size() * layout.total_bytes());
    }
    while (r.decode_s < 0.3) {
      const auto t0 = Clock::now();
      std::size_t k = 0;
      for (std::size_t c = 0; c < refs.size(); ++c) {
        for (std::uint32_t s = 0; s < e.ctx; s += e.chunk) {
          KVS_RETURN_IF_ERROR(
              methods[i]->decode(encoded[k++], out.view(), s, std::min(e.chunk, e.ctx - s)));
        }
      }
      r.decode_s += std::chrono::duration<double>(Clock::now() - t0).count();
      decode_bytes += static_cast<double>(refs.size() * layout.total_bytes());
    }
    r.encode_gbps = encode_bytes / r.encode_s / 1e9;
    r.decode_gbps = decode_bytes / r.decode_s / 1e9;
  }
  return Status::ok();
}

std::string gbps(const MethodResult& r, bool encode) {
  const double g = encode ? r.encode_gbps : r.decode_gbps;
  return g > 0 ? fmt::format("{:.3f}", g) : "null";
}

int codec_eval(std::span<const std::string_view> args) {
  std::string model_path, tokens_path, profile_path;
  std::int64_t ctx = 384, chunk = 128, limit = 0, timing = 4, threads = runner::default_threads();
  bool json = false;
  ArgParser p("kvstream codec eval",
              "Builds each context's fp16 KV cache with the reference model, passes its first C\n"
              "tokens through every codec level and baseline chunk by chunk, and scores the\n"
              "decoded cache on the rest of the context against the fp16 cache: bits per value\n"
              "(side information included), delta perplexity, top-1 agreement, KL, and one-core\n"
              "encode/decode throughput in GB/s of fp16.");
  p.option("--model", "PATH", "llama2.c checkpoint", &model_path, true)
      .option("--tokens", "FILE", "contexts, one per line", &tokens_path, true)
      .option("--profile", "FILE", "codec profile from `codec calibrate` (default: built-in rule)",
              &profile_path)
      .option("--ctx", "C", "prefix whose KV cache is coded", &ctx, 1, 65536)
      .option("--chunk", "T", "tokens per chunk", &chunk, 1, 65536)
      .option("--limit", "N", "use only the first N contexts (0: all)", &limit, 0, INT64_MAX)
      .option("--timing-contexts", "N", "contexts used to time encode and decode", &timing, 1, 1024)
      .option("--threads", "N", "worker threads for scoring", &threads, 1, 256)
      .flag("--json", "print one JSON object with a `rows` array", &json);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  auto inputs = load_model_and_contexts(model_path, tokens_path);
  if (!inputs) return report_failure(p.command(), inputs.error());
  const runner::Model& model = inputs->model;
  const auto& contexts = inputs->contexts;
  const auto selected = first_contexts(contexts, limit);
  const EvalSetup setup{&model, static_cast<std::uint32_t>(ctx), static_cast<std::uint32_t>(chunk)};
  const runner::ModelConfig& mc = model.config();
  CodecProfile profile = CodecProfile::builtin(mc.layers, 1);
  if (!profile_path.empty()) {
    auto loaded = CodecProfile::load(profile_path);
    if (!loaded) return report_failure(p.command(), loaded.error());
    const std::uint32_t channels = mc.kv_heads * mc.head_dim();
    if (loaded->layers() != mc.layers || channels % loaded->groups() != 0) {
      return report_failure(
          p.command(),
          Status(
              Errc::invalid_argument,
              fmt::format("profile '{}' is for {} layers in {} channel groups; the model has {} "
                          "layers of {} channels",
                          profile_path, loaded->layers(), loaded->groups(), mc.layers, channels)));
    }
    profile = std::move(*loaded);
  }
  const std::size_t n_methods = make_eval_methods(profile).size();

  // Quality: contexts in parallel, one runner and one set of methods per worker.
  const unsigned workers = static_cast<unsigned>(threads);
  std::vector<std::vector<MethodResult>> per_context(selected.size(),
                                                     std::vector<MethodResult>(n_methods));
  std::vector<std::unique_ptr<runner::Runner>> runners(workers);
  std::vector<std::vector<std::unique_ptr<EvalMethod>>> methods(workers);
  Progress progress("eval", selected.size());
  const Status s = runner::parallel_for(selected.size(), workers, [&](unsigned w, std::size_t i) {
    if (!runners[w]) {
      runners[w] = std::make_unique<runner::Runner>(model);
      methods[w] = make_eval_methods(profile);
    }
    const Status st = eval_context(setup, *runners[w], methods[w], selected[i], per_context[i]);
    progress.advance();
    return st.with_context(fmt::format("context {}", i));
  });
  progress.finish();
  if (!s.is_ok()) return report_failure(p.command(), s);
  std::vector<MethodResult> total(n_methods);
  for (const auto& ctx_results : per_context) {
    for (std::size_t m = 0; m < n_methods; ++m) {
      total[m].bits += ctx_results[m].bits;
      total[m].values += ctx_results[m].values;
      total[m].cmp.add(ctx_results[m].cmp);
    }
  }

  // Speed: one thread, so the figures are per core.
  auto timing_methods = make_eval_methods(profile);
  const Status ts = time_methods(
      setup,
      selected.first(std::min<std::size_t>(selected.size(), static_cast<std::size_t>(timing))),
      timing_methods, total);
  if (!ts.is_ok()) return report_failure(p.command(), ts);

  const auto positions = static_cast<double>(total[0].cmp.positions);
  const double ref_ppl = std::exp(total[0].cmp.ref_nll_sum / positions);
  std::vector<std::string> rows;
  if (!json) {
    fmt::print(
        "{} contexts, ctx {}, chunk {}, {} tokens scored; reference (fp16 cache) ppl {:.5f}\n",
        selected.size(), ctx, chunk, total[0].cmp.positions, ref_ppl);
    fmt::print("{:<16} {:>14} {:>13} {:>8} {:>10} {:>11} {:>11}\n", "name", "bits_per_value",
               "delta_ppl_pct", "top1", "kl", "encode_gbps", "decode_gbps");
  }
  for (std::size_t m = 0; m < n_methods; ++m) {
    const MethodResult& r = total[m];
    const double bpv = r.bits / static_cast<double>(r.values);
    const double ppl = std::exp(r.cmp.nll_sum / positions);
    const double delta = 100.0 * (ppl / ref_ppl - 1.0);
    const double top1 = static_cast<double>(r.cmp.top1_same) / positions;
    const double kl = r.cmp.kl_sum / positions;
    const std::string& name = timing_methods[m]->name();
    if (json) {
      rows.push_back(
          fmt::format("{{\"name\": {}, \"bits_per_value\": {:.4f}, \"delta_ppl_pct\": {:.4f}, "
                      "\"top1\": {:.5f}, "
                      "\"kl\": {:.6g}, \"encode_gbps\": {}, \"decode_gbps\": {}}}",
                      json_string(name), bpv, delta, top1, kl, gbps(r, true), gbps(r, false)));
    } else {
      fmt::print("{:<16} {:>14.3f} {:>+13.3f} {:>8.4f} {:>10.2e} {:>11} {:>11}\n", name, bpv, delta,
                 top1, kl, gbps(r, true), gbps(r, false));
    }
  }
  if (json) {
    fmt::print(
        "{{\"model\": {}, \"contexts\": {}, \"ctx\": {}, \"chunk\": {}, "
        "\"tokens_scored\": {}, \"reference_ppl\": {:.6f}, \"rows\": [\n  {}\n]}}\n",
        json_string(model_path), selected.size(), ctx, chunk, total[0].cmp.positions, ref_ppl,
        fmt::join(rows, ",\n  "));
  }
  return kExitOk;
}

int codec_calibrate(std::span<const std::string_view> args) {
  std::string model_path, tokens_path, out_path;
  std::int64_t ctx = 384, chunk = 128, limit = 16, groups = 0, threads = runner::default_threads();
  bool transform = false;
  std::string targets_text = "1e-3,2e-3,5e-3,1e-2,3e-2,1e-1";
  ArgParser p("kvstream codec calibrate",
              "Measures how much each layer's K and V cost in quality when quantized (KL of the\n"
              "continuation's predictions against the fp16 cache), then chooses every lossy\n"
              "level's steps so that its quality target (a mean KL, in nats) is met at the\n"
              "smallest size: levels are defined by quality, whatever the model. The default\n"
              "targets span about +0.1% to +10% perplexity. Writes a profile for\n"
              "`codec eval --profile` and the encoder.");
  p.option("--model", "PATH", "llama2.c checkpoint", &model_path, true)
      .option("--tokens", "FILE", "calibration contexts, one per line", &tokens_path, true)
      .option("--out", "FILE", "profile to write", &out_path, true)
      .option("--ctx", "C", "prefix whose KV cache is coded", &ctx, 1, 65536)
      .option("--chunk", "T", "tokens per chunk", &chunk, 1, 65536)
      .option("--limit", "N", "calibrate on the first N contexts (0: all)", &limit, 0, INT64_MAX)
      .option("--groups", "G",
              "channel groups per layer's K or V, each with its own steps (0: one "
              "per KV head)",
              &groups, 0, 65536)
      .option("--threads", "N", "worker threads", &threads, 1, 256)
      .option("--targets", "LIST", "each lossy level's mean-KL target, ascending", &targets_text)
      .flag("--transform",
            "fit a transform of each layer's K and V (codec/FORMAT.md \"Transform coding\"); "
            "decoders then need the profile",
            &transform);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  auto targets = parse_targets(targets_text);
  if (!targets) return report_failure(p.command(), targets.error().with_context("--targets"));
  auto inputs = load_model_and_contexts(model_path, tokens_path);
  if (!inputs) return report_failure(p.command(), inputs.error());
  const runner::Model& model = inputs->model;
  const auto& contexts = inputs->contexts;
  const auto selected = first_contexts(contexts, limit);
  const std::uint32_t channels = model.config().kv_heads * model.config().head_dim();
  if (groups > 0 && channels % static_cast<std::uint32_t>(groups) != 0) {
    return report_failure(
        p.command(),
        Status(Errc::invalid_argument,
               fmt::format("--groups {} does not divide the {} channels", groups, channels)));
  }
  auto meter = KlMeter::create(model, selected, static_cast<std::uint32_t>(ctx),
                               static_cast<std::uint32_t>(chunk), static_cast<unsigned>(threads));
  if (!meter) return report_failure(p.command(), meter.error());
  CalibrationOptions options;
  options.targets = std::move(*targets);
  options.transform = transform;
  options.rope_frequencies = model.rope_frequencies();
  options.rope_pairs = RopePairs::interleaved;  // llama2.c
  auto profile =
      calibrate(**meter, model.config().layers,
                groups > 0 ? static_cast<std::uint32_t>(groups) : model.config().kv_heads, options,
                [](const std::string& line) { fmt::print(stderr, "calibrate: {}\n", line); });
  if (!profile) return report_failure(p.command(), profile.error());
  const Status saved = profile->save(out_path);
  if (!saved.is_ok()) return report_failure(p.command(), saved);
  fmt::print("wrote {}: {} levels for {} layers, calibrated on {} contexts\n", out_path,
             profile->levels(), profile->layers(), selected.size());
  return kExitOk;
}

}  // namespace

int run_codec(std::span<const std::string_view> args) {
  static constexpr Subcommand kSubcommands[] = {
      {"eval", "size, quality and speed of every level and baseline on real KV caches", codec_eval},
      {"calibrate", "measure per-head sensitivity and write a profile of level step sizes",
       codec_calibrate},
      {"encode", "write a context archive: a context's KV cache at every level", codec_encode},
      {"decode", "decode a context archive at one level into a raw KV file", codec_decode},
      {"inspect", "describe a context archive", codec_inspect},
  };
  return dispatch("kvstream codec", kSubcommands, args);
}

}  // namespace kvstream::cli
