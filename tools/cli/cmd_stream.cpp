// `kvstream serve` and `kvstream fetch`: store-mode streaming of context archives over UCX, with
// the authenticated control plane (transport/endpoints.hpp).
#include <fmt/format.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "cli/adaptive_cli.hpp"
#include "cli/common.hpp"
#include "cli/fetch_state.hpp"
#include "endpoints.hpp"
#include "kvstream/codec.hpp"

namespace kvstream::cli {

using namespace kvstream::transport;
using namespace std::chrono_literals;

namespace {

// A bad option value found after parsing: one line, exit 2, as the parser's own errors.
int usage_error(std::string_view command, const Status& s) {
  fmt::print(stderr, "{}: error: {}\n", command, s.message());
  return kExitUsage;
}

}  // namespace

int run_serve(std::span<const std::string_view> args) {
  std::string dir, listen = "0.0.0.0:13338", secret_file, rate;
  std::int64_t idle_s = 60, keep_mib = 512;
  ArgParser p("kvstream serve",
              "Serves every context archive (<id>.kva) in a folder to authenticated receivers\n"
              "until interrupted (SIGINT or SIGTERM). The secret comes from --secret-file or\n"
              "$KVSTREAM_SECRET.");
  p.option("--dir", "DIR", "folder of context archives", &dir, true)
      .option("--listen", "ADDR:PORT", "control-plane address (port 0: any free port)", &listen)
      .option("--secret-file", "FILE", "the shared secret (mode 600)", &secret_file)
      .option("--idle", "S", "seconds a silent session is kept", &idle_s, 1, 86400)
      .option("--rate", "RATE", "pace each session's chunks, e.g. 2gbit or 500mbit", &rate)
      .option("--keep-buffers", "MIB",
              "free chunk buffers kept for later chunks and sessions (fresh ones cost page "
              "faults while no send moves)",
              &keep_mib, 0, 1 << 20);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  auto where = parse_host_port(listen);
  if (!where) return usage_error(p.command(), where.error());
  double bits_per_second = 0;
  if (!rate.empty()) {
    auto r = parse_rate(rate);
    if (!r) return usage_error(p.command(), r.error());
    bits_per_second = *r;
  }
  auto secret = load_secret(secret_file);
  if (!secret) return report_failure(p.command(), secret.error());
  if (!std::filesystem::is_directory(dir)) {
    return report_failure(p.command(), Status(Errc::not_found, fmt::format("no folder '{}'", dir)));
  }
  // The signals are waited for below, not delivered: block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ServerOptions o;
  o.dir = dir;
  o.host = where->first;
  o.port = where->second;
  o.idle = std::chrono::seconds(idle_s);
  o.rate_bits_per_second = bits_per_second;
  o.keep_buffer_bytes = static_cast<std::size_t>(keep_mib) << 20;
  o.log = [](const std::string& line) { fmt::print(stderr, "kvstream serve: {}\n", line); };
  auto server = StreamServer::start(o, std::move(*secret));
  if (!server) return report_failure(p.command(), server.error());
  fmt::print(stderr, "kvstream serve: serving {} on {}:{}\n", dir, o.host, (*server)->port());
  int sig = 0;
  sigwait(&signals, &sig);
  fmt::print(stderr, "kvstream serve: stopping ({})\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
  (*server)->stop();
  return kExitOk;
}

int run_fetch(std::span<const std::string_view> args) {
  std::string server_text, context, out_path, secret_file;
  std::int64_t level = 0, window = 4, backlog = 0, timeout_ms = 5000, decode_threads = 1;
  bool resume = false, progress_thread = false;
  AdaptiveArgs a;  // the options of --deadline are parsed straight into it
  ArgParser p("kvstream fetch",
              "Fetches a context's KV cache at one level from `kvstream serve`, decoding each\n"
              "chunk as it lands (every chunk's checksums verified), and writes it as raw values\n"
              "laid out [layer][K|V][token][head][dim] (atomically). A fetch that breaks off\n"
              "keeps the chunks that landed in OUT.partial; --resume then fetches the rest.\n"
              "\n"
              "With --deadline, a policy picks each chunk's level before asking for it (or has\n"
              "the engine recompute it from its tokens) so that the whole context is ready by\n"
              "the deadline with the least expected loss, from the goodput measured so far.\n"
              "The planner then spends the time left fetching chunks again at better levels.\n"
              "A deadline-driven fetch that breaks off keeps no partial file.");
  p.option("--server", "ADDR:PORT", "the server's control-plane address", &server_text, true)
      .option("--context", "ID", "context id (its archive's name without .kva)", &context, true)
      .option("--level", "L", "level to fetch", &level, 0, kMaxLevel)
      .option("--out", "FILE", "raw KV file to write", &out_path, true)
      .option("--window", "N", "chunks in flight at most", &window, 1, 64)
      .option("--backlog", "N",
              "landed chunks that may wait for the decoder while the window asks for more",
              &backlog, 0, 64)
      .option("--timeout-ms", "MS", "how long a chunk may take to land", &timeout_ms, 1, 3600000)
      .option("--secret-file", "FILE", "the shared secret (mode 600)", &secret_file)
      .flag("--resume", "fetch only the chunks OUT.partial lacks", &resume)
      .flag("--progress-thread", "drive UCX from a second thread while this one decodes",
            &progress_thread)
      .option("--decode-threads", "N", "threads that decode each chunk (this one among them)",
              &decode_threads, 1, 256)
      .option("--deadline", "MS", "pick each chunk's level to have everything by MS ms",
              &a.deadline_ms, 0, 1e9)
      .option("--policy", "P", "with --deadline: planner, cachegen, recompute or L<level>",
              &a.policy)
      .option("--level-loss", "L0,L1,..",
              "expected loss of each level (e.g. ΔPPL % from `codec eval`; default: the level)",
              &a.losses)
      .option("--model", "PATH", "recompute chunks with this checkpoint's reference runner",
              &a.model_path)
      .option("--recompute-tps", "N",
              "the engine's prefill rate to plan with; slows --model's runner to at most this",
              &a.recompute_tps, 0, 1e12)
      .flag("--standin-engine",
            "recompute by a stand-in that takes --recompute-tps and writes no KV (benchmarks)",
            &a.standin)
      .option("--initial-gbps", "G", "link estimate before a chunk lands (default: UCX's)",
              &a.initial_gbps, 0, 1e6)
      .option("--decode-gbps", "G|G0,G1,..",
              "decode speed (GB/s of fp16) to plan with until it is measured, for every level "
              "or per level (default: free)",
              &a.decode_gbps)
      .option("--json", "FILE", "write the per-chunk decisions as JSON", &a.json_path)
      .flag("--no-decode",
            "check each chunk but do not decode it (transport measurements; OUT gets zeros)",
            &a.no_decode);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  auto where = parse_host_port(server_text);
  if (!where) return usage_error(p.command(), where.error());
  if (a.deadline_ms > 0) {
    if (resume) {
      return usage_error(p.command(),
                         Status(Errc::invalid_argument, "--resume does not go with --deadline"));
    }
    a.server = *where;
    a.context = context;
    a.out_path = out_path;
    a.secret_file = secret_file;
    a.window = window;
    a.backlog = backlog;
    a.timeout_ms = timeout_ms;
    a.progress_thread = progress_thread;
    a.decode_threads = decode_threads;
    return run_adaptive_fetch(p.command(), a);
  }
  for (const bool given : {!a.model_path.empty(), !a.losses.empty(), !a.json_path.empty(),
                           a.standin, a.recompute_tps > 0, a.initial_gbps > 0,
                           !a.decode_gbps.empty(), a.no_decode, a.policy != "planner"}) {
    if (given) {
      return usage_error(p.command(),
                         Status(Errc::invalid_argument,
                                "--policy, --level-loss, --model, --recompute-tps, "
                                "--standin-engine, --initial-gbps, --decode-gbps, --json and "
                                "--no-decode need --deadline"));
    }
  }
  auto secret = load_secret(secret_file);
  if (!secret) return report_failure(p.command(), secret.error());
  const auto start = Clock::now();
  auto connection = connect_stream(where->first, where->second, *secret, Clock::now() + 10s);
  if (!connection) return report_failure(p.command(), connection.error());
  StreamReceiver receiver = (*connection)->receiver();
  auto info = receiver.open(context, Clock::now() + 10s);
  if (!info) return report_failure(p.command(), info.error());
  const auto lvl = static_cast<std::uint32_t>(level);
  if (lvl >= info->levels) {
    return report_failure(
        p.command(), Status(Errc::invalid_argument, fmt::format("level {}: '{}' has levels 0..{}",
                                                                lvl, context, info->levels - 1)));
  }
  const std::string partial = partial_path(out_path);
  FetchState state;
  if (resume) {
    auto loaded = load_fetch_state(partial);
    if (!loaded && loaded.error().code() != Errc::not_found) {
      return report_failure(p.command(), loaded.error());
    }
    if (loaded) {
      if (Status s = check_resumable(*loaded, context, lvl, *info); !s.is_ok()) {
        return report_failure(p.command(), s);
      }
      state = std::move(*loaded);
    } else {
      fmt::print(stderr, "kvstream fetch: no {} to resume from; fetching every chunk\n", partial);
    }
  }
  if (state.kv.empty()) {
    state =
        fresh_fetch_state(context, lvl, *info, std::vector<std::byte>(info->layout.total_bytes()));
  }
  auto kv = KvView::contiguous(state.kv.data(), state.kv.size(), info->layout);
  if (!kv) return report_failure(p.command(), kv.error());
  std::vector<StreamReceiver::Want> wants;
  for (std::uint32_t c = 0; c < info->chunk_count; ++c)
    if (!state.landed[c]) wants.push_back({c, lvl});
  if (resume && wants.size() < info->chunk_count) {
    fmt::print(stderr, "kvstream fetch: resuming: {} of {} chunks already here\n",
               info->chunk_count - wants.size(), info->chunk_count);
  }
  StreamReceiver::FetchOptions o;
  o.window = static_cast<std::uint32_t>(window);
  o.backlog = static_cast<std::uint32_t>(backlog);
  o.chunk_timeout = std::chrono::milliseconds(timeout_ms);
  o.progress_thread = progress_thread;
  o.decode_threads = static_cast<unsigned>(decode_threads);
  std::uint64_t bytes = 0;
  const Status s = receiver.fetch_chunks(*info, *kv, wants, o, [&](std::size_t i) {
    const std::uint32_t chunk = wants[i].chunk;
    state.landed[chunk] = 1;
    bytes += info->size(chunk, lvl);
    fmt::print(stderr, "kvstream fetch: chunk {}/{} at level {}: {} bytes, {:.1f} ms\n", chunk + 1,
               info->chunk_count, lvl, info->size(chunk, lvl),
               std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  });
  receiver.close(Clock::now() + 1s);
  if (!s.is_ok()) {
    const auto kept = std::count(state.landed.begin(), state.landed.end(), 1);
    if (kept > 0) {
      if (Status w = save_fetch_state(partial, state); w.is_ok()) {
        fmt::print(stderr,
                   "kvstream fetch: kept {} of {} chunks in {}; fetch again with --resume\n", kept,
                   info->chunk_count, partial);
      } else {
        fmt::print(stderr, "kvstream fetch: could not keep the landed chunks: {}\n", w.message());
      }
    }
    return report_failure(p.command(), s);
  }
  if (Status w = write_file_atomically(out_path, state.kv); !w.is_ok()) {
    return report_failure(p.command(), w);
  }
  std::error_code ignored;
  std::filesystem::remove(partial, ignored);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  fmt::print(
      "fetched {}: {} chunks at level {}, {} bytes in {:.1f} ms; wrote {} ({} bytes of {})\n",
      context, wants.size(), lvl, bytes, ms, out_path, info->layout.total_bytes(),
      dtype_name(info->layout.dtype));
  return kExitOk;
}

}  // namespace kvstream::cli
