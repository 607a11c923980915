// The planner's summary of a sweep: run by run, and setting by setting.
#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <string>
#include <vector>

#include "cli/adapt_bench.hpp"

namespace kvstream::cli {

namespace {

// One of the options the planner has: a fixed level of the stream, or recomputing everything.
// fp16 and int8 travel as raw messages the planner cannot choose.
bool is_option(const std::string& p) {
  return p == "recompute" ||
         (p.size() > 1 && p[0] == 'L' && std::all_of(p.begin() + 1, p.end(), [](char c) {
            return std::isdigit(static_cast<unsigned char>(c));
          }));
}

// The "within 0.1 percentage points of the best", per run and per setting.
constexpr double kWithinPp = 0.1;

double pct(std::size_t a, std::size_t b) {
  return b ? 100.0 * static_cast<double>(a) / static_cast<double>(b) : 0.0;
}

// Setting by setting, for traces that vary from run to run: which fixed level meets is then
// luck, run by run, and the best of the policies that met one run is an oracle. A setting
// counts when some option met every one of its runs; the planner passes it when it met every
// run too, with a mean ΔPPL within 0.1 pp of the least mean of every policy that met every run
// (fp16 and int8 included).
std::string per_setting(const std::vector<RunRow>& rows) {
  const SettingTallies t = tally_settings(rows);
  std::size_t counted = 0, passed = 0;
  std::vector<std::string> failed;
  for (const std::string& s : t.settings) {
    const auto& policies = t.cells.at(s);
    bool option_met = false;
    double best = 0;
    bool have_best = false;
    for (const auto& [name, c] : policies) {
      if (c.met != c.runs) continue;
      option_met = option_met || is_option(name);
      const double mean = c.ppl / static_cast<double>(c.runs);
      if (!have_best || mean < best) {
        best = mean;
        have_best = true;
      }
    }
    if (!option_met) continue;
    ++counted;
    const auto planner = policies.find("planner");
    if (planner == policies.end()) continue;
    const PolicyTally& p = planner->second;
    if (p.met != p.runs) {
      failed.push_back(fmt::format("{}: met {} of {} runs", s, p.met, p.runs));
      continue;
    }
    const double gap = p.ppl / static_cast<double>(p.runs) - best;
    if (gap <= kWithinPp) {
      ++passed;
    } else {
      failed.push_back(fmt::format("{}: mean +{:.3f} pp", s, gap));
    }
  }
  std::string out = fmt::format(
      "planner, per setting: met every run and within 0.1 pp of the least mean ΔPPL of the "
      "policies that met every run in {} of the {} settings some fixed level or recompute met in "
      "every run ({:.1f}%)\n",
      passed, counted, pct(passed, counted));
  for (const std::string& f : failed)
    out += "  not: " + f + "\n";
  return out;
}

}  // namespace

std::string summarize(std::vector<RunRow>& rows) {
  // A run is feasible when one of the options the planner has met it (the issue's "deadlines
  // that some level can meet"); runs only fp16 or int8 met are counted on a second line.
  const auto key = [](const RunRow& r) {
    return fmt::format("{}|{}|{}|{}", r.mode, r.trace, r.deadline_s, r.run);
  };
  std::map<std::string, bool> by_option, by_any;
  std::map<std::string, double> best;  // least ΔPPL among the policies that met
  for (const RunRow& r : rows) {
    if (r.met && r.policy != "planner" && r.policy != "cachegen") {
      by_any[key(r)] = true;
      if (is_option(r.policy)) by_option[key(r)] = true;
    }
    if (r.met) {
      auto [it, fresh] = best.emplace(key(r), r.quality.delta_ppl_pct);
      if (!fresh) it->second = std::min(it->second, r.quality.delta_ppl_pct);
    }
  }
  std::size_t feasible_runs = 0, met = 0, best_or_close = 0, any_runs = 0, any_met = 0;
  std::vector<std::string> worse;
  for (RunRow& r : rows) {
    r.feasible = by_option.count(key(r)) > 0;
    if (r.policy != "planner") continue;
    if (by_any.count(key(r)) > 0) {
      ++any_runs;
      any_met += r.met ? 1 : 0;
    }
    if (!r.feasible || !r.met) {
      feasible_runs += r.feasible ? 1 : 0;
      continue;
    }
    ++feasible_runs;
    ++met;
    const double gap = r.quality.delta_ppl_pct - best[key(r)];
    if (gap <= kWithinPp) {
      ++best_or_close;
    } else {
      worse.push_back(
          fmt::format("{} deadline {} s run {}: +{:.3f} pp", r.trace, r.deadline_s, r.run, gap));
    }
  }
  std::string out = fmt::format(
      "planner: met {} of {} feasible (trace, deadline) runs ({:.1f}%: runs a fixed level or "
      "recompute met); lowest ΔPPL of all policies that met, or within 0.1 pp of it, in {} of "
      "the {} it met\n"
      "planner: met {} of {} runs that any baseline met, fp16 and int8 included ({:.1f}%)\n",
      met, feasible_runs, pct(met, feasible_runs), best_or_close, met, any_met, any_runs,
      pct(any_met, any_runs));
  for (const std::string& w : worse)
    out += "  more than 0.1 pp worse: " + w + "\n";
  return out + per_setting(rows);
}

}  // namespace kvstream::cli
