// `kvstream demo`: the main job end to end, as far as the project goes today. It samples real
// contexts with the reference model, captures their KV caches the way an engine holds them,
// and shows what the cache weighs and what holding it in each dtype and layout costs in
// continuation perplexity. Then it streams each context's cache at every codec level from a
// sender to a receiver on this machine, over UCX with the authenticated control plane, and
// scores the caches the receiver decoded.
#include <fmt/format.h>
#include <fmt/std.h>

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <memory>

#include "adaptive.hpp"
#include "cli/adaptive_cli.hpp"
#include "cli/common.hpp"
#include "endpoints.hpp"
#include "kvstream/archive.hpp"
#include "runner/model.hpp"
#include "runner/parallel.hpp"  // default_threads
#include "runner/runner.hpp"
#include "runner/sampling.hpp"
#include "runner/scoring.hpp"

namespace kvstream::cli {

namespace {

using namespace std::chrono_literals;
using transport::Clock;

// A server for the archives in `dir` (paced to `rate_bits_per_second`; 0: not paced) and a
// receiver's connection to it, both in this process. The connection goes first, then the server.
struct LocalStream {
  std::unique_ptr<transport::StreamServer> server;
  std::unique_ptr<transport::StreamConnection> connection;
};

Expected<LocalStream> serve_locally(const std::filesystem::path& dir,
                                    const transport::Secret& secret, double rate_bits_per_second) {
  transport::ServerOptions so;
  so.dir = dir;
  so.host = "127.0.0.1";
  so.rate_bits_per_second = rate_bits_per_second;
  LocalStream l;
  KVS_ASSIGN_OR_RETURN(l.server, transport::StreamServer::start(so, secret));
  KVS_ASSIGN_OR_RETURN(l.connection, transport::connect_stream("127.0.0.1", l.server->port(),
                                                               secret, Clock::now() + 10s));
  return l;
}

// With a deadline: the same contexts again from a sender paced to `rate_bits_per_second`, each
// chunk's level (or its recompute by the reference runner, when `recompute_tps` > 0) chosen by
// the planner from the per-level losses measured above.
struct AdaptiveDemo {
  double deadline_ms = 0, rate_bits_per_second = 0, recompute_tps = 0;
};

Status deadline_demo(const runner::Model& model,
                     const std::vector<std::vector<std::int32_t>>& contexts, std::uint32_t ctx,
                     double reference_ppl, const std::filesystem::path& dir,
                     const transport::Secret& secret, const std::vector<double>& level_loss,
                     const AdaptiveDemo& a) {
  KVS_ASSIGN_OR_RETURN(LocalStream local, serve_locally(dir, secret, a.rate_bits_per_second));
  transport::StreamReceiver receiver = local.connection->receiver();
  fmt::print(
      "deadline the sender paced to {:.0f} Mbit/s; each context due in {} ms; the planner picks "
      "each\n         chunk's level from the losses above{} (La<Lb: fetched at Lb, then again at "
      "La\n         in the time left):\n",
      a.rate_bits_per_second / 1e6, a.deadline_ms,
      a.recompute_tps > 0
          ? fmt::format(", or recompute by the reference runner slowed to {} tokens/s",
                        a.recompute_tps)
          : std::string());
  double nll = 0;
  std::uint64_t predicted = 0, bytes = 0;
  std::size_t met = 0;
  for (std::size_t i = 0; i < contexts.size(); ++i) {
    KVS_ASSIGN_OR_RETURN(auto info, receiver.open(fmt::format("ctx{}", i), Clock::now() + 10s));
    KVS_ASSIGN_OR_RETURN(KvBuffer kv, KvBuffer::create(info.layout));
    transport::AdaptiveOptions ao;
    ao.deadline_s = a.deadline_ms / 1e3;
    ao.level_loss = level_loss;
    ao.seed_bytes_per_s = a.rate_bits_per_second / 8;
    if (a.recompute_tps > 0) {
      KVS_ASSIGN_OR_RETURN(ao.recompute, runner_engine(model, kv.view(), a.recompute_tps));
      ao.recompute_tokens_per_s = a.recompute_tps;
    }
    transport::StreamReceiver::FetchOptions fo;
    fo.progress_thread = true;
    transport::AdaptiveReport report;
    KVS_RETURN_IF_ERROR(transport::fetch_adaptive(receiver, info, kv.view(), fo, ao, report));
    runner::Runner r(model);
    KVS_ASSIGN_OR_RETURN(const auto score,
                         runner::score_continuation(r, kv.view(), contexts[i], ctx));
    nll += score.nll_sum;
    predicted += score.predicted;
    bytes += report.bytes;
    met += report.met;
    std::vector<std::string> choices;
    for (const transport::ChunkReport& c : report.chunks) {
      choices.push_back(c.choice.recompute() ? std::string("R")
                        : c.upgraded_from ? fmt::format("L{}<L{}", c.choice.level, *c.upgraded_from)
                                          : fmt::format("L{}", c.choice.level));
    }
    fmt::print("         ctx{}: {}  {:7.2f} ms {}  {} bytes\n", i, fmt::join(choices, " "),
               report.load_s * 1e3, report.met ? "met" : "MISSED", report.bytes);
  }
  const double ppl = std::exp(nll / static_cast<double>(predicted));
  fmt::print("         {} of {} deadlines met, {} bytes; ppl {:9.5f}  delta {:+.4f}%\n", met,
             contexts.size(), bytes, ppl, 100.0 * (ppl / reference_ppl - 1.0));
  receiver.close(Clock::now() + 1s);
  return Status::ok();
}

// Streams every context's prefix KV at every level from an in-process sender to a receiver over
// loopback UCX, scores what the receiver decoded, and prints per-level sizes, times and quality
// (context 0's chunks one by one).
Status stream_demo(const runner::Model& model,
                   const std::vector<std::vector<std::int32_t>>& contexts, std::uint32_t ctx,
                   double reference_ppl, std::int64_t chunk_tokens, const AdaptiveDemo& adaptive) {
  // The archives the sender serves, in a private folder removed at the end.
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / fmt::format("kvstream-demo-{}", ::getpid());
  std::filesystem::create_directories(dir);
  struct Cleanup {
    std::filesystem::path dir;
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup{dir};
  ArchiveOptions ao;
  ao.chunk_tokens = static_cast<std::uint32_t>(chunk_tokens);
  ao.max_level = 5;
  for (std::size_t i = 0; i < contexts.size(); ++i) {
    KVS_ASSIGN_OR_RETURN(KvBuffer kv, KvBuffer::create(model.kv_layout(ctx, DType::f32)));
    runner::Runner r(model);
    const auto prefix = std::span(contexts[i]).first(ctx);
    KVS_RETURN_IF_ERROR(runner::capture_kv(r, prefix, kv.view()));
    KVS_ASSIGN_OR_RETURN(KvBuffer half, KvBuffer::create(model.kv_layout(ctx, DType::f16)));
    KVS_RETURN_IF_ERROR(copy_kv(kv.view(), half.view()));
    KVS_RETURN_IF_ERROR(
        write_archive((dir / fmt::format("ctx{}.kva", i)).string(), half.view(), prefix, ao));
  }
  // A fresh secret for this run: both ends are in this process.
  KVS_ASSIGN_OR_RETURN(const transport::Nonce nonce, transport::make_nonce());
  KVS_ASSIGN_OR_RETURN(transport::Secret secret, transport::Secret::from_bytes(nonce));
  KVS_ASSIGN_OR_RETURN(LocalStream local, serve_locally(dir, secret, 0));
  transport::StreamReceiver receiver = local.connection->receiver();
  fmt::print(
      "stream   sender and receiver on this machine, UCX on loopback, control plane on "
      "127.0.0.1:{}\n         (authenticated), chunks of {} tokens, decoded as they land:\n",
      local.server->port(), chunk_tokens);
  std::vector<transport::StreamInfo> infos;
  for (std::size_t i = 0; i < contexts.size(); ++i) {
    KVS_ASSIGN_OR_RETURN(auto info, receiver.open(fmt::format("ctx{}", i), Clock::now() + 10s));
    infos.push_back(std::move(info));
  }
  std::vector<double> level_loss;
  for (std::uint32_t level = 0; level < infos[0].levels; ++level) {
    std::uint64_t bytes = 0;
    double nll = 0;
    std::uint64_t predicted = 0;
    std::vector<std::string> chunk_lines;
    double seconds = 0;
    for (std::size_t i = 0; i < contexts.size(); ++i) {
      const transport::StreamInfo& info = infos[i];
      KVS_ASSIGN_OR_RETURN(KvBuffer kv, KvBuffer::create(info.layout));
      transport::StreamReceiver::FetchOptions fo;
      fo.level = level;
      const auto began = Clock::now();
      KVS_RETURN_IF_ERROR(receiver.fetch(info, kv.view(), fo, [&](std::uint32_t c) {
        bytes += info.size(c, level);
        if (i == 0) {
          chunk_lines.push_back(
              fmt::format("{} B {:.2f} ms", info.size(c, level),
                          std::chrono::duration<double, std::milli>(Clock::now() - began).count()));
        }
      }));
      seconds += std::chrono::duration<double>(Clock::now() - began).count();
      runner::Runner r(model);
      KVS_ASSIGN_OR_RETURN(const auto score,
                           runner::score_continuation(r, kv.view(), contexts[i], ctx));
      nll += score.nll_sum;
      predicted += score.predicted;
    }
    const double ppl = std::exp(nll / static_cast<double>(predicted));
    const double values =
        static_cast<double>(infos[0].layout.total_values()) * static_cast<double>(contexts.size());
    fmt::print(
        "         level {}  {:6.2f} bits/value  {:8} bytes  {:7.2f} ms  ppl {:9.5f}  "
        "delta {:+.4f}%\n",
        level, 8.0 * static_cast<double>(bytes) / values, bytes, 1e3 * seconds, ppl,
        100.0 * (ppl / reference_ppl - 1.0));
    fmt::print("                  context 0's chunks: {}\n", fmt::join(chunk_lines, ", "));
    level_loss.push_back(std::max(0.0, 100.0 * (ppl / reference_ppl - 1.0)));
  }
  receiver.close(Clock::now() + 1s);
  // This sender is done before the paced one starts: the connection, then the server.
  local.connection.reset();
  local.server->stop();
  if (adaptive.deadline_ms > 0) {
    KVS_RETURN_IF_ERROR(
        deadline_demo(model, contexts, ctx, reference_ppl, dir, secret, level_loss, adaptive));
  }
  return Status::ok();
}

}  // namespace

int run_demo(std::span<const std::string_view> args) {
  std::string model_path = (runner::models_dir() / "stories260K.bin").string();
  std::int64_t contexts_n = 8, length = 512, ctx = 384, seed = 1, chunk = 32;
  std::int64_t threads = runner::default_threads();
  double deadline_ms = 60, recompute_tps = 0;
  std::string rate = "20mbit";
  ArgParser p("kvstream demo",
              "Sample contexts with the reference model, capture the KV cache of their first C\n"
              "tokens, and score the continuation with that cache held in fp32, fp16, bf16 and\n"
              "in a paged layout.");
  p.option("--model", "PATH", "llama2.c checkpoint ($KVSTREAM_MODELS/stories260K.bin)", &model_path)
      .option("--contexts", "N", "contexts to sample", &contexts_n, 1, 4096)
      .option("--length", "T", "tokens per context, BOS included", &length, 3, 1 << 20)
      .option("--ctx", "C", "prefix whose KV cache is captured", &ctx, 1, 1 << 20)
      .option("--seed", "S", "random seed", &seed, 0, INT64_MAX)
      .option("--threads", "N", "worker threads", &threads, 1, 256)
      .option("--chunk", "T", "tokens per streamed chunk", &chunk, 1, 65536)
      .option("--deadline", "MS",
              "then fetch each context again, due in MS ms, each chunk's level chosen by the "
              "planner (0: skip)",
              &deadline_ms, 0, 1e9)
      .option("--rate", "RATE", "with --deadline: pace the sender (e.g. 20mbit)", &rate)
      .option("--recompute-tps", "N",
              "with --deadline: the reference runner may recompute chunks, slowed to N tokens/s",
              &recompute_tps, 0, 1e12);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  AdaptiveDemo adaptive{deadline_ms, 0, recompute_tps};
  if (auto r = transport::parse_rate(rate); r) {
    adaptive.rate_bits_per_second = *r;
  } else {
    fmt::print(stderr, "{}: error: {} (see --help)\n", p.command(), r.error().message());
    return kExitUsage;
  }
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
  if (Status s = stream_demo(*model, contexts, ctx32, reference, chunk, adaptive); !s.is_ok()) {
    return report_failure(p.command(), s);
  }
  return kExitOk;
}

}  // namespace kvstream::cli
