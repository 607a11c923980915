#include "simulator.hpp"

#include <algorithm>
#include <deque>
#include <limits>

#include "revoke.hpp"
#include "upgrade.hpp"

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
  rates.level_decode_bytes_per_s = setup.level_decode_bytes_per_s;
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
  double now = t0, link = t0, decoder = t0, engine = t0, all_ready = t0, last_throughput = 0;

  const auto ready_before = [&](double t) {
    std::uint32_t first = 0;
    while (first < choices.size() && r.chunks[first].ready + t0 <= t)
      ++first;
    return first;
  };
  // Fetches chunk c at `level`, asked now.
  const auto fetch = [&](std::uint32_t c, std::uint32_t level) {
    const ChunkCosts& cc = ctx.chunks[c];
    ChunkRecord& rec = r.chunks[c];
    const std::uint64_t bytes = cc.level_bytes[level];
    rec.bytes += bytes;
    link = trace.finish(std::max(link, now + setup.request_latency), static_cast<double>(bytes));
    rec.landed = link - t0;
    decoder = std::max(decoder, link) + rates.decode_s(cc, level);
    rec.ready = decoder - t0;
    slots.push_back(c);
    r.bytes += bytes;
  };
  // The bytes of chunk c's latest transfer.
  const auto transfer_bytes = [&](std::uint32_t c) {
    return ctx.chunks[c].level_bytes[choices[c].level];
  };
  // Lands, in order, what the link has delivered by now; the rest is outstanding.
  std::vector<bool> fed(n, false);  // fetched chunks the estimator has seen land
  const auto land = [&] {
    std::vector<Outstanding> outstanding;
    std::vector<std::uint32_t> landed;
    for (std::uint32_t c = 0; c < choices.size(); ++c) {
      const ChunkRecord& rec = r.chunks[c];
      if (choices[c].recompute() || fed[c]) continue;
      if (rec.landed + t0 > now) {
        outstanding.push_back({rec.decided + t0, transfer_bytes(c)});
      } else {
        landed.push_back(c);
      }
    }
    // A fetched chunk that was a recompute first is asked after later chunks: feed by landing.
    std::sort(landed.begin(), landed.end(), [&](std::uint32_t a, std::uint32_t b) {
      return r.chunks[a].landed < r.chunks[b].landed;
    });
    for (std::uint32_t c : landed) {
      const ChunkRecord& rec = r.chunks[c];
      estimator.add({rec.decided + t0, rec.landed + t0, transfer_bytes(c)});
      last_throughput = static_cast<double>(transfer_bytes(c)) / (rec.landed - rec.decided);
      fed[c] = true;
    }
    std::sort(outstanding.begin(), outstanding.end(),
              [](const Outstanding& a, const Outstanding& b) { return a.start < b.start; });
    return outstanding;
  };
  // A queued recompute the engine has not started may become a fetch (revoke.hpp), as in
  // fetch_adaptive; the recomputes queued after it are then scheduled again.
  const auto revoke = [&](const std::vector<Outstanding>& outstanding) {
    if (!policy.revokes_late_recomputes() || !(setup.recompute_tokens_per_s > 0)) return false;
    std::vector<std::uint32_t> queued;
    double engine_free = now;
    for (std::uint32_t c = 0; c < choices.size(); ++c) {
      if (!choices[c].recompute()) continue;
      if (recompute_start[c] > now) {
        queued.push_back(c);
      } else if (r.chunks[c].ready + t0 > now) {
        engine_free = r.chunks[c].ready + t0;
      }
    }
    if (queued.empty()) return false;
    const Estimate e = estimator.estimate(now, outstanding);
    if (e.samples == 0) return false;
    RevokeInput in;
    in.ctx = &ctx;
    in.now = now;
    in.deadline = deadline_in_hand(deadline, now);
    in.queued = queued;
    in.engine_free = engine_free;
    in.link_free = std::max(link, now);
    in.rates = rates;
    in.rates.link_bytes_per_s = e.recent_bytes_per_s;
    in.rest_bytes =
        static_cast<double>(ctx.smallest_bytes(static_cast<std::uint32_t>(choices.size())));
    const auto rv = revoke_late_recompute(in);
    if (!rv) return false;
    const std::uint32_t c = queued[rv->index];
    choices[c] = Choice::fetch(rv->level);
    ChunkRecord& rec = r.chunks[c];
    rec.choice = choices[c];
    rec.decided = now - t0;
    rec.estimate = e.bytes_per_s;
    rec.estimate_low = e.low_bytes_per_s;
    rec.predicted_finish = std::numeric_limits<double>::quiet_NaN();
    fetch(c, rv->level);
    engine = engine_free;
    for (std::uint32_t q : queued) {
      if (q == c) continue;
      double before = t0;  // every chunk before q ready
      for (std::uint32_t k = 0; k < q; ++k)
        before = std::max(before, r.chunks[k].ready + t0);
      recompute_start[q] = std::max(engine, before);
      engine = recompute_start[q] +
               static_cast<double>(ctx.chunks[q].tokens) / setup.recompute_tokens_per_s;
      r.chunks[q].ready = engine - t0;
    }
    all_ready = t0;
    for (std::uint32_t k = 0; k < choices.size(); ++k)
      all_ready = std::max(all_ready, r.chunks[k].ready + t0);
    return true;
  };
  // Once every chunk is decided and has landed, a chunk fetched again at a better level
  // (upgrade.hpp), as in fetch_adaptive.
  const auto upgrade = [&](const std::vector<Outstanding>& outstanding) {
    if (!policy.upgrades() || choices.size() < n || !outstanding.empty()) return false;
    const Estimate e = estimator.estimate(now);
    if (e.samples == 0) return false;
    UpgradeInput in;
    in.ctx = &ctx;
    in.held = choices;
    in.now = now;
    in.deadline = deadline_in_hand(deadline, now);
    in.link_free = std::max(link, now);
    in.decode_free = std::max(decoder, now);
    in.rates = rates;
    in.rates.link_bytes_per_s = upgrade_rate(e);
    const auto u = choose_upgrade(in);
    if (!u) return false;
    ChunkRecord& rec = r.chunks[u->chunk];
    if (!rec.upgraded_from) rec.upgraded_from = choices[u->chunk].level;
    choices[u->chunk] = Choice::fetch(u->level);
    rec.choice = choices[u->chunk];
    rec.decided = now - t0;
    rec.estimate = e.bytes_per_s;
    rec.estimate_low = e.low_bytes_per_s;
    rec.predicted_finish = u->ready - t0;
    fed[u->chunk] = false;
    fetch(u->chunk, u->level);
    all_ready = std::max(all_ready, rec.ready + t0);
    return true;
  };
  while (choices.size() < n || !slots.empty()) {
    // Free the slots whose chunks are decoded by now; if all are busy (or nothing is left to
    // decide), move to the next one's decoding.
    while (!slots.empty() && r.chunks[slots.front()].ready + t0 <= now)
      slots.pop_front();
    const std::size_t on_link =
        static_cast<std::size_t>(std::count_if(slots.begin(), slots.end(), [&](std::uint32_t c) {
          return r.chunks[c].landed + t0 > now;
        }));
    const std::uint32_t window = std::max(setup.window, 1u);
    const bool slot_free = slots.size() < window + setup.backlog && on_link < window;
    if (slot_free) {
      const std::vector<Outstanding> outstanding = land();
      if (revoke(outstanding) || upgrade(outstanding)) continue;
    }
    if (choices.size() == n || !slot_free) {
      if (slots.empty()) break;
      // The next landing (when a revocation may be due) or decoding, whichever is first.
      double next = r.chunks[slots.front()].ready + t0;
      for (std::uint32_t c : slots)
        if (r.chunks[c].landed + t0 > now) next = std::min(next, r.chunks[c].landed + t0);
      now = std::max(now, next);
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
    const std::vector<Outstanding> outstanding = land();
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
      all_ready = std::max(all_ready, rec.ready + t0);
      choices.push_back(d.choice);
    } else {
      choices.push_back(d.choice);
      fetch(c, d.choice.level);
      all_ready = std::max(all_ready, rec.ready + t0);
    }
  }
  r.load_s = all_ready - t0;
  r.met = all_ready <= deadline;
  r.loss = plan_loss(ctx, 0, choices);
  return r;
}

}  // namespace kvstream::scheduler
