// `kvstream bench adapt`: policies against traces and deadlines, in the simulator or on shaped
// links, each run scored for deadline, load time, bytes and measured quality; CSV and plots.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli/adapt_setup.hpp"
#include "policy.hpp"
#include "trace.hpp"

namespace kvstream::cli {

// "const:G", "step:HI:LO[:AT]" (AT: seconds, 0.04: about mid-context for the default stream at
// 5 Gbit/s), "uniform:LO:HI" (a new rate every deadline/chunks seconds, seeded by the run),
// "file:PATH" (read and checked once, when parsed). Rates in Gbit/s.
struct TraceSpec {
  std::string text;
  std::string kind;
  std::vector<double> numbers;
  std::optional<scheduler::Trace> file;
  Expected<scheduler::Trace> make(double deadline, std::uint32_t chunks, std::uint64_t run) const;
  bool varies() const { return kind == "uniform"; }  // worth several runs
};
Expected<TraceSpec> parse_trace_spec(std::string_view text);

// "planner", "cachegen", "recompute", "L<k>", "fp16", "int8".
struct PolicySpec {
  std::string name;
  Carrier carrier = Carrier::levels;
  std::unique_ptr<scheduler::Policy> make() const;
};
Expected<PolicySpec> parse_policy_spec(std::string_view text);

// What a bench run sweeps, and its fixed settings.
struct BenchPlan {
  std::vector<TraceSpec> traces;
  std::vector<double> deadlines;
  std::vector<PolicySpec> policies;
  std::uint32_t runs = 1, window = 2;
  std::uint32_t backlog = 0;  // landed chunks waiting for the decoder beyond the window
  double recompute_tps = 0;
  bool decode = true;                       // false: chunks land and are checked, not decoded
  unsigned decode_threads = 1;              // of the real runs' fetch
  double seed_gbps = 10, latency_s = 1e-4;  // the simulator's
};

struct RunRow {
  std::string mode, trace, policy;
  double gbps = 0;  // the trace's mean rate over the deadline
  double deadline_s = 0;
  std::uint64_t run = 0;
  bool met = false, feasible = false;
  double load_s = 0;
  std::uint64_t bytes = 0;
  QualityScore quality;
  double expected_loss = 0;
  std::string choices;  // e.g. "L2 L2 R L3"
};

// Scores choices once per distinct (carrier, choices).
class QualityCache {
 public:
  explicit QualityCache(const AdaptSetup& setup) : setup_(setup) {}
  Expected<QualityScore> get(Carrier c, std::span<const scheduler::Choice> choices);

 private:
  const AdaptSetup& setup_;
  std::map<std::string, QualityScore> cache_;
};

std::string choices_text(std::span<const scheduler::Choice> choices);

// Marks each row feasible when one of the planner's options (a fixed level or recompute, not
// fp16 or int8) met the same (trace, deadline, run), and returns the planner's summary: run by
// run (met, and within 0.1 pp of the least ΔPPL that met), then setting by setting
// (adapt_summary.cpp).
std::string summarize(std::vector<RunRow>& rows);
// Per setting (mode, trace, deadline) and policy: runs, runs met, their summed load time, and
// the summed ΔPPL of the runs met. Settings and policies in first-seen order. The policy table
// and the summary's per-setting line both read it.
struct PolicyTally {
  std::size_t runs = 0, met = 0;
  double load = 0, ppl = 0;
};
struct SettingTallies {
  std::vector<std::string> settings, policies;
  std::map<std::string, std::map<std::string, PolicyTally>> cells;
};
SettingTallies tally_settings(const std::vector<RunRow>& rows);
std::string rows_csv(const std::vector<RunRow>& rows);
// Per (trace, deadline) and policy: runs that met it, mean load time, mean ΔPPL of those runs.
std::string policy_table(const std::vector<RunRow>& rows);
// Load time and ΔPPL against bandwidth over the constant traces, one pair of plots for each
// deadline the rows have (load_time_<mode>_<deadline>s.svg, quality_...).
void write_plots(const std::vector<RunRow>& rows, const std::string& dir, const std::string& mode);
// The rows of a results CSV that rows_csv wrote (to summarize and plot a finished sweep again).
Expected<std::vector<RunRow>> read_rows_csv(const std::string& text);

// Runs `one` for every (trace, deadline, run, policy) of the plan, with the row's identity
// filled in; `one` fills in the outcome (met, load, bytes) and the choices, which the sweep
// scores (expected loss, measured quality) before it keeps the row.
using RunOne = std::function<Status(const scheduler::Trace& trace, const PolicySpec& policy,
                                    RunRow& row, std::vector<scheduler::Choice>& choices)>;
Expected<std::vector<RunRow>> sweep(const AdaptSetup& setup, const BenchPlan& plan,
                                    QualityCache& quality, const std::string& mode,
                                    const RunOne& one);

// Every (trace, deadline, run, policy) on a shaped link between two network namespaces: the
// stream's archive (in `dir`) served by `kvstream serve`, fetched by `kvstream fetch
// --deadline`; fp16 and int8 as their bytes in chunk-sized messages (`kvstream perf tag_bw`,
// not decoded). The link's rate follows the trace from the fetch's start. Stops between runs
// once `stop` is set.
Expected<std::vector<RunRow>> run_real(const AdaptSetup& setup, const BenchPlan& plan,
                                       QualityCache& quality, const std::string& dir,
                                       const std::atomic<bool>& stop);

int run_bench(std::span<const std::string_view> args);

}  // namespace kvstream::cli
