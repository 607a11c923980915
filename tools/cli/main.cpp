// kvstream: the command-line front end. Each subcommand is a thin layer over the libraries.
#include <span>
#include <string_view>
#include <vector>

#include "cli/common.hpp"

namespace {

constexpr kvstream::cli::Subcommand kCommands[] = {
    {"demo", "sample a real context with the reference model and show its KV cache and quality",
     kvstream::cli::run_demo},
    {"codec", "KV codec: evaluate levels and baselines, calibrate profiles",
     kvstream::cli::run_codec},
    {"model", "reference model runner: info, generate contexts, score perplexity",
     kvstream::cli::run_model},
    {"serve", "serve the context archives of a folder to authenticated receivers",
     kvstream::cli::run_serve},
    {"fetch", "fetch a context's KV cache at one level from a server", kvstream::cli::run_fetch},
    {"perf", "UCX bandwidth between two hosts, as ucx_perftest measures it",
     kvstream::cli::run_perf},
    {"bench", "long benchmarks: adaptive streaming against traces and deadlines",
     kvstream::cli::run_bench},
};

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  return kvstream::cli::dispatch("kvstream", kCommands, args);
}
