// `kvstream serve` and `kvstream fetch`: store-mode streaming of context archives over UCX, with
// the authenticated control plane (transport/endpoints.hpp).
#include <fmt/format.h>
#include <signal.h>

#include <chrono>

#include "cli/common.hpp"
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
  std::int64_t idle_s = 60;
  ArgParser p("kvstream serve",
              "Serves every context archive (<id>.kva) in a folder to authenticated receivers\n"
              "until interrupted (SIGINT or SIGTERM). The secret comes from --secret-file or\n"
              "$KVSTREAM_SECRET.");
  p.option("--dir", "DIR", "folder of context archives", &dir, true)
      .option("--listen", "ADDR:PORT", "control-plane address (port 0: any free port)", &listen)
      .option("--secret-file", "FILE", "the shared secret (mode 600)", &secret_file)
      .option("--idle", "S", "seconds a silent session is kept", &idle_s, 1, 86400)
      .option("--rate", "RATE", "pace each session's chunks, e.g. 2gbit or 500mbit", &rate);
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
  std::int64_t level = 0, window = 4, timeout_ms = 5000;
  ArgParser p("kvstream fetch",
              "Fetches a context's KV cache at one level from `kvstream serve`, decoding each\n"
              "chunk as it lands (every chunk's checksums verified), and writes it as raw values\n"
              "laid out [layer][K|V][token][head][dim] (atomically).");
  p.option("--server", "ADDR:PORT", "the server's control-plane address", &server_text, true)
      .option("--context", "ID", "context id (its archive's name without .kva)", &context, true)
      .option("--level", "L", "level to fetch", &level, 0, kMaxLevel)
      .option("--out", "FILE", "raw KV file to write", &out_path, true)
      .option("--window", "N", "chunks in flight at most", &window, 1, 64)
      .option("--timeout-ms", "MS", "how long a chunk may take to land", &timeout_ms, 1, 3600000)
      .option("--secret-file", "FILE", "the shared secret (mode 600)", &secret_file);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  auto where = parse_host_port(server_text);
  if (!where) return usage_error(p.command(), where.error());
  auto secret = load_secret(secret_file);
  if (!secret) return report_failure(p.command(), secret.error());
  const auto start = Clock::now();
  auto connection = connect_stream(where->first, where->second, *secret, Clock::now() + 10s);
  if (!connection) return report_failure(p.command(), connection.error());
  StreamReceiver receiver = (*connection)->receiver();
  auto info = receiver.open(context, Clock::now() + 10s);
  if (!info) return report_failure(p.command(), info.error());
  auto kv = KvBuffer::create(info->layout);
  if (!kv) return report_failure(p.command(), kv.error());
  StreamReceiver::FetchOptions o;
  o.level = static_cast<std::uint32_t>(level);
  o.window = static_cast<std::uint32_t>(window);
  o.chunk_timeout = std::chrono::milliseconds(timeout_ms);
  std::uint64_t bytes = 0;
  const Status s = receiver.fetch(*info, kv->view(), o, [&](std::uint32_t chunk) {
    bytes += info->size(chunk, o.level);
    fmt::print(stderr, "kvstream fetch: chunk {}/{} at level {}: {} bytes, {:.1f} ms\n", chunk + 1,
               info->chunk_count, level, info->size(chunk, o.level),
               std::chrono::duration<double, std::milli>(Clock::now() - start).count());
  });
  receiver.close(Clock::now() + 1s);
  if (!s.is_ok()) return report_failure(p.command(), s);
  if (Status w = write_file_atomically(out_path, kv->bytes()); !w.is_ok()) {
    return report_failure(p.command(), w);
  }
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  fmt::print(
      "fetched {}: {} chunks at level {}, {} bytes in {:.1f} ms; wrote {} ({} bytes of {})\n",
      context, info->chunk_count, level, bytes, ms, out_path, kv->layout().total_bytes(),
      dtype_name(kv->layout().dtype));
  return kExitOk;
}

}  // namespace kvstream::cli
