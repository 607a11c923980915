// The kvstream executable as a user meets it: exit codes, one-line errors, --help, output.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

#include "runner/model.hpp"
#include "test_models.hpp"

namespace kvstream {
namespace {

using kvstream::testing::temp_dir;

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result run(const std::string& args) {
  static int n = 0;
  const auto out = temp_dir() / fmt::format("out{}", n);
  const auto err = temp_dir() / fmt::format("err{}", n++);
  const std::string cmd = fmt::format("'{}' {} >'{}' 2>'{}' </dev/null", KVSTREAM_CLI, args,
                                      out.string(), err.string());
  const int status = std::system(cmd.c_str());
  Result r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

std::string stories() {
  return (runner::models_dir() / "stories260K.bin").string();
}

int lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

void expect_one_line_error(const Result& r, int code, const std::string& mention) {
  EXPECT_EQ(r.exit_code, code) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("error: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(mention), std::string::npos) << r.err;
}

TEST(Cli, HelpEverywhere) {
  for (const char* args : {"--help", "model --help", "model generate --help", "model score --help",
                           "model info --help", "demo --help", "perf --help"}) {
    const Result r = run(args);
    EXPECT_EQ(r.exit_code, 0) << args;
    EXPECT_NE(r.out.find("usage:"), std::string::npos) << args;
    EXPECT_TRUE(r.err.empty()) << args;
  }
}

TEST(Cli, UsageErrorsAreOneLineExitTwo) {
  expect_one_line_error(run("frobnicate"), 2, "unknown command 'frobnicate'");
  expect_one_line_error(run("model fly"), 2, "unknown command 'fly'");
  expect_one_line_error(run("model generate --count 3"), 2, "missing required option --model");
  expect_one_line_error(run("model generate --model x --count abc"), 2,
                        "--count expects an integer");
  expect_one_line_error(run("model generate --model x --count 0"), 2, "--count must be in");
  expect_one_line_error(run("model generate --model x --bogus 1"), 2, "unknown option '--bogus'");
  expect_one_line_error(run("model generate --model"), 2, "--model needs a value");
  expect_one_line_error(run("model score --model x --tokens y --ctx 4 --kv-dtype int3"), 2,
                        "unknown dtype 'int3'");
  expect_one_line_error(run("model score --model x --tokens y --ctx 4 --json=1"), 2,
                        "--json takes no value");
  expect_one_line_error(run("demo --ctx 500 --length 501"), 2, "leaves nothing to score");
  const Result bare = run("");
  EXPECT_EQ(bare.exit_code, 2);
  EXPECT_NE(bare.err.find("usage:"), std::string::npos);
}

TEST(Cli, BadFilesAreOneLineExitOne) {
  expect_one_line_error(run("model info --model /nonexistent/m.bin"), 1, "/nonexistent/m.bin");
  const auto junk = temp_dir() / "junk.bin";
  std::ofstream(junk) << "not a checkpoint";
  expect_one_line_error(run(fmt::format("model generate --model '{}'", junk.string())), 1,
                        "shorter than the 28-byte header");
  expect_one_line_error(run(fmt::format("model score --model '{}' --tokens /nonexistent/t.txt "
                                        "--ctx 4",
                                        stories())),
                        1, "/nonexistent/t.txt");
  expect_one_line_error(run(fmt::format("model generate --model '{}' --length 600", stories())), 1,
                        "outside 1..512 (the model's seq_len)");
}

// A port that was free a moment ago on 127.0.0.1.
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Starts `kvstream perf` as a server in the background and waits until it listens; its
// stderr goes to the returned file. Its --timeout bounds its whole session, the kv tests' model
// runs included, which take about 25 s in the sanitizer build on a loaded 2-core machine.
std::filesystem::path start_perf_server(std::uint16_t port, const std::string& env) {
  static int n = 0;
  const auto err = temp_dir() / fmt::format("perf-server{}", n++);
  const std::string cmd = fmt::format("{} '{}' perf -p {} --timeout 300 >/dev/null 2>'{}' &", env,
                                      KVSTREAM_CLI, port, err.string());
  EXPECT_EQ(std::system(cmd.c_str()), 0);
  for (int i = 0; i < 500 && slurp(err).find("Waiting for connection") == std::string::npos; ++i)
    usleep(10000);
  return err;
}

TEST(Cli, PerfMeasuresTagBandwidthBetweenTwoProcesses) {
  ::setenv("KVSTREAM_SECRET", "the cli test's secret, 32 bytes.", 1);
  std::uint16_t port = free_port();
  start_perf_server(port, "");
  Result r = run(fmt::format("perf 127.0.0.1 -p {} -t tag_bw -s 65536 -n 300 -w 10", port));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| Message size: 65536"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Final:                   300 "), std::string::npos) << r.out;

  port = free_port();
  start_perf_server(port, "");
  r = run(fmt::format("perf 127.0.0.1 -p {} -s 1048576 -n 50 -w 5 -v", port));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("50,", 0), 0u) << r.out;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), ','), 7) << r.out;
}

// The server streams a model-shaped cache of real KV; the client decodes every chunk and sets
// the figure against tag_bw over the same endpoints.
TEST(Cli, PerfStreamsKvChunksAndReportsTheEfficiency) {
  ::setenv("KVSTREAM_SECRET", "the cli test's secret, 32 bytes.", 1);
  std::uint16_t port = free_port();
  auto server_err = start_perf_server(port, "");
  Result r = run(fmt::format(
      "perf 127.0.0.1 -p {} -t kv_stream_bw -s 262144 -n 40 -w 4 -O 4 --level 2 --chunks 3 "
      "--timeout 300",
      port));
  EXPECT_EQ(r.exit_code, 0) << r.err << "server: " << slurp(server_err);
  EXPECT_NE(r.out.find("KV chunk streaming bandwidth, decoded (kv_stream_bw)"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("Final:                    40 "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Efficiency: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("% of tag_bw over the same endpoints at "), std::string::npos) << r.out;

  port = free_port();
  server_err = start_perf_server(port, "");
  r = run(fmt::format(
      "perf 127.0.0.1 -p {} -t kv_lat -s 65536 -n 20 -w 2 -v --no-decode --timeout 300", port));
  EXPECT_EQ(r.exit_code, 0) << r.err << "server: " << slurp(server_err);
  EXPECT_EQ(r.out.rfind("20,", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\nefficiency,"), std::string::npos) << r.out;
}

TEST(Cli, PerfRefusesAWrongSecretAndBadOptions) {
  ::setenv("KVSTREAM_SECRET", "the cli test's secret, 32 bytes.", 1);
  const std::uint16_t port = free_port();
  const auto server_err =
      start_perf_server(port, "KVSTREAM_SECRET='the server has another secret'");
  expect_one_line_error(run(fmt::format("perf 127.0.0.1 -p {} -n 10", port)), 1,
                        "authentication failed");
  for (int i = 0; i < 300 && slurp(server_err).find("refused") == std::string::npos; ++i)
    usleep(10000);
  EXPECT_NE(slurp(server_err).find("refused 127.0.0.1:"), std::string::npos) << slurp(server_err);
  expect_one_line_error(run("perf 127.0.0.1 -t am_lat"), 2,
                        "tag_bw, am_bw, kv_stream_bw or kv_lat");
  expect_one_line_error(run("perf 127.0.0.1 -m cuda"), 2, "host memory only");
  expect_one_line_error(run("perf 127.0.0.1 -s x"), 2, "-s 'x'");
  expect_one_line_error(run("fetch --server nowhere --context c --out x"), 2,
                        "'nowhere': expected HOST:PORT");
  expect_one_line_error(run("serve --dir . --rate 2gbps"), 2, "rate '2gbps'");
  expect_one_line_error(run("fetch --server h:1 --context c --out x --json j"), 2,
                        "need --deadline");
  expect_one_line_error(run("fetch --server h:1 --context c --out x --no-decode"), 2,
                        "need --deadline");
  expect_one_line_error(run("fetch --server h:1 --context c --out x --deadline 9 --resume"), 2,
                        "--resume does not go with --deadline");
  expect_one_line_error(run("fetch --server h:1 --context c --out x --deadline 9 --policy fast"), 1,
                        "policy 'fast'");
  expect_one_line_error(run("fetch --server h:1 --context c --out x --deadline 9 --level-loss 0,x"),
                        1, "level loss 'x'");
  expect_one_line_error(
      run("fetch --server h:1 --context c --out x --deadline 9 --decode-gbps 1,x"), 1,
      "decode speed 'x'");
  expect_one_line_error(run("fetch --server h:1 --context c --out x --deadline 9 --decode-gbps 0"),
                        1, "--decode-gbps: decode speed 0 is not positive");
  expect_one_line_error(run("fetch --server h:1 --context c --out x --decode-gbps 1"), 2,
                        "need --deadline");
  expect_one_line_error(run("fetch --server h:1 --context c --out x --deadline 9 --standin-engine"),
                        1, "--standin-engine needs --recompute-tps");
  expect_one_line_error(
      run("fetch --server h:1 --context c --out x --deadline 9 --recompute-tps 100"), 1,
      "needs an engine");
  ::unsetenv("KVSTREAM_SECRET");
  expect_one_line_error(run("perf 127.0.0.1"), 1, "KVSTREAM_SECRET is not set");
}

TEST(Cli, BenchAdaptSimulatesEveryPolicyAndWritesItsResults) {
  const auto dir = testing::temp_dir() / "adapt";
  const Result r = run(fmt::format(
      "bench adapt --sim --model '{}' --contexts 2 --ctx 64 --chunk 16 --traces const:1,step:5:0.5 "
      "--deadlines 0.01,0.02 --policies planner,cachegen,fp16,int8,L0,L5,recompute "
      "--threads 2 --out '{}'",
      stories(), dir.string()));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("planner: met"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("recompute: stand-in at 500 tokens/s"), std::string::npos) << r.out;
  const std::string csv = slurp(dir / "results_sim.csv");
  EXPECT_EQ(lines(csv), 1 + 2 * 2 * 7) << csv;  // header, traces x deadlines x policies
  EXPECT_EQ(csv.rfind("mode,trace,gbps,deadline_s,run,policy,feasible,met", 0), 0u) << csv;
  EXPECT_NE(csv.find("sim,const:1,1.0000,0.02,1,planner,"), std::string::npos) << csv;
  EXPECT_NE(slurp(dir / "load_time_sim_0.02s.svg").find("<polyline"), std::string::npos);
  EXPECT_NE(slurp(dir / "quality_sim_0.01s.svg").find("</svg>"), std::string::npos);
  // A finished sweep summarizes and plots again from its CSV.
  const auto again = testing::temp_dir() / "adapt-again";
  const Result replot = run(fmt::format("bench adapt --from-csv '{}' --out '{}'",
                                        (dir / "results_sim.csv").string(), again.string()));
  ASSERT_EQ(replot.exit_code, 0) << replot.err;
  // (The CSV rounds, so the figures may differ in their last digits.)
  const std::string first = slurp(dir / "summary_sim.txt"),
                    second = slurp(again / "summary_sim.txt");
  EXPECT_EQ(lines(second), lines(first)) << second;
  const auto planner_line = [](const std::string& t) {
    const std::size_t at = t.find("planner: met");
    return t.substr(at, t.find(" (", at) - at);
  };
  EXPECT_EQ(planner_line(second), planner_line(first));
  EXPECT_NE(slurp(again / "quality_sim_0.02s.svg").find("</svg>"), std::string::npos);
  expect_one_line_error(run("bench adapt --sim --traces ramp:1"), 1, "trace 'ramp:1'");
  expect_one_line_error(run("bench adapt --sim --traces file:/nonexistent/trace"), 1,
                        "no '/nonexistent/trace'");
  expect_one_line_error(run("bench adapt --sim --policies L9 --contexts 1 --ctx 16"), 1,
                        "policy L9");
}

TEST(Cli, GenerateThenScore) {
  const Result gen =
      run(fmt::format("model generate --model '{}' --count 3 --length 40 --seed 5", stories()));
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  ASSERT_EQ(lines(gen.out), 3);
  std::istringstream first(gen.out.substr(0, gen.out.find('\n')));
  int token = 0, n = 0, bos = -1;
  while (first >> token) {
    if (n++ == 0) bos = token;
  }
  EXPECT_EQ(n, 40);
  EXPECT_EQ(bos, 1);

  // Same seed, different thread count: the same contexts.
  const Result again = run(fmt::format(
      "model generate --model '{}' --count 3 --length 40 --seed 5 --threads 1", stories()));
  EXPECT_EQ(again.out, gen.out);

  const auto tokens = temp_dir() / "ctx.txt";
  std::ofstream(tokens) << gen.out;
  const Result score = run(fmt::format("model score --model '{}' --tokens '{}' --ctx 30 --json",
                                       stories(), tokens.string()));
  ASSERT_EQ(score.exit_code, 0) << score.err;
  EXPECT_NE(score.out.find("\"contexts\": 3"), std::string::npos) << score.out;
  EXPECT_NE(score.out.find("\"tokens_scored\": 27"), std::string::npos) << score.out;
  EXPECT_NE(score.out.find("\"ppl\": "), std::string::npos) << score.out;

  const Result too_long_ctx = run(
      fmt::format("model score --model '{}' --tokens '{}' --ctx 39", stories(), tokens.string()));
  expect_one_line_error(too_long_ctx, 1, "context 0 has 40 tokens");
}

TEST(Cli, DemoRunsOnTheRealModel) {
  const Result r = run("demo --contexts 2 --length 64 --ctx 48");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("fp16 paged"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ppl"), std::string::npos) << r.out;
  // Then each context again against a deadline, the planner choosing every chunk's level.
  EXPECT_NE(r.out.find("each context due in 60 ms"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ctx1: L"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("of 2 deadlines met"), std::string::npos) << r.out;
  const Result skipped = run("demo --contexts 1 --length 64 --ctx 48 --deadline 0");
  ASSERT_EQ(skipped.exit_code, 0) << skipped.err;
  EXPECT_EQ(skipped.out.find("deadlines met"), std::string::npos) << skipped.out;
  expect_one_line_error(run("demo --rate fast"), 2, "rate 'fast'");
}

}  // namespace
}  // namespace kvstream
