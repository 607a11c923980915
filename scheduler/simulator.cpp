#include "simulator.hpp"

#include <algorithm>
#include <deque>
#include <limits>

namespace kvstream::scheduler {

RunResult simulate(const SimSetup& setup, Policy& policy) {
  const ContextCosts& ctx = *setup.ctx;
  const Trace& trace = *setup.trace;
  const std::uint32_t n = ctx.chunk_count();
  const double t0 = setup.start, deadline = t0 + setup.deadline;

  GoodputEstimator estimator;
  if (setup.seed_bytes_per_s > 0) estimator.seed(setup.seed_bytes_per_s);
  Rates rates;
  rates.decode_bytes_per_s = setup.decode_bytes_per_s;
  rates.recompute_tokens_per_s = setup.recompute_tokens_per_s;
  // With one slot every request waits for the previous chunk: its latency is on the critical
  // path. With more, requests go out while earlier chunks are on the wire.
  rates.chunk_overhead_s = setup.window <= 1 ? setup.request_latency : 0.0;

  RunResult r;
  r.policy = policy.name();
  r.chunks.resize(n);
  std::vector<Choice> choices;
  std::vector<double> recompute_start(n, 0);  // absolute
  std::deque<std::uint32_t> slots;  // fetched chunks holding a receive slot, in request order
  std::uint32_t fed = 0;            // fetched chunks the estimator has seen land
  double now = t0, link = t0, decoder = t0, engine = t0, all_ready = t0, last_throughput = 0;

  const auto ready_before = [&](double t) {
    std::uint32_t first = 0;
    while (first < choices.size() && r.chunks[first].ready + t0 <= t)
      ++first;
    return first;
  };
  while (choices.size() < n || !slots.empty()) {
    // Free the slots whose chunks are decoded by now; if all are busy (or nothing is left to
    // decide), move to the next one's decoding.
    while (!slots.empty() && r.chunks[slots.front()].ready + t0 <= now)
      slots.pop_front();
    if (choices.size() == n || slots.size() >= std::max(setup.window, 1u)) {
      if (slots.empty()) break;
      now = std::max(now, r.chunks[slots.front()].ready + t0);
      continue;
    }
    // A probing policy waits for its first fetched chunk to land before it asks for another.
    if (policy.probes_first() && !slots.empty() && r.chunks[slots.front()].landed + t0 > now &&
        std::none_of(r.chunks.begin(),
                     r.chunks.begin() + static_cast<std::ptrdiff_t>(choices.size()),
                     [&](const ChunkRecord& c) { return c.bytes > 0 && c.landed + t0 <= now; })) {
      now = r.chunks[slots.front()].landed + t0;
      continue;
    }
    // Land, in order, what the link has delivered by now.
    std::vector<Outstanding> outstanding;
    for (std::uint32_t c = 0; c < choices.size(); ++c) {
      const ChunkRecord& rec = r.chunks[c];
      if (choices[c].recompute()) continue;
      if (rec.landed + t0 > now) {
        outstanding.push_back({rec.decided + t0, rec.bytes});
      } else if (c >= fed) {
        estimator.add({rec.decided + t0, rec.landed + t0, rec.bytes});
        last_throughput = static_cast<double>(rec.bytes) / (rec.landed - rec.decided);
        fed = c + 1;
      }
    }
    Situation s;
    s.ctx = &ctx;
    s.now = now;
    s.deadline = deadline;
    s.first = ready_before(now);
    std::vector<Choice> committed(choices.begin() + s.first, choices.end());
    s.lanes = Lanes::at(now);
    for (std::uint32_t c = 0; c < choices.size(); ++c) {
      const double ready = r.chunks[c].ready + t0;
      if (choices[c].recompute() && ready > now && recompute_start[c] <= now) {
        committed[c - s.first] = Choice::done();  // running: its end is the engine's lane
        s.lanes.recompute = ready;
      }
      if (ready > now) continue;
      if (c >= s.first) committed[c - s.first] = Choice::done();
      if (choices[c].fetched())
        s.done_loss += ctx.level_loss[choices[c].level] * ctx.chunks[c].tokens /
                       static_cast<double>(ctx.total_tokens());
    }
    s.committed = committed;
    s.estimate = estimator.estimate(now, outstanding);
    s.last_throughput = last_throughput;
    s.rates = rates;
    const Decision d = policy.decide(s);

    const std::uint32_t c = s.next();
    const ChunkCosts& cc = ctx.chunks[c];
    ChunkRecord& rec = r.chunks[c];
    rec.chunk = c;
    rec.choice = d.choice;
    rec.decided = now - t0;
    rec.estimate = s.estimate.bytes_per_s;
    rec.estimate_low = s.estimate.low_bytes_per_s;
    rec.predicted_finish = d.predicted_finish - t0;
    if (d.choice.recompute()) {
      // Needs every chunk before it.
      recompute_start[c] = std::max(engine, all_ready);
      engine = setup.recompute_tokens_per_s > 0
                   ? std::max(engine, all_ready) +
                         static_cast<double>(cc.tokens) / setup.recompute_tokens_per_s
                   : std::numeric_limits<double>::infinity();
      rec.landed = now - t0;
      rec.ready = engine - t0;
    } else {
      rec.bytes = cc.level_bytes[d.choice.level];
      link =
          trace.finish(std::max(link, now + setup.request_latency), static_cast<double>(rec.bytes));
      rec.landed = link - t0;
      const double decode = setup.decode_bytes_per_s > 0
                                ? static_cast<double>(cc.raw_bytes) / setup.decode_bytes_per_s
                                : 0.0;
      decoder = std::max(decoder, link) + decode;
      rec.ready = decoder - t0;
      slots.push_back(c);
      r.bytes += rec.bytes;
    }
    all_ready = std::max(all_ready, rec.ready + t0);
    choices.push_back(d.choice);
  }
  r.load_s = all_ready - t0;
  r.met = all_ready <= deadline;
  r.loss = plan_loss(ctx, 0, choices);
  return r;
}

}  // namespace kvstream::scheduler
