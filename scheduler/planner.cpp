#include "planner.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <queue>
#include <utility>

namespace kvstream::scheduler {

namespace {

// One step up a chunk's hull: to `level`, saving `gain` loss per extra byte.
struct Step {
  std::uint32_t chunk, index, level;
  double gain;
};

// Each chunk's lower convex hull of (bytes, loss) over the levels, from its smallest level up:
// the gift-wrapping walk, always to the level that saves the most loss per extra byte.
std::vector<std::uint32_t> hull(const ChunkCosts& c, std::span<const double> loss) {
  const auto n = static_cast<std::uint32_t>(loss.size());
  std::uint32_t at = 0;
  for (std::uint32_t l = 1; l < n; ++l) {
    if (c.level_bytes[l] < c.level_bytes[at] ||
        (c.level_bytes[l] == c.level_bytes[at] && loss[l] < loss[at]))
      at = l;
  }
  std::vector<std::uint32_t> out{at};
  for (;;) {
    std::uint32_t best = n;
    double best_gain = 0;
    for (std::uint32_t l = 0; l < n; ++l) {
      if (c.level_bytes[l] <= c.level_bytes[at] || loss[l] >= loss[at]) continue;
      const double gain =
          (loss[at] - loss[l]) / static_cast<double>(c.level_bytes[l] - c.level_bytes[at]);
      if (best == n || gain > best_gain) best = l, best_gain = gain;
    }
    if (best == n) return out;
    out.push_back(at = best);
  }
}

// Slack per position: the minimum over a range of positions, and adding to every position of a
// range, each in O(log n) (a segment tree with lazy additions).
class MinTree {
 public:
  explicit MinTree(const std::vector<double>& v) : n_(v.size()) {
    while (size_ < v.size())
      size_ *= 2;
    min_.assign(2 * size_, std::numeric_limits<double>::infinity());
    add_.assign(2 * size_, 0);
    for (std::size_t i = 0; i < v.size(); ++i)
      min_[size_ + i] = v[i];
    for (std::size_t i = size_; i-- > 1;)
      min_[i] = std::min(min_[2 * i], min_[2 * i + 1]);
  }
  std::size_t size() const { return n_; }  // positions
  // Over [from, to).
  double min(std::size_t from, std::size_t to) const { return min(1, 0, size_, from, to); }
  void add(std::size_t from, std::size_t to, double x) { add(1, 0, size_, from, to, x); }

 private:
  // Node `node` covers [lo, hi); add_[node] applies to all of it and is counted in min_[node].
  double min(std::size_t node, std::size_t lo, std::size_t hi, std::size_t from,
             std::size_t to) const {
    if (hi <= from || lo >= to) return std::numeric_limits<double>::infinity();
    if (lo >= from && hi <= to) return min_[node];
    const std::size_t mid = (lo + hi) / 2;
    return add_[node] +
           std::min(min(2 * node, lo, mid, from, to), min(2 * node + 1, mid, hi, from, to));
  }
  void add(std::size_t node, std::size_t lo, std::size_t hi, std::size_t from, std::size_t to,
           double x) {
    if (hi <= from || lo >= to) return;
    if (lo >= from && hi <= to) {
      min_[node] += x;
      add_[node] += x;
      return;
    }
    const std::size_t mid = (lo + hi) / 2;
    add(2 * node, lo, mid, from, to, x);
    add(2 * node + 1, mid, hi, from, to, x);
    min_[node] = add_[node] + std::min(min_[2 * node], min_[2 * node + 1]);
  }
  std::size_t n_, size_ = 1;
  std::vector<double> min_, add_;
};

// An upgrade the plan took: the chunk at `pos` of Candidate::all went up from level `from`.
struct Taken {
  std::size_t pos;
  std::uint32_t from;
};

struct Candidate {
  std::vector<Choice> all;  // committed, then the plan
  double finish = 0, loss = 0;
  double first_given_up = 0;  // by the first planned chunk, to the tolerance
};

class Search {
 public:
  explicit Search(const PlanInput& in) : in_(in), ctx_(*in.ctx) {
    next_ = in.first + static_cast<std::uint32_t>(in.committed.size());
    n_ = ctx_.chunk_count();
    hulls_.reserve(n_ - next_);
    for (std::uint32_t c = next_; c < n_; ++c)
      hulls_.push_back(hull(ctx_.chunks[c], ctx_.level_loss));
  }

  std::uint32_t next() const { return next_; }
  std::uint32_t end() const { return n_; }

  // Recompute [next, k) and [m, n), fetch [k, m): the cheapest levels, then upgrades while the
  // plan finishes by the deadline.
  //
  // Only the decoder's finish depends on the middle's levels: the recomputed head needs only
  // chunks before it, and the tail starts once everything before it is ready. Unrolling the
  // decoder's lane, it finishes at max(decode_free + all decoding, max over fetched chunks i of
  // link_i + decoding from i on), and that must leave the tail its recompute time before the
  // deadline. Each of those terms has a slack; an upgrade of chunk c that takes x more seconds
  // of link and y more of decoding takes x from the terms of the fetched i >= c and y from the
  // decoder's own and those of the i <= c, and fits iff none goes below zero.
  Candidate build(std::uint32_t k, std::uint32_t m) const {
    Candidate cand;
    cand.all.assign(in_.committed.begin(), in_.committed.end());
    const std::size_t base = cand.all.size();
    for (std::uint32_t c = next_; c < n_; ++c)
      cand.all.push_back(c < k || c >= m ? Choice::recomputed()
                                         : Choice::fetch(hulls_[c - next_].front()));
    cand.finish = finish(cand.all);
    if (cand.finish <= in_.deadline && k < m) {
      const Rates& r = in_.rates;
      const std::size_t count = cand.all.size();
      double tail = 0;
      for (std::uint32_t c = m; c < n_; ++c)
        tail += static_cast<double>(ctx_.chunks[c].tokens) / r.recompute_tokens_per_s;
      std::vector<double> link_at(count);
      double link = in_.lanes.link;
      for (std::size_t i = 0; i < count; ++i) {
        const Choice ch = cand.all[i];
        if (ch.fetched()) link += seconds(in_.first + i, ch.level) + r.chunk_overhead_s;
        link_at[i] = link;
      }
      // Position 0: the decoder's own term; 1 + i: fetched chunk i's.
      std::vector<double> slack(count + 1, std::numeric_limits<double>::infinity());
      double after = 0;  // decoding from i on
      for (std::size_t i = count; i-- > 0;) {
        if (!cand.all[i].fetched()) continue;
        after += r.decode_s(ctx_.chunks[in_.first + i], cand.all[i].level);
        slack[1 + i] = in_.deadline - tail - (link_at[i] + after);
      }
      slack[0] = in_.deadline - tail - (in_.lanes.decode + after);
      MinTree tree(slack);
      std::vector<Step> steps;
      for (std::uint32_t c = k; c < m; ++c) {
        const auto& h = hulls_[c - next_];
        for (std::uint32_t i = 1; i < h.size(); ++i) {
          const ChunkCosts& cc = ctx_.chunks[c];
          const double gain = (ctx_.level_loss[h[i - 1]] - ctx_.level_loss[h[i]]) /
                              static_cast<double>(cc.level_bytes[h[i]] - cc.level_bytes[h[i - 1]]);
          steps.push_back({c, i, h[i], gain});
        }
      }
      std::stable_sort(steps.begin(), steps.end(), [](const Step& a, const Step& b) {
        // Equal gains go to the latest chunks first: the next chunk stays small and, if the link
        // slows down, the chunks still unasked can give their upgrades back.
        return a.gain > b.gain || (a.gain == b.gain && a.chunk > b.chunk);
      });
      std::vector<std::uint32_t> reached(m - k, 0);  // hull index per chunk, or blocked
      constexpr std::uint32_t kBlocked = 0xFFFFFFFF;
      std::vector<Taken> taken;  // in the order taken
      for (const Step& s : steps) {
        std::uint32_t& at = reached[s.chunk - k];
        if (at == kBlocked || at + 1 != s.index) continue;
        const std::size_t pos = base + (s.chunk - next_);
        const std::uint32_t from = cand.all[pos].level;
        if (move(tree, pos, s.chunk, from, s.level)) {
          taken.push_back({pos, from});
          cand.all[pos] = Choice::fetch(s.level);
          at = s.index;
        } else {
          at = kBlocked;  // a larger step of this chunk cannot fit either...
        }
      }
      // ...unless its best level decodes faster than the level it holds (a copy: a verbatim
      // level 0): then the larger step gives the decoder time back, and where the decoder is
      // what bounds the plan, it can fit where the smaller one did not. Latest chunk first.
      for (std::uint32_t c = m; c-- > k;) {
        if (reached[c - k] != kBlocked) continue;
        const std::size_t pos = base + (c - next_);
        const std::uint32_t from = cand.all[pos].level, best = hulls_[c - next_].back();
        const ChunkCosts& cc = ctx_.chunks[c];
        if (r.decode_s(cc, best) < r.decode_s(cc, from) && move(tree, pos, c, from, best)) {
          taken.push_back({pos, from});
          cand.all[pos] = Choice::fetch(best);
        }
      }
      give_up(cand, taken, base, tree);
      cand.finish = finish(cand.all);
    }
    cand.loss = plan_loss(ctx_, in_.first, cand.all, in_.done_loss);
    return cand;
  }

 private:
  // Moves the chunk at `pos` of a candidate from level `from` to `to` in the slack tree
  // (Search::build: position 0 is the decoder's own term, 1 + i fetched chunk i's) if no slack
  // goes below zero; otherwise leaves the tree as it was and says no.
  bool move(MinTree& tree, std::size_t pos, std::uint32_t chunk, std::uint32_t from,
            std::uint32_t to) const {
    const ChunkCosts& cc = ctx_.chunks[chunk];
    const double link_extra = seconds(chunk, to) - seconds(chunk, from);
    const double decode_extra = in_.rates.decode_s(cc, to) - in_.rates.decode_s(cc, from);
    const std::size_t end = tree.size();
    tree.add(0, pos + 2, -decode_extra);
    tree.add(pos + 1, end, -link_extra);
    double least = std::numeric_limits<double>::infinity();
    if (decode_extra > 0) least = std::min(least, tree.min(0, pos + 2));
    if (link_extra > 0) least = std::min(least, tree.min(pos + 1, end));
    if (least >= 0) return true;
    tree.add(0, pos + 2, decode_extra);
    tree.add(pos + 1, end, link_extra);
    return false;
  }

  // The tolerance: undo upgrades while what they saved adds up to at most in_.tolerance, the
  // smallest saving first (a level pair saves the same whatever the chunk of equal tokens), and
  // among equal ones the latest chunk's first; a chunk's upgrades come off from its best level
  // down. The latest chunks give theirs up because a big chunk asked near the end is the one no
  // later choice can make up for when the link slows: undoing the next chunk's first spent the
  // tolerance at the start and left the last chunks at level 0 (the step down at 0.15 s, asked
  // at 62 and 70 ms, 3.7 MB each, landed after the deadline). Not by gain per byte: between
  // chunks that differs only by a few bytes of size, which then decided the order.
  //
  // An undo must still leave the plan finishing in time: undoing a step to a copy level (a
  // verbatim level 0, which decodes faster than the level below it) gives decode time back, and
  // when the decoder is what bounds the plan that step is what made it fit. Such a chunk keeps
  // its level, and the ones below it on its stack.
  void give_up(Candidate& cand, std::span<const Taken> taken, std::size_t base,
               MinTree& tree) const {
    std::vector<std::vector<std::uint32_t>> stacks(cand.all.size());  // each chunk's `from`s
    for (const Taken& t : taken)
      stacks[t.pos].push_back(t.from);
    const double total = static_cast<double>(ctx_.total_tokens());
    const auto saved = [&](std::size_t pos) {
      return (ctx_.level_loss[stacks[pos].back()] - ctx_.level_loss[cand.all[pos].level]) *
             ctx_.chunks[in_.first + pos].tokens / total;
    };
    // Smallest saving on top; at equal savings the latest position.
    using Top = std::pair<double, std::size_t>;
    const auto later = [](const Top& a, const Top& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    };
    std::priority_queue<Top, std::vector<Top>, decltype(later)> tops(later);
    for (std::size_t pos = 0; pos < stacks.size(); ++pos)
      if (!stacks[pos].empty()) tops.emplace(saved(pos), pos);
    double given_up = 0;
    while (!tops.empty()) {
      const auto [step, pos] = tops.top();
      if (given_up + step > in_.tolerance) break;
      tops.pop();
      const auto chunk = in_.first + static_cast<std::uint32_t>(pos);
      if (!move(tree, pos, chunk, cand.all[pos].level, stacks[pos].back())) continue;
      given_up += step;
      cand.all[pos] = Choice::fetch(stacks[pos].back());
      stacks[pos].pop_back();
      if (pos == base) cand.first_given_up += step;
      if (!stacks[pos].empty()) tops.emplace(saved(pos), pos);
    }
  }

  double finish(std::span<const Choice> all) const {
    return finish_time(ctx_, in_.rates, in_.lanes, in_.first, all);
  }
  double seconds(std::size_t chunk, std::uint32_t level) const {
    return static_cast<double>(ctx_.chunks[chunk].level_bytes[level]) / in_.rates.link_bytes_per_s;
  }
  const PlanInput& in_;
  const ContextCosts& ctx_;
  std::uint32_t next_ = 0, n_ = 0;
  std::vector<std::vector<std::uint32_t>> hulls_;
};

// Split points to try between `from` and `to`: all of them for short contexts, about 64 evenly
// spread (and both ends) for long ones, to bound planning time.
std::vector<std::uint32_t> splits(std::uint32_t from, std::uint32_t to) {
  const std::uint32_t stride = std::max<std::uint32_t>(1, (to - from + 63) / 64);
  std::vector<std::uint32_t> out;
  for (std::uint32_t s = from; s < to; s += stride)
    out.push_back(s);
  out.push_back(to);
  return out;
}

}  // namespace

Plan plan_rest(const PlanInput& in) {
  const Search search(in);
  const std::uint32_t next = search.next(), n = search.end();
  const bool can_recompute = in.rates.recompute_tokens_per_s > 0;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> shapes{{next, n}};  // (k, m)
  if (can_recompute) {
    for (std::uint32_t k : splits(next, n))
      if (k != next) shapes.emplace_back(k, n);
    for (std::uint32_t m : splits(next, n))
      if (m != n) shapes.emplace_back(next, m);
  }
  // Least loss; at equal loss the fewest recomputed tokens (the engine's compute is what
  // fetching the cache saves), then the earliest finish. Shapes compete on their loss after the
  // tolerance's undo: a shape that recomputes more has fewer upgrades to give up, so when the
  // engine has the time it keeps a lossless plan that also sends less. Comparing before the undo
  // (the shape that recomputes least, then trimmed) measured worse: in the simulator's sweep it
  // fetched a first chunk at level 0 on the prior's word over a 0.2 Gbit/s link (1.0% ΔPPL at
  // 0.6 s where this gives 0.09%), and met 28 of 30 feasible runs against 29.
  const auto recomputed = [&](const Candidate& c) {
    std::uint64_t tokens = 0;
    for (std::size_t i = in.committed.size(); i < c.all.size(); ++i)
      if (c.all[i].recompute()) tokens += in.ctx->chunks[next + (i - in.committed.size())].tokens;
    return tokens;
  };
  const auto better_feasible = [&](const Candidate& a, const Candidate& b) {
    constexpr double kEps = 1e-12;
    if (a.loss < b.loss - kEps) return true;
    if (a.loss > b.loss + kEps) return false;
    const std::uint64_t ra = recomputed(a), rb = recomputed(b);
    if (ra != rb) return ra < rb;
    return a.finish < b.finish;
  };
  Candidate best, fastest;
  bool have_best = false, have_fastest = false;
  for (const auto& [k, m] : shapes) {
    Candidate c = search.build(k, m);
    if (c.finish <= in.deadline) {
      if (!have_best || better_feasible(c, best)) best = std::move(c), have_best = true;
    } else if (!have_best) {
      // No upgrades happened: this is the shape's fastest plan.
      if (!have_fastest || c.finish < fastest.finish ||
          (c.finish == fastest.finish && c.loss < fastest.loss))
        fastest = std::move(c), have_fastest = true;
    }
  }
  Candidate& chosen = have_best ? best : fastest;
  Plan plan;
  plan.choices.assign(chosen.all.begin() + static_cast<std::ptrdiff_t>(in.committed.size()),
                      chosen.all.end());
  plan.finish = chosen.finish;
  plan.loss = chosen.loss;
  plan.meets_deadline = have_best;
  plan.first_given_up = chosen.first_given_up;
  return plan;
}

}  // namespace kvstream::scheduler
