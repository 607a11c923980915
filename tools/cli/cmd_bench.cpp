// `kvstream bench`: long benchmarks, kept apart from the tests. `bench adapt` runs the
// scheduler's policies against bandwidth traces and deadlines.
#include <fmt/format.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/adapt_bench.hpp"
#include "cli/adaptive_cli.hpp"
#include "cli/common.hpp"
#include "runner/model.hpp"
#include "runner/parallel.hpp"
#include "simulator.hpp"

namespace kvstream::cli {

namespace {

std::atomic<bool> g_stop{false};  // set by SIGINT or SIGTERM during --real

Expected<double> positive_deadline(std::string_view s) {
  KVS_ASSIGN_OR_RETURN(const double v, parse_number(s, "deadline"));
  if (!(v > 0)) return Status(Errc::invalid_argument, fmt::format("'{}' is not positive", s));
  return v;
}

// Every (trace, deadline, run, policy) in the simulator, with the real estimator.
Expected<std::vector<RunRow>> simulate_all(const AdaptSetup& setup, const BenchPlan& plan,
                                           QualityCache& quality) {
  return sweep(setup, plan, quality, "sim",
               [&](const scheduler::Trace& trace, const PolicySpec& p, RunRow& row,
                   std::vector<scheduler::Choice>& choices) {
                 scheduler::SimSetup s;
                 s.ctx = &setup.costs(p.carrier);
                 s.trace = &trace;
                 s.deadline = row.deadline_s;
                 s.request_latency = plan.latency_s;
                 s.window = plan.window;
                 s.backlog = plan.backlog;
                 s.decode_bytes_per_s = plan.decode ? setup.decode_rate(p.carrier) : 0;
                 if (plan.decode && p.carrier == Carrier::levels)
                   s.level_decode_bytes_per_s = setup.level_decode_bytes_per_s;
                 s.recompute_tokens_per_s = plan.recompute_tps;
                 s.seed_bytes_per_s = plan.seed_gbps * scheduler::kBytesPerGbit;
                 const auto policy = p.make();
                 const scheduler::RunResult r = scheduler::simulate(s, *policy);
                 for (const auto& c : r.chunks)
                   choices.push_back(c.choice);
                 row.met = r.met;
                 row.load_s = r.load_s;
                 row.bytes = r.bytes;
                 return Status::ok();
               });
}

int replot(const std::string& command, const std::string& csv, const std::string& out_dir) {
  auto text = read_file(csv);
  if (!text) return report_failure(command, text.error());
  auto rows = read_rows_csv(*text);
  if (!rows) return report_failure(command, rows.error().with_context(csv));
  const std::string mode = rows->front().mode;
  std::filesystem::create_directories(out_dir);
  const std::string summary = summarize(*rows), table = policy_table(*rows);
  std::ofstream(std::filesystem::path(out_dir) / fmt::format("summary_{}.txt", mode))
      << table << summary;
  write_plots(*rows, out_dir, mode);
  fmt::print("{}{}", table, summary);
  return kExitOk;
}

int bench_adapt(std::span<const std::string_view> args) {
  std::string model_path = (runner::models_dir() / "stories260K.bin").string();
  std::string traces_text = "const:0.2,const:1,const:5,step:5:0.5:0.04,uniform:0.1:10";
  std::string deadlines_text = "0.06,0.1,0.15,0.3,0.6,1.2";
  std::string policies_text = "planner,cachegen,fp16,int8,L0,L1,L2,L3,L4,L5,recompute";
  std::string out_dir = "adapt-results", shape_text = "32x8x128";
  std::int64_t contexts = 48, ctx = 384, chunk = 32, runs = 5, window = 2, backlog = 0,
               threads = runner::default_threads(), decode_threads = 1;
  double recompute_tps = 500, seed_gbps = 10;
  std::string from_csv;
  bool sim = false, real = false, no_decode = false, verbatim = false;
  ArgParser p("kvstream bench adapt",
              "Runs the scheduler's policies against bandwidth traces and deadlines and scores\n"
              "each run: deadline met, load time, bytes sent, and quality (ΔPPL, top-1, KL) of\n"
              "the reference model's contexts with each chunk as the run chose it. The stream\n"
              "has a large model's KV shape (--shape; fp16) filled with the reference model's\n"
              "real KV, so that its bytes and times are a large model's; its chunk k stands for\n"
              "the tokens of chunk k of every scored context. Recompute is a stand-in taking\n"
              "--recompute-tps (every report says so). Writes results_{sim,real}.csv,\n"
              "summary_*.txt and SVG plots into --out.");
  p.option("--model", "PATH", "reference checkpoint", &model_path)
      .option("--traces", "LIST", "const:G, step:HI:LO[:AT], uniform:LO:HI, file:PATH",
              &traces_text)
      .option("--deadlines", "LIST", "seconds from the first request", &deadlines_text)
      .option("--policies", "LIST", "planner, cachegen, fp16, int8, L<k>, recompute",
              &policies_text)
      .option("--contexts", "N", "contexts scored for quality", &contexts, 1, 4096)
      .option("--ctx", "C", "tokens in the context", &ctx, 8, 4096)
      .option("--chunk", "T", "tokens per chunk", &chunk, 1, 4096)
      .option("--shape", "LxHxD", "the stream's layers x KV heads x head_dim (fp16)", &shape_text)
      .option("--runs", "N", "runs (seeds) of varying traces", &runs, 1, 1000)
      .option("--window", "N", "chunks in flight", &window, 1, 64)
      .option("--backlog", "N",
              "landed chunks that may wait for the decoder while the window asks for more",
              &backlog, 0, 64)
      .option("--recompute-tps", "N", "the stand-in engine's prefill rate (0: no recompute)",
              &recompute_tps, 0, 1e9)
      .option("--seed-gbps", "G", "the estimator's prior, as UCX's estimate (simulator)",
              &seed_gbps, 0, 1e6)
      .option("--from-csv", "FILE",
              "summarize and plot a finished sweep's results CSV again (nothing is run)", &from_csv)
      .option("--threads", "N", "threads for quality scoring", &threads, 1, 256)
      .option("--decode-threads", "N",
              "threads that decode each chunk: the real runs' fetch, and the decode speed "
              "measured for the simulator and the planner's start",
              &decode_threads, 1, 256)
      .option("--out", "DIR", "folder for results.csv and the plots", &out_dir)
      .flag("--no-decode",
            "chunks land and are checked but not decoded (as a GPU decoder would hide it; "
            "fp16 and int8 are never decoded)",
            &no_decode)
      .flag("--verbatim-level0",
            "the stream's level 0 as verbatim values (a copy to decode; codec encode's flag)",
            &verbatim)
      .flag("--sim", "run the simulator with the real estimator", &sim)
      .flag("--real",
            "run on a tc-shaped veth link between two network namespaces (root; without it "
            "the command exits 77, ctest's skip code)",
            &real);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  if (!from_csv.empty()) return replot(p.command(), from_csv, out_dir);
  if (sim == real) {
    return report_failure(p.command(),
                          Status(Errc::invalid_argument, "say --sim or --real (one of them)"));
  }
  if (real && ::geteuid() != 0) {
    fmt::print(stderr,
               "{}: skipped: --real makes network namespaces and shapes links with tc, "
               "which needs root\n",
               p.command());
    return kExitSkipped;
  }
  BenchPlan plan;
  auto traces = parse_list<TraceSpec>(traces_text, "trace", parse_trace_spec);
  if (!traces) return report_failure(p.command(), traces.error());
  plan.traces = std::move(*traces);
  auto deadlines = parse_list<double>(deadlines_text, "deadline", positive_deadline);
  if (!deadlines) return report_failure(p.command(), deadlines.error());
  plan.deadlines = std::move(*deadlines);
  auto policies = parse_list<PolicySpec>(policies_text, "policy", parse_policy_spec);
  if (!policies) return report_failure(p.command(), policies.error());
  plan.policies = std::move(*policies);
  plan.runs = static_cast<std::uint32_t>(runs);
  plan.window = static_cast<std::uint32_t>(window);
  plan.backlog = static_cast<std::uint32_t>(backlog);
  plan.recompute_tps = recompute_tps;
  plan.decode = !no_decode;
  plan.decode_threads = static_cast<unsigned>(decode_threads);
  plan.seed_gbps = seed_gbps;

  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) {
    return report_failure(p.command(), Status(Errc::io_error, fmt::format("cannot create '{}': {}",
                                                                          out_dir, ec.message())));
  }
  AdaptSetupOptions so;
  so.model_path = model_path;
  so.contexts = static_cast<std::uint32_t>(contexts);
  so.ctx = static_cast<std::uint32_t>(ctx);
  so.chunk = static_cast<std::uint32_t>(chunk);
  so.threads = static_cast<unsigned>(threads);
  so.decode_threads = static_cast<unsigned>(decode_threads);
  so.archive_path = (std::filesystem::path(out_dir) / "stream.kva").string();
  so.verbatim_level0 = verbatim;
  {
    unsigned layers = 0, heads = 0, dim = 0;
    char x1 = 0, x2 = 0;
    std::istringstream in(shape_text);
    if (!(in >> layers >> x1 >> heads >> x2 >> dim) || x1 != 'x' || x2 != 'x' || !in.eof() ||
        layers == 0 || heads == 0 || dim == 0 || layers > 1024 || heads * dim > 65536) {
      return report_failure(p.command(),
                            Status(Errc::invalid_argument,
                                   fmt::format("--shape '{}': want LAYERSxHEADSxDIM", shape_text)));
    }
    so.shape = KvLayout{layers, heads, dim, DType::f16, 0};
  }
  auto setup = prepare_adapt(so);
  if (!setup) return report_failure(p.command(), setup.error());
  const AdaptSetup& s = **setup;
  for (const PolicySpec& ps : plan.policies) {
    if (ps.carrier == Carrier::levels && ps.name[0] == 'L' &&
        std::stoul(ps.name.substr(1)) >= s.levels.levels()) {
      return report_failure(p.command(), Status(Errc::invalid_argument,
                                                fmt::format("policy {}: the stream has levels "
                                                            "0..{}",
                                                            ps.name, s.levels.levels() - 1)));
    }
  }
  std::uint64_t fp16_bytes = 0;
  for (const auto& c : s.fp16.chunks)
    fp16_bytes += c.level_bytes[0];
  fmt::print(
      "stream: {} chunks of {} tokens, 32x8x128 fp16 ({} bytes); decode (one core, GB/s "
      "of fp16): levels {:.2f}, int8 {:.2f}, fp16 copy {:.2f}; recompute: stand-in at {} "
      "tokens/s\n",
      s.levels.chunk_count(), chunk, fp16_bytes, s.decode_bytes_per_s / 1e9,
      s.int8_decode_bytes_per_s / 1e9, s.fp16_decode_bytes_per_s / 1e9, recompute_tps);
  if (no_decode) fmt::print("decode: off (chunks are checked, not decoded)\n");
  fmt::print("quality: {} contexts of {}, ctx {}, {} tokens scored\n", s.meter->contexts(),
             std::filesystem::path(model_path).filename().string(), ctx,
             s.level_quality[0].positions);
  for (std::uint32_t l = 0; l < s.levels.levels(); ++l) {
    std::uint64_t bytes = 0;
    for (const auto& c : s.levels.chunks)
      bytes += c.level_bytes[l];
    fmt::print("  L{}: {:.3f} of fp16, ΔPPL {:+.3f}%, decode {:.2f} GB/s{}\n", l,
               double(bytes) / double(fp16_bytes), s.level_quality[l].delta_ppl_pct,
               s.level_decode_bytes_per_s[l] / 1e9,
               l == 0 && verbatim ? " (verbatim: a copy)" : "");
  }
  std::uint64_t int8_bytes = 0;
  for (const auto& c : s.int8.chunks)
    int8_bytes += c.level_bytes[0];
  fmt::print("  int8: {:.3f} of fp16, ΔPPL {:+.3f}%\n", double(int8_bytes) / double(fp16_bytes),
             s.int8_quality.delta_ppl_pct);

  QualityCache quality(s);
  const std::string mode = sim ? "sim" : "real";
  Expected<std::vector<RunRow>> rows = std::vector<RunRow>{};
  if (sim) {
    rows = simulate_all(s, plan, quality);
  } else {
    // Interrupted, the bench stops after the run in progress; the link and the server go with
    // their owners.
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_stop = true; };
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    rows = run_real(s, plan, quality, out_dir, g_stop);
    if (!rows && rows.error().code() == Errc::unsupported) {
      fmt::print(stderr, "{}: skipped: {}\n", p.command(), rows.error().message());
      return kExitSkipped;
    }
  }
  if (!rows) return report_failure(p.command(), rows.error());
  const std::string summary = summarize(*rows);
  const std::string table = policy_table(*rows);
  const std::filesystem::path dir(out_dir);
  std::ofstream(dir / fmt::format("results_{}.csv", mode)) << rows_csv(*rows);
  std::ofstream(dir / fmt::format("summary_{}.txt", mode)) << table << summary;
  write_plots(*rows, out_dir, mode);
  fmt::print("{}{}wrote {}/results_{}.csv, summary_{}.txt, load_time_{}_*.svg, quality_{}_*.svg\n",
             table, summary, out_dir, mode, mode, mode, mode);
  return kExitOk;
}

}  // namespace

int run_bench(std::span<const std::string_view> args) {
  static constexpr Subcommand kSub[] = {
      {"adapt", "policies against bandwidth traces and deadlines: deadline, load time, quality",
       bench_adapt},
  };
  return dispatch("kvstream bench", kSub, args);
}

}  // namespace kvstream::cli
