// `kvstream demo`: the main job end to end, as far as the project goes today. It samples real
// contexts with the reference model, captures their KV caches the way an engine holds them,
// and shows what the cache weighs and what holding it in each dtype and layout costs in
// continuation perplexity.
#include <fmt/format.h>
#include <fmt/std.h>

#include "cli/common.hpp"
#include "runner/model.hpp"
#include "runner/parallel.hpp"  // default_threads
#include "runner/sampling.hpp"
#include "runner/scoring.hpp"

namespace kvstream::cli {

int run_demo(std::span<const std::string_view> args) {
  std::string model_path = (runner::models_dir() / "stories260K.bin").string();
  std::int64_t contexts_n = 8, length = 512, ctx = 384, seed = 1;
  std::int64_t threads = runner::default_threads();
  ArgParser p("kvstream demo",
              "Sample contexts with the reference model, capture the KV cache of their first C\n"
              "tokens, and score the continuation with that cache held in fp32, fp16, bf16 and\n"
              "in a paged layout.");
  p.option("--model", "PATH", "llama2.c checkpoint ($KVSTREAM_MODELS/stories260K.bin)", &model_path)
      .option("--contexts", "N", "contexts to sample", &contexts_n, 1, 4096)
      .option("--length", "T", "tokens per context, BOS included", &length, 3, 1 << 20)
      .option("--ctx", "C", "prefix whose KV cache is captured", &ctx, 1, 1 << 20)
      .option("--seed", "S", "random seed", &seed, 0, INT64_MAX)
      .option("--threads", "N", "worker threads", &threads, 1, 256);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  if (ctx + 2 > length) {
    fmt::print(stderr, "{}: error: --ctx {} leaves nothing to score in --length {} (see --help)\n",
               p.command(), ctx, length);
    return kExitUsage;
  }

  auto model = runner::Model::load(model_path);
  if (!model) return report_failure(p.command(), model.error());
  const runner::ModelConfig& c = model->config();
  fmt::print("model    {}: dim {}, {} layers, {} heads, {} KV heads, head_dim {}, vocab {}\n",
             model_path, c.dim, c.layers, c.heads, c.kv_heads, c.head_dim(), c.vocab);

  const runner::SampleOptions options{static_cast<std::uint32_t>(length),
                                      static_cast<std::uint64_t>(seed), 1.0f, 0.9f};
  auto sampled = runner::sample_contexts(*model, static_cast<std::size_t>(contexts_n), options,
                                         static_cast<unsigned>(threads));
  if (!sampled) return report_failure(p.command(), sampled.error());
  const std::vector<std::vector<std::int32_t>>& contexts = *sampled;
  fmt::print("sampled  {} contexts of {} tokens from BOS (seed {}, temperature 1.0, top-p 0.9)\n",
             contexts.size(), length, seed);
  const auto& first = contexts.front();
  fmt::print(
      "         context 0 starts: {} ...\n",
      fmt::join(first.begin(), first.begin() + std::min<std::size_t>(first.size(), 16), " "));

  const auto ctx32 = static_cast<std::uint32_t>(ctx);
  const KvLayout per_context = model->kv_layout(ctx32, DType::f16);
  fmt::print("kv cache {} tokens x {} layers x K,V x {} heads x {} dims = {} values per context\n",
             ctx, c.layers, c.kv_heads, c.head_dim(), per_context.total_values());
  fmt::print("         fp32 {} bytes, fp16/bf16 {} bytes per context; {} bytes for all {}\n",
             2 * per_context.total_bytes(), per_context.total_bytes(),
             per_context.total_bytes() * contexts.size(), contexts.size());

  struct Row {
    const char* name;
    runner::KvFormat format;
  };
  const Row rows[] = {{"fp32 contiguous (lossless)", {DType::f32, 0}},
                      {"fp16 contiguous", {DType::f16, 0}},
                      {"bf16 contiguous", {DType::bf16, 0}},
                      {"fp16 paged, 16-token blocks", {DType::f16, 16}}};
  fmt::print("quality  continuation perplexity, {} tokens scored per context after the prefix:\n",
             length - ctx - 1);
  double reference = 0.0;
  for (const Row& row : rows) {
    const auto score =
        runner::score_contexts(*model, contexts, ctx32, row.format, static_cast<unsigned>(threads));
    if (!score) return report_failure(p.command(), score.error());
    if (reference == 0.0) reference = score->ppl();
    fmt::print("         {:<28} ppl {:9.5f}  delta {:+.4f}%\n", row.name, score->ppl(),
               100.0 * (score->ppl() / reference - 1.0));
  }
  return kExitOk;
}

}  // namespace kvstream::cli
