// The CLI side of deadline-driven fetches (`kvstream fetch --deadline`): policies by name, level
// losses from the command line, the recompute engines, and the per-chunk report as text and JSON.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "adaptive.hpp"
#include "kvstream/status.hpp"
#include "runner/model.hpp"

namespace kvstream::cli {

// "planner", "cachegen", "recompute", or "L<k>" (every chunk at level k).
Expected<std::unique_ptr<scheduler::Policy>> make_policy(std::string_view name);

// "0,0.09,0.32": one loss per level, each finite and >= 0.
Expected<std::vector<double>> parse_losses(std::string_view text);

// Who recomputes chunks, and how its reports describe it.
struct Engine {
  std::string kind = "none";  // "none", "runner" or "standin"
  double tokens_per_s = 0;
  std::string describe() const;
};

// The reference runner, for a stream whose KV has `model`'s shape: recomputes each chunk into
// `dst` (runner::recompute_kv), then, when `tokens_per_s` > 0, sleeps until the chunk has taken
// at least tokens/tokens_per_s (to stand in for a slower, larger model). Single-threaded, as
// the adaptive fetch calls it.
Expected<decltype(transport::AdaptiveOptions::recompute)> runner_engine(const runner::Model& model,
                                                                        const KvView& dst,
                                                                        double tokens_per_s);
// Takes tokens/tokens_per_s and writes nothing: for benchmarks of streams whose shape no local
// model has.
decltype(transport::AdaptiveOptions::recompute) standin_engine(double tokens_per_s);

std::string describe_chunk(const transport::ChunkReport& c, std::uint32_t chunks);

// `kvstream fetch --deadline ...`, its options already parsed.
struct AdaptiveArgs {
  std::string context, out_path, secret_file;
  std::pair<std::string, std::uint16_t> server;
  std::string policy = "planner", losses, model_path, json_path;
  std::string decode_gbps;  // one speed, or one per level
  std::int64_t window = 4, backlog = 0, timeout_ms = 5000, decode_threads = 1;
  double deadline_ms = 0, recompute_tps = 0, initial_gbps = 0;
  bool progress_thread = false, standin = false, no_decode = false;
};
int run_adaptive_fetch(std::string_view command, const AdaptiveArgs& a);
std::string report_json(const transport::AdaptiveReport& r, std::string_view context,
                        double deadline_s, const Engine& engine);

}  // namespace kvstream::cli
