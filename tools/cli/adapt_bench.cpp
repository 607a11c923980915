#include "cli/adapt_bench.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>

#include "cli/common.hpp"
#include "cli/svg_plot.hpp"

namespace kvstream::cli {

using scheduler::Choice;
using scheduler::Trace;

namespace {

Expected<double> number(std::string_view s, std::string_view what) {
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v) || !(v > 0))
    return Status(Errc::invalid_argument,
                  fmt::format("{}: '{}' is not a positive number", what, s));
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    const std::size_t at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

}  // namespace

Expected<TraceSpec> parse_trace_spec(std::string_view text) {
  TraceSpec t;
  t.text = std::string(text);
  const auto parts = split(text, ':');
  t.kind = std::string(parts[0]);
  if (t.kind == "file" && parts.size() >= 2) {
    const std::string path(text.substr(5));
    KVS_ASSIGN_OR_RETURN(const std::string file, read_file(path));
    auto trace = Trace::parse(file);
    if (!trace) return trace.error().with_context(path);
    t.file = std::move(*trace);
    return t;
  }
  const std::size_t want = t.kind == "const"     ? 1
                           : t.kind == "uniform" ? 2
                           : t.kind == "step"    ? 2
                                                 : 0;
  if (want == 0 || parts.size() - 1 < want || parts.size() - 1 > want + (t.kind == "step")) {
    return Status(Errc::invalid_argument,
                  fmt::format("trace '{}': want const:G, step:HI:LO[:AT], uniform:LO:HI or "
                              "file:PATH",
                              text));
  }
  for (std::size_t i = 1; i < parts.size(); ++i) {
    KVS_ASSIGN_OR_RETURN(const double v, number(parts[i], fmt::format("trace '{}'", text)));
    t.numbers.push_back(v);
  }
  if (t.kind == "step" && t.numbers.size() == 2) t.numbers.push_back(0.04);
  return t;
}

Expected<Trace> TraceSpec::make(double deadline, std::uint32_t chunks, std::uint64_t run) const {
  if (kind == "const") return Trace::constant(numbers[0]);
  if (kind == "step") return Trace::step(numbers[0], numbers[1], numbers[2]);
  if (kind == "uniform")
    return Trace::uniform(numbers[0], numbers[1], deadline / chunks, 4 * deadline, run);
  return *file;
}

std::unique_ptr<scheduler::Policy> PolicySpec::make() const {
  if (name == "planner") return scheduler::planner_policy();
  if (name == "cachegen") return scheduler::cachegen_policy();
  if (name == "recompute") return scheduler::recompute_policy();
  if (carrier != Carrier::levels) return scheduler::fixed_policy(0, name);
  return scheduler::fixed_policy(static_cast<std::uint32_t>(std::stoul(name.substr(1))), name);
}

Expected<PolicySpec> parse_policy_spec(std::string_view text) {
  PolicySpec p;
  p.name = std::string(text);
  if (text == "planner" || text == "cachegen" || text == "recompute") return p;
  if (text == "fp16" || text == "int8") {
    p.carrier = text == "fp16" ? Carrier::fp16 : Carrier::int8;
    return p;
  }
  if (text.size() > 1 && text[0] == 'L' &&
      std::all_of(text.begin() + 1, text.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return p;
  return Status(
      Errc::invalid_argument,
      fmt::format("policy '{}': want planner, cachegen, recompute, fp16, int8 or L<k>", text));
}

Expected<std::vector<RunRow>> sweep(const AdaptSetup& setup, const BenchPlan& plan,
                                    QualityCache& quality, const std::string& mode,
                                    const RunOne& one) {
  std::vector<RunRow> rows;
  const std::uint32_t chunks = setup.levels.chunk_count();
  for (const TraceSpec& spec : plan.traces) {
    for (double deadline : plan.deadlines) {
      for (std::uint32_t run = 1; run <= (spec.varies() ? plan.runs : 1); ++run) {
        KVS_ASSIGN_OR_RETURN(const Trace trace, spec.make(deadline, chunks, run));
        for (const PolicySpec& p : plan.policies) {
          RunRow row;
          row.mode = mode;
          row.trace = spec.text;
          row.gbps = trace.mean_rate(0, deadline) / scheduler::kBytesPerGbit;
          row.deadline_s = deadline;
          row.run = run;
          row.policy = p.name;
          std::vector<Choice> choices;
          KVS_RETURN_IF_ERROR(one(trace, p, row, choices));
          row.choices = choices_text(choices);
          row.expected_loss = scheduler::plan_loss(setup.costs(p.carrier), 0, choices);
          KVS_ASSIGN_OR_RETURN(row.quality, quality.get(p.carrier, choices));
          rows.push_back(std::move(row));
        }
      }
    }
  }
  return rows;
}

std::string choices_text(std::span<const Choice> choices) {
  std::string out;
  for (const Choice& c : choices) {
    if (!out.empty()) out += ' ';
    out += c.recompute() ? std::string("R") : fmt::format("L{}", c.level);
  }
  return out;
}

Expected<QualityScore> QualityCache::get(Carrier c, std::span<const Choice> choices) {
  const std::string key = fmt::format("{}|{}", static_cast<int>(c), choices_text(choices));
  const auto it = cache_.find(key);
  if (it != cache_.end()) return it->second;
  KVS_ASSIGN_OR_RETURN(const QualityScore q, setup_.score(c, choices));
  cache_.emplace(key, q);
  return q;
}

SettingTallies tally_settings(const std::vector<RunRow>& rows) {
  SettingTallies t;
  for (const RunRow& r : rows) {
    const std::string setting = fmt::format("{} {} deadline {} s", r.mode, r.trace, r.deadline_s);
    if (std::find(t.settings.begin(), t.settings.end(), setting) == t.settings.end())
      t.settings.push_back(setting);
    if (std::find(t.policies.begin(), t.policies.end(), r.policy) == t.policies.end())
      t.policies.push_back(r.policy);
    PolicyTally& c = t.cells[setting][r.policy];
    ++c.runs;
    c.load += r.load_s;
    if (r.met) {
      ++c.met;
      c.ppl += r.quality.delta_ppl_pct;
    }
  }
  return t;
}

std::string policy_table(const std::vector<RunRow>& rows) {
  // Per setting and policy: runs met, mean load, mean ΔPPL of the runs that met.
  SettingTallies t = tally_settings(rows);  // not const: a policy a setting lacks reads as 0/0
  std::string out = fmt::format("{:<44}", "setting \\ policy: met/runs, load s, ΔPPL %");
  for (const std::string& p : t.policies)
    out += fmt::format(" {:>20}", p);
  out += "\n";
  for (const std::string& setting : t.settings) {
    out += fmt::format("{:<44}", setting);
    for (const std::string& p : t.policies) {
      const PolicyTally& c = t.cells[setting][p];
      out += c.met ? fmt::format(" {:>3}/{:<2} {:>6.3f} {:>6.3f}", c.met, c.runs,
                                 c.load / static_cast<double>(c.runs),
                                 c.ppl / static_cast<double>(c.met))
                   : fmt::format(" {:>3}/{:<2} {:>6.3f} {:>6}", c.met, c.runs,
                                 c.load / static_cast<double>(c.runs), "-");
    }
    out += "\n";
  }
  return out;
}

std::string rows_csv(const std::vector<RunRow>& rows) {
  std::string out =
      "mode,trace,gbps,deadline_s,run,policy,feasible,met,load_s,bytes,delta_ppl_pct,top1,kl,"
      "expected_loss,choices\n";
  for (const RunRow& r : rows) {
    out += fmt::format("{},{},{:.4f},{},{},{},{},{},{:.6f},{},{:.4f},{:.5f},{:.6g},{:.4f},{}\n",
                       r.mode, r.trace, r.gbps, r.deadline_s, r.run, r.policy, r.feasible ? 1 : 0,
                       r.met ? 1 : 0, r.load_s, r.bytes, r.quality.delta_ppl_pct, r.quality.top1,
                       r.quality.kl, r.expected_loss, r.choices);
  }
  return out;
}

void write_plots(const std::vector<RunRow>& rows, const std::string& dir, const std::string& mode) {
  std::vector<std::string> policies;
  std::set<double> deadlines;
  for (const RunRow& r : rows) {
    if (std::find(policies.begin(), policies.end(), r.policy) == policies.end())
      policies.push_back(r.policy);
    deadlines.insert(r.deadline_s);
  }
  for (double deadline : deadlines) {
    Plot load{fmt::format("Load time against bandwidth, deadline {} s ({})", deadline, mode),
              "link rate, Gbit/s",
              "load time, s",
              true,
              {}};
    Plot quality{fmt::format("Quality against bandwidth, deadline {} s ({}): runs that met it",
                             deadline, mode),
                 "link rate, Gbit/s",
                 "ΔPPL, %",
                 true,
                 {}};
    for (const std::string& p : policies) {
      PlotSeries l{p, {}, {}}, q{p, {}, {}};
      for (const RunRow& r : rows) {
        if (r.policy != p || r.trace.rfind("const:", 0) != 0 || r.deadline_s != deadline) continue;
        l.x.push_back(r.gbps);
        l.y.push_back(r.load_s);
        q.x.push_back(r.gbps);
        q.y.push_back(r.met ? r.quality.delta_ppl_pct : std::numeric_limits<double>::quiet_NaN());
      }
      if (l.x.empty()) continue;
      load.series.push_back(std::move(l));
      quality.series.push_back(std::move(q));
    }
    if (load.series.empty()) continue;
    const std::filesystem::path d(dir);
    std::ofstream(d / fmt::format("load_time_{}_{}s.svg", mode, deadline)) << load.svg();
    std::ofstream(d / fmt::format("quality_{}_{}s.svg", mode, deadline)) << quality.svg();
  }
}

Expected<std::vector<RunRow>> read_rows_csv(const std::string& text) {
  std::vector<RunRow> rows;
  std::istringstream in(text);
  std::string line;
  std::size_t n = 0;
  while (std::getline(in, line)) {
    if (n++ == 0 || line.empty()) continue;  // the header
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string v; std::getline(fields, v, ',');)
      f.push_back(v);
    if (f.size() != 15) {
      return Status(Errc::corrupt_data,
                    fmt::format("results line {}: {} fields, want 15", n, f.size()));
    }
    try {
      RunRow r;
      r.mode = f[0];
      r.trace = f[1];
      r.gbps = std::stod(f[2]);
      r.deadline_s = std::stod(f[3]);
      r.run = std::stoull(f[4]);
      r.policy = f[5];
      r.feasible = f[6] == "1";
      r.met = f[7] == "1";
      r.load_s = std::stod(f[8]);
      r.bytes = std::stoull(f[9]);
      r.quality.delta_ppl_pct = std::stod(f[10]);
      r.quality.top1 = std::stod(f[11]);
      r.quality.kl = std::stod(f[12]);
      r.expected_loss = std::stod(f[13]);
      r.choices = f[14];
      rows.push_back(std::move(r));
    } catch (const std::exception&) {
      return Status(Errc::corrupt_data, fmt::format("results line {}: a field is not a number", n));
    }
  }
  if (rows.empty()) return Status(Errc::corrupt_data, "results: no rows");
  return rows;
}

}  // namespace kvstream::cli
