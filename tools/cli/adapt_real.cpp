// `kvstream bench adapt --real`: the policies on a real, shaped link. Each run sets the link to
// the trace's first rate, lets its queue drain, starts the client, and from the moment the
// client starts streaming changes the rate as the trace says.
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "cli/adapt_bench.hpp"
#include "cli/child_process.hpp"
#include "cli/common.hpp"
#include "cli/shaped_link.hpp"

namespace kvstream::cli {

using scheduler::Choice;
using namespace std::chrono_literals;

namespace {

// A log or output file of a child, or nothing when it wrote none.
std::string slurp(const std::filesystem::path& p) {
  return read_file(p.string()).value_or(std::string());
}

// Plays a trace's rate changes on the link from start() until stop().
class TracePlayer {
 public:
  TracePlayer(ShapedLink& link, const scheduler::Trace& trace) : link_(link), trace_(trace) {}
  ~TracePlayer() { (void)stop(); }
  void start() {
    thread_ = std::thread([this, t0 = std::chrono::steady_clock::now()] {
      const auto& segments = trace_.segments();
      for (std::size_t i = 1; i < segments.size(); ++i) {
        std::unique_lock lock(mu_);
        const auto at = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(segments[i].start));
        if (cv_.wait_until(lock, at, [&] { return stopped_; })) return;
        lock.unlock();
        const Status s = link_.set_rate(segments[i].bytes_per_s / scheduler::kBytesPerGbit);
        if (!s.is_ok()) {
          std::lock_guard guard(mu_);
          failure_ = s;
          return;
        }
      }
    });
  }
  Status stop() {
    {
      std::lock_guard lock(mu_);
      stopped_ = true;
      cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    return failure_;
  }

 private:
  ShapedLink& link_;
  const scheduler::Trace& trace_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopped_ = false;
  Status failure_ = Status::ok();
  std::thread thread_;
};

// The few fields of `kvstream fetch --json` the bench reads.
struct FetchJson {
  bool met = false;
  double load_s = 0;
  std::uint64_t bytes = 0;
  std::vector<Choice> choices;
  std::vector<double> decode_gbps;  // as the fetch reported it (empty: none, or one unreadable)
};

Expected<FetchJson> read_fetch_json(const std::string& text) {
  FetchJson f;
  const auto value_after = [&](std::string_view key, std::size_t from = 0) -> std::string {
    const std::size_t at = text.find(key, from);
    if (at == std::string::npos) return {};
    const std::size_t b = at + key.size();
    return text.substr(b, text.find_first_of(",}", b) - b);
  };
  const std::string met = value_after("\"met\": "), load = value_after("\"load_ms\": "),
                    bytes = value_after("\"bytes\": ");
  if (met.empty() || load.empty() || bytes.empty())
    return Status(Errc::corrupt_data, "the fetch's JSON lacks met, load_ms or bytes");
  f.met = met == "true";
  f.load_s = std::stod(load) / 1e3;
  f.bytes = std::stoull(bytes);
  if (const std::size_t at = text.find("\"decode_gbps\": ["); at != std::string::npos) {
    const std::size_t b = at + 16;
    std::string list = text.substr(b, text.find(']', b) - b);
    std::erase(list, ' ');
    if (auto v = parse_numbers(list, "decode speed")) f.decode_gbps = std::move(*v);
  }
  for (std::size_t at = 0; (at = text.find("\"choice\": \"", at)) != std::string::npos;) {
    at += 11;
    const std::string c = text.substr(at, text.find('"', at) - at);
    f.choices.push_back(c == "recompute"
                            ? Choice::recomputed()
                            : Choice::fetch(static_cast<std::uint32_t>(std::stoul(c.substr(1)))));
  }
  return f;
}

Expected<std::string> write_secret(const std::filesystem::path& path) {
  std::random_device rd;
  std::string secret;
  for (int i = 0; i < 32; ++i)
    secret += "0123456789abcdef"[rd() % 16];
  {
    std::ofstream out(path);
    out << secret << '\n';
    if (!out) return Status(Errc::io_error, fmt::format("cannot write '{}'", path.string()));
  }
  ::chmod(path.c_str(), 0600);
  return path.string();
}

}  // namespace

Expected<std::vector<RunRow>> run_real(const AdaptSetup& setup, const BenchPlan& plan,
                                       QualityCache& quality, const std::string& dir,
                                       const std::atomic<bool>& stop) {
  const std::filesystem::path out(dir);
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  KVS_ASSIGN_OR_RETURN(const std::string secret, write_secret(out / "secret"));
  KVS_ASSIGN_OR_RETURN(auto link, ShapedLink::create());
  KVS_RETURN_IF_ERROR(link->set_rate(
      plan.traces.front().numbers.empty() ? 1.0 : plan.traces.front().numbers.front()));

  // The server, in its namespace, serving the stream's archive (and its log).
  int port = 0;
  std::filesystem::remove(out / "serve.log");
  KVS_ASSIGN_OR_RETURN(
      Child server,
      Child::spawn(link->in_server({self, "serve", "--dir", dir, "--listen",
                                    link->server_address() + ":0", "--secret-file", secret}),
                   "", (out / "serve.log").string(), [&](const std::string& line) {
                     const auto at = line.find(link->server_address() + ":");
                     if (at != std::string::npos)
                       port = std::atoi(line.c_str() + at + link->server_address().size() + 1);
                   }));
  for (int i = 0; i < 500 && port == 0; ++i) {
    if (!server.pump()) break;
    std::this_thread::sleep_for(10ms);
  }
  if (port == 0) {
    return Status(Errc::io_error,
                  fmt::format("kvstream serve did not start: {}", slurp(out / "serve.log")));
  }
  const std::string where = fmt::format("{}:{}", link->server_address(), port);
  std::string losses, decode_gbps;
  for (double l : setup.levels.level_loss)
    losses += fmt::format("{}{:.6f}", losses.empty() ? "" : ",", l);
  for (double g : setup.level_decode_bytes_per_s)
    decode_gbps += fmt::format("{}{}", decode_gbps.empty() ? "" : ",", g / 1e9);
  // Each fetch starts from the decode speeds the one before it ended with, as a long-running
  // receiver would: measured alone (the setup), decoding runs faster than next to the link's
  // and the server's threads on this machine, and the first chunks are planned before any
  // decode of this fetch is timed.
  const auto carry_decode_speed = [&](const FetchJson& f) {
    // One speed not known: keep the ones before.
    if (f.decode_gbps.empty() ||
        !std::all_of(f.decode_gbps.begin(), f.decode_gbps.end(), [](double v) { return v > 0; }))
      return;
    decode_gbps = fmt::format("{}", fmt::join(f.decode_gbps, ","));
  };

  // `kvstream fetch` in the client namespace, under `policy` and `deadline_s`; `streaming` runs
  // when it starts streaming (the deadline's clock).
  const auto run_fetch = [&](const std::string& policy, double deadline_s,
                             const std::function<void()>& streaming) -> Expected<int> {
    std::vector<std::string> argv{self,
                                  "fetch",
                                  "--server",
                                  where,
                                  "--context",
                                  "stream",
                                  "--out",
                                  (out / "fetched.raw").string(),
                                  "--deadline",
                                  fmt::format("{}", deadline_s * 1e3),
                                  "--policy",
                                  policy,
                                  "--level-loss",
                                  losses,
                                  "--json",
                                  (out / "fetch.json").string(),
                                  "--window",
                                  std::to_string(plan.window),
                                  "--backlog",
                                  std::to_string(plan.backlog),
                                  "--secret-file",
                                  secret,
                                  "--timeout-ms",
                                  "30000",
                                  "--progress-thread",
                                  "--decode-threads",
                                  std::to_string(plan.decode_threads),
                                  "--decode-gbps",
                                  decode_gbps};
    if (!plan.decode) argv.push_back("--no-decode");
    if (plan.recompute_tps > 0) {
      argv.insert(argv.end(),
                  {"--standin-engine", "--recompute-tps", fmt::format("{}", plan.recompute_tps)});
    }
    std::filesystem::remove(out / "fetch.json");
    KVS_ASSIGN_OR_RETURN(
        Child fetch, Child::spawn(link->in_client(argv), (out / "fetch.out").string(),
                                  (out / "fetch.log").string(), [&](const std::string& line) {
                                    if (line.find("kvstream fetch: streaming") != std::string::npos)
                                      streaming();
                                  }));
    return fetch.wait(120s);
  };

  // One unmeasured fetch of the whole context at level 0 first, as perftest warms up: the
  // measured runs then meet a server with its chunk buffers made and the archive in the page
  // cache, as a long-running server is.
  {
    KVS_ASSIGN_OR_RETURN(const int rc, run_fetch("L0", 60, [] {}));
    if (rc != 0) {
      return Status(Errc::io_error, fmt::format("the warm-up kvstream fetch exited with {}: see {}",
                                                rc, (out / "fetch.log").string()));
    }
    if (const auto f = read_fetch_json(slurp(out / "fetch.json"))) carry_decode_speed(*f);
  }

  std::filesystem::remove(out / "decisions_real.jsonl");
  const std::uint32_t chunks = setup.levels.chunk_count();
  auto rows = sweep(
      setup, plan, quality, "real",
      [&](const scheduler::Trace& trace, const PolicySpec& p, RunRow& row,
          std::vector<Choice>& choices) -> Status {
        if (stop) return Status(Errc::io_error, "interrupted");
        server.pump();
        KVS_RETURN_IF_ERROR(
            link->set_rate(trace.segments().front().bytes_per_s / scheduler::kBytesPerGbit));
        std::this_thread::sleep_for(200ms);  // the previous run's queue drains
        TracePlayer player(*link, trace);
        if (p.carrier == Carrier::levels) {
          KVS_ASSIGN_OR_RETURN(const int rc,
                               run_fetch(p.name, row.deadline_s, [&] { player.start(); }));
          KVS_RETURN_IF_ERROR(player.stop());
          if (rc != 0) {
            return Status(
                Errc::io_error,
                fmt::format("kvstream fetch ({}, {}, deadline {} s) exited with {}: "
                            "see {}",
                            p.name, row.trace, row.deadline_s, rc, (out / "fetch.log").string()));
          }
          const std::string text = slurp(out / "fetch.json");
          KVS_ASSIGN_OR_RETURN(const FetchJson f, read_fetch_json(text));
          carry_decode_speed(f);
          // Every run's per-chunk decisions, one JSON object per line.
          std::ofstream(out / "decisions_real.jsonl", std::ios::app)
              << fmt::format("{{\"trace\": \"{}\", \"deadline_s\": {}, \"run\": {}, \"fetch\": ",
                             row.trace, row.deadline_s, row.run)
              << text.substr(0, text.find_last_not_of("\n") + 1) << "}\n";
          row.met = f.met;
          row.load_s = f.load_s;
          row.bytes = f.bytes;
          choices = f.choices;
        } else {
          // fp16 and int8: their bytes, chunk by chunk, over the same link and UCX.
          const scheduler::ContextCosts& costs = setup.costs(p.carrier);
          const std::uint64_t size = costs.chunks.front().level_bytes[0];
          KVS_ASSIGN_OR_RETURN(
              Child perf_server,
              Child::spawn(link->in_server({self, "perf", "-p", "13400", "--secret-file", secret}),
                           "", (out / "perf-server.log").string()));
          bool listening = false;
          for (int i = 0; i < 500 && !listening; ++i) {
            perf_server.pump();
            listening = slurp(out / "perf-server.log").find("port 13400") != std::string::npos;
            if (!listening) std::this_thread::sleep_for(10ms);
          }
          std::filesystem::remove(out / "perf-server.log");
          player.start();
          KVS_ASSIGN_OR_RETURN(
              Child client,
              Child::spawn(
                  link->in_client(
                      {self, "perf", link->server_address(), "-p", "13400", "-t", "tag_bw", "-s",
                       std::to_string(size), "-n", std::to_string(chunks), "-w", "0", "-O",
                       std::to_string(plan.window), "-f", "-v", "--secret-file", secret}),
                  (out / "perf.out").string(), (out / "perf.log").string()));
          KVS_ASSIGN_OR_RETURN(const int rc, client.wait(120s));
          KVS_RETURN_IF_ERROR(player.stop());
          const std::string csv = slurp(out / "perf.out");
          std::vector<std::string> fields;
          std::stringstream ss(csv);
          for (std::string f; std::getline(ss, f, ',');)
            fields.push_back(f);
          if (rc != 0 || fields.size() < 6) {
            return Status(Errc::io_error, fmt::format("kvstream perf for {} exited with {}: {}",
                                                      p.name, rc, slurp(out / "perf.log")));
          }
          const double bytes_per_s = std::stod(fields[5]) * 1048576.0;
          row.bytes = size * chunks;
          row.load_s = static_cast<double>(row.bytes) / bytes_per_s;
          row.met = row.load_s <= row.deadline_s;
          choices.assign(chunks, Choice::fetch(0));
        }
        fmt::print(stderr, "real {} deadline {} s run {} {}: {} in {:.3f} s\n", row.trace,
                   row.deadline_s, row.run, p.name, row.met ? "met" : "missed", row.load_s);
        return Status::ok();
      });
  std::filesystem::remove(out / "fetched.raw");
  return rows;
}

}  // namespace kvstream::cli
