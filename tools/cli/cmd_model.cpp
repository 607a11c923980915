// `kvstream model info|generate|score`: the reference runner from the command line.
#include <fmt/format.h>
#include <fmt/std.h>

#include <cstdio>

#include "cli/common.hpp"
#include "runner/model.hpp"
#include "runner/parallel.hpp"  // default_threads
#include "runner/sampling.hpp"
#include "runner/scoring.hpp"

namespace kvstream::cli {

namespace {

constexpr std::int64_t kMaxThreads = 256;

int model_info(std::span<const std::string_view> args) {
  std::string model_path;
  ArgParser p("kvstream model info", "Print a checkpoint's configuration and KV cache size.");
  p.option("--model", "PATH", "llama2.c checkpoint", &model_path, true);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  auto model = runner::Model::load(model_path);
  if (!model) return report_failure(p.command(), model.error());
  const runner::ModelConfig& c = model->config();
  fmt::print("model      {}\n", model_path);
  fmt::print("dim        {}\nhidden_dim {}\nlayers     {}\nheads      {}\nkv_heads   {}\n", c.dim,
             c.hidden_dim, c.layers, c.heads, c.kv_heads);
  fmt::print("head_dim   {}\nvocab      {}{}\nseq_len    {}\n", c.head_dim(), c.vocab,
             c.shared_classifier ? " (shared classifier)" : "", c.seq_len);
  const KvLayout one = model->kv_layout(1, DType::f16);
  fmt::print("kv cache   {} values per token, {} bytes per token in fp16\n", one.total_values(),
             one.total_bytes());
  return kExitOk;
}

int model_generate(std::span<const std::string_view> args) {
  std::string model_path;
  std::int64_t count = 1, length = 512, seed = 1, threads = runner::default_threads();
  double temperature = 1.0, top_p = 0.9;
  ArgParser p("kvstream model generate",
              "Sample contexts from BOS with the reference model and print them, one per line,\n"
              "as token ids separated by spaces. Context i depends only on (--seed, i).");
  p.option("--model", "PATH", "llama2.c checkpoint", &model_path, true)
      .option("--count", "N", "number of contexts", &count, 1, 1'000'000)
      .option("--length", "T", "tokens per context, BOS included", &length, 1, 1 << 20)
      .option("--seed", "S", "random seed", &seed, 0, INT64_MAX)
      .option("--temperature", "X", "sampling temperature (0: greedy)", &temperature, 0.0, 100.0)
      .option("--top-p", "P", "nucleus sampling mass", &top_p, 1e-6, 1.0)
      .option("--threads", "N", "worker threads", &threads, 1, kMaxThreads);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  auto model = runner::Model::load(model_path);
  if (!model) return report_failure(p.command(), model.error());
  Progress progress("generate", static_cast<std::size_t>(count));
  const runner::SampleOptions options{static_cast<std::uint32_t>(length),
                                      static_cast<std::uint64_t>(seed),
                                      static_cast<float>(temperature), static_cast<float>(top_p)};
  auto contexts =
      runner::sample_contexts(*model, static_cast<std::size_t>(count), options,
                              static_cast<unsigned>(threads), [&] { progress.advance(); });
  progress.finish();
  if (!contexts) return report_failure(p.command(), contexts.error());
  for (const auto& c : *contexts)
    fmt::print("{}\n", fmt::join(c, " "));
  if (std::fflush(stdout) != 0) {
    return report_failure(p.command(), Status(Errc::io_error, "writing to standard output failed"));
  }
  return kExitOk;
}

int model_score(std::span<const std::string_view> args) {
  std::string model_path, tokens_path;
  DType kv_dtype = DType::f32;
  std::int64_t ctx = 0, limit = 0, page_block = 0, threads = runner::default_threads();
  bool json = false;
  ArgParser p("kvstream model score",
              "For every context: build the KV cache of its first C tokens, feed tokens C.. at\n"
              "positions C.., score the predictions of tokens C+1.., and print the pooled\n"
              "perplexity exp(sum NLL / tokens scored).");
  p.option("--model", "PATH", "llama2.c checkpoint", &model_path, true)
      .option("--tokens", "FILE", "contexts, one per line (as `model generate` prints)",
              &tokens_path, true)
      .option("--ctx", "C", "prefix length whose KV cache is built first", &ctx, 1, 1 << 20, true)
      .option("--kv-dtype", "T", "dtype the prefix KV is held in: f32, f16 or bf16", &kv_dtype)
      .option("--page-block", "B", "hold the prefix KV paged in blocks of B tokens (0: contiguous)",
              &page_block, 0, 1 << 20)
      .option("--limit", "N", "score only the first N contexts (0: all)", &limit, 0, INT64_MAX)
      .option("--threads", "N", "worker threads", &threads, 1, kMaxThreads)
      .flag("--json", "print one JSON object", &json);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  auto inputs = load_model_and_contexts(model_path, tokens_path);
  if (!inputs) return report_failure(p.command(), inputs.error());
  const runner::Model& model = inputs->model;
  const auto& contexts = inputs->contexts;
  const auto selected = first_contexts(contexts, limit);

  Progress progress("score", selected.size());
  const auto score =
      runner::score_contexts(model, selected, static_cast<std::uint32_t>(ctx),
                             runner::KvFormat{kv_dtype, static_cast<std::uint32_t>(page_block)},
                             static_cast<unsigned>(threads), [&] { progress.advance(); });
  progress.finish();
  if (!score) return report_failure(p.command(), score.error());
  if (json) {
    fmt::print(
        "{{\"model\": {}, \"contexts\": {}, \"ctx\": {}, \"kv_dtype\": \"{}\", "
        "\"tokens_scored\": {}, \"nll_sum\": {:.9g}, \"ppl\": {:.9g}}}\n",
        json_string(model_path), score->contexts, ctx, dtype_name(kv_dtype), score->predicted,
        score->nll_sum, score->ppl());
  } else {
    fmt::print("contexts {}  ctx {}  kv {}  tokens scored {}  ppl {:.6f}\n", score->contexts, ctx,
               dtype_name(kv_dtype), score->predicted, score->ppl());
  }
  return kExitOk;
}

}  // namespace

int run_model(std::span<const std::string_view> args) {
  static constexpr Subcommand kSubcommands[] = {
      {"info", "print a checkpoint's configuration", model_info},
      {"generate", "sample contexts from BOS", model_generate},
      {"score", "continuation perplexity of contexts given their prefix KV cache", model_score},
  };
  return dispatch("kvstream model", kSubcommands, args);
}

}  // namespace kvstream::cli
