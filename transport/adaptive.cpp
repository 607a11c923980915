// The adaptive fetch: a WantSource that asks a scheduler policy before each request (and, once
// every chunk is decided, asks for upgrades), and an engine thread that recomputes the chunks
// the policy gives it, each once the chunks before it are ready.
#include "adaptive.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>

#include "decode_speed.hpp"
#include "estimator.hpp"
#include "kvstream/codec.hpp"
#include "revoke.hpp"
#include "upgrade.hpp"

namespace kvstream::transport {

using scheduler::Choice;

scheduler::ContextCosts stream_costs(const StreamInfo& info, std::span<const double> level_loss) {
  scheduler::ContextCosts ctx;
  for (std::uint32_t l = 0; l < info.levels; ++l)
    ctx.level_loss.push_back(l < level_loss.size() ? level_loss[l] : static_cast<double>(l));
  const std::uint64_t token_bytes = info.layout.total_bytes() / std::max(info.layout.tokens, 1u);
  for (std::uint32_t c = 0; c < info.chunk_count; ++c) {
    scheduler::ChunkCosts cc;
    const std::uint32_t begin = c * info.chunk_tokens;
    cc.tokens = std::min(info.chunk_tokens, info.layout.tokens - begin);
    cc.raw_bytes = token_bytes * cc.tokens;
    for (std::uint32_t l = 0; l < info.levels; ++l)
      cc.level_bytes.push_back(info.size(c, l));
    ctx.chunks.push_back(std::move(cc));
  }
  return ctx;
}

namespace {

// An upgrade decodes into a window of one chunk and is copied over the chunk's first copy only
// once it decoded whole: a chunk that fails its checks halfway (a malformed bitstream under valid
// checksums) must not spoil a copy that was complete.
class UpgradeWindow {
 public:
  Status decode(ChunkDecoder& decoder, std::span<const std::byte> bytes, const KvView& dst,
                std::uint32_t chunk, const StreamInfo& info, const CodecProfile* profile) {
    if (!window_) {
      // Every block of the context's token range maps to the pool's one block.
      const KvLayout& l = dst.layout();
      const std::vector<std::uint32_t> table((l.tokens + info.chunk_tokens - 1) / info.chunk_tokens,
                                             0);
      KVS_ASSIGN_OR_RETURN(PagedKvBuffer b, PagedKvBuffer::create(l, info.chunk_tokens, 1, table));
      window_.emplace(std::move(b));
    }
    KVS_RETURN_IF_ERROR(decoder.decode(bytes, window_->view(), profile));
    const std::uint32_t begin = chunk * info.chunk_tokens;
    return copy_tokens(window_->view(), begin, dst, begin,
                       std::min(info.chunk_tokens, info.layout.tokens - begin));
  }

 private:
  std::optional<PagedKvBuffer> window_;
};

class AdaptiveSource final : public WantSource {
 public:
  AdaptiveSource(const StreamInfo& info, const scheduler::ContextCosts& ctx,
                 const AdaptiveOptions& o, scheduler::Policy& policy, double seed,
                 scheduler::GoodputEstimator::Seed seed_kind, AdaptiveReport& report)
      : info_(info),
        ctx_(ctx),
        o_(o),
        policy_(policy),
        report_(report),
        decode_speed_(ctx.levels(), o.decode_bytes_per_s, o.level_decode_bytes_per_s) {
    if (seed > 0) estimator_.seed(seed, seed_kind);
    report_.chunks.assign(ctx.chunk_count(), {});
    ready_.assign(ctx.chunk_count(), false);
    for (std::uint32_t c = 0; c < ctx.chunk_count(); ++c)
      report_.chunks[c].chunk = c;
    if (o.recompute) engine_ = std::thread([this] { run_engine(); });
  }
  ~AdaptiveSource() override { stop_engine(); }

  Next next() override {
    std::lock_guard lock(mu_);
    if (const auto w = revoke_late_recompute()) return want(*w);
    while (choices_.size() < ctx_.chunk_count()) {
      // A probing policy's first fetched chunk lands before it is asked for another.
      if (policy_.probes_first() && !asked_.empty() &&
          std::none_of(asked_.begin(), asked_.end(), [](const Asked& a) { return a.landed; }))
        return {Next::Kind::wait, {}};
      const Choice choice = decide();
      if (choice.fetched())
        return want({static_cast<std::uint32_t>(choices_.size()) - 1, choice.level});
    }
    if (const auto w = upgrade()) return want(*w, /*upgrade=*/true);
    // All decided; after the next landing a queued recompute may still turn into a fetch, and
    // the estimate may leave time for an upgrade.
    if (!in_flight().empty() && (!queued_not_running().empty() || policy_.upgrades()))
      return {Next::Kind::wait, {}};
    return {};
  }

  void landed(std::size_t i, std::size_t bytes, Clock::time_point asked,
              Clock::time_point at) override {
    std::lock_guard lock(mu_);
    asked_[i].landed = true;
    ChunkReport& r = report_.chunks[asked_[i].chunk];
    r.landed = seconds(at);
    estimator_.add({seconds(asked), r.landed, bytes});
    const double took = r.landed - seconds(asked);
    if (took > 0) last_throughput_ = static_cast<double>(bytes) / took;
  }

  // Times the decoder on want `i`, to plan with the decode speed this machine has. The first
  // decode pays for growing the decoder's scratch and is not counted.
  void decoded(std::size_t i, Clock::duration took) {
    const double s = std::chrono::duration<double>(took).count();
    std::lock_guard lock(mu_);
    if (decodes_++ > 0) {
      decode_speed_.add(asked_[i].level,
                        static_cast<double>(ctx_.chunks[asked_[i].chunk].raw_bytes), s);
    }
  }

  // The chunk of want `i` if it is an upgrade (a chunk fetched again).
  std::optional<std::uint32_t> upgrade_of(std::size_t i) {
    std::lock_guard lock(mu_);
    if (!asked_[i].upgrade) return {};
    return asked_[i].chunk;
  }

  void taken(std::size_t i) override {
    std::lock_guard lock(mu_);
    asked_[i].taken = true;
    ready_[asked_[i].chunk] = true;
    report_.chunks[asked_[i].chunk].ready = seconds(Clock::now());
    cv_.notify_all();
  }

  // Waits for the engine to finish what it was given (or to fail, or to be stopped).
  Status finish_engine() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return engine_queue_.empty() || !engine_status_.is_ok() || stop_; });
    Status s = engine_status_;
    lock.unlock();
    stop_engine();
    return s;
  }

  void stop_engine() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
      cv_.notify_all();
    }
    if (engine_.joinable()) engine_.join();
  }

  void finish_report() {
    const double end = seconds(Clock::now());
    std::lock_guard lock(mu_);
    report_.policy = policy_.name();
    report_.load_s = end;
    report_.decode_bytes_per_s.clear();
    for (std::uint32_t l = 0; l < ctx_.levels(); ++l)
      report_.decode_bytes_per_s.push_back(decode_speed_.rate(l));
    report_.met = choices_.size() == ctx_.chunk_count() &&
                  std::all_of(ready_.begin(), ready_.end(), [](bool b) { return b; }) &&
                  end <= o_.deadline_s;
    report_.expected_loss = scheduler::plan_loss(ctx_, 0, choices_);
    report_.bytes = 0;
    for (const ChunkReport& r : report_.chunks)
      report_.bytes += r.bytes;
  }

 private:
  double seconds(Clock::time_point t) const {
    return std::chrono::duration<double>(t - start_).count();
  }

  // Records a want (under mu_).
  Next want(StreamReceiver::Want w, bool upgrade = false) {
    asked_.push_back({w.chunk, w.level, seconds(Clock::now()),
                      ctx_.chunks[w.chunk].level_bytes[w.level], upgrade});
    return {Next::Kind::want, w};
  }

  // The fetched chunks asked for and not landed yet, oldest first (under mu_).
  std::vector<scheduler::Outstanding> in_flight() const {
    std::vector<scheduler::Outstanding> out;
    for (const Asked& a : asked_)
      if (!a.landed) out.push_back({a.at, a.bytes});
    return out;
  }

  // When the engine's running chunk ends at the configured rate (running_ >= 0; under mu_).
  double running_end() const {
    const auto c = static_cast<std::uint32_t>(running_);
    return seconds(running_since_) +
           static_cast<double>(ctx_.chunks[c].tokens) / o_.recompute_tokens_per_s;
  }

  // The engine's queue without the chunk it is running (under mu_).
  std::vector<std::uint32_t> queued_not_running() const {
    std::vector<std::uint32_t> q;
    for (std::uint32_t c : engine_queue_)
      if (static_cast<std::int64_t>(c) != running_) q.push_back(c);
    return q;
  }

  // A queued recompute that would end past the deadline, when fetching it now is sooner,
  // becomes a fetch (scheduler/revoke.hpp); under mu_.
  std::optional<StreamReceiver::Want> revoke_late_recompute() {
    if (!policy_.revokes_late_recomputes() || !o_.recompute || !(o_.recompute_tokens_per_s > 0))
      return {};
    const std::vector<std::uint32_t> queued = queued_not_running();
    if (queued.empty()) return {};
    const double now = seconds(Clock::now());
    const std::vector<scheduler::Outstanding> outstanding = in_flight();
    double in_flight_bytes = 0;
    for (const scheduler::Outstanding& o : outstanding)
      in_flight_bytes += static_cast<double>(o.bytes);
    const scheduler::Estimate e = estimator_.estimate(now, outstanding);
    if (e.samples == 0) return {};  // nothing known of the link but a seed
    scheduler::RevokeInput in;
    in.ctx = &ctx_;
    in.now = now;
    in.deadline = scheduler::deadline_in_hand(o_.deadline_s, now);
    in.queued = queued;
    in.engine_free = running_ >= 0 ? running_end() : now;
    // As the planner falls back to when nothing fits: the rate the link has shown lately.
    in.rates.link_bytes_per_s = e.recent_bytes_per_s;
    decode_speed_.fill(in.rates);
    in.rates.recompute_tokens_per_s = o_.recompute_tokens_per_s;
    in.link_free = now + in_flight_bytes / e.recent_bytes_per_s;
    in.rest_bytes =
        static_cast<double>(ctx_.smallest_bytes(static_cast<std::uint32_t>(choices_.size())));
    const auto r = scheduler::revoke_late_recompute(in);
    if (!r) return {};
    const std::uint32_t chunk = queued[r->index];
    engine_queue_.erase(std::find(engine_queue_.begin(), engine_queue_.end(), chunk));
    choices_[chunk] = Choice::fetch(r->level);
    ChunkReport& rep = report_.chunks[chunk];
    rep.choice = choices_[chunk];
    rep.revoked_recompute = true;
    rep.decided = now;
    rep.estimate = e.bytes_per_s;
    rep.estimate_low = e.low_bytes_per_s;
    rep.predicted_finish = std::numeric_limits<double>::quiet_NaN();
    rep.bytes = ctx_.chunks[chunk].level_bytes[r->level];
    cv_.notify_all();
    return StreamReceiver::Want{chunk, r->level};
  }

  // Once every chunk is decided and has landed: a chunk fetched again at a better level, if the
  // link (at upgrade_rate) and the decoder (at the slowest decode measured: level 0 decodes
  // slower than the lossy levels that set the running mean) make it ready in time (under mu_).
  // Not sooner: the estimate behind the decision is then the best the fetch will have (a first
  // chunk can fit into socket buffers or a pacer's burst and land at once).
  std::optional<StreamReceiver::Want> upgrade() {
    if (!policy_.upgrades() || choices_.size() < ctx_.chunk_count() || !in_flight().empty())
      return {};
    const double now = seconds(Clock::now());
    const scheduler::Estimate e = estimator_.estimate(now);
    if (e.samples == 0) return {};
    scheduler::UpgradeInput in;
    in.ctx = &ctx_;
    in.held = choices_;
    in.now = now;
    in.deadline = scheduler::deadline_in_hand(o_.deadline_s, now);
    in.rates.link_bytes_per_s = scheduler::upgrade_rate(e);
    decode_speed_.fill(in.rates, /*slowest=*/true);
    double to_decode = 0;
    for (const Asked& a : asked_)
      if (!a.taken) to_decode += in.rates.decode_s(ctx_.chunks[a.chunk], a.level);
    in.link_free = now;
    in.decode_free = now + to_decode;
    const auto u = scheduler::choose_upgrade(in);
    if (!u) return {};
    ChunkReport& r = report_.chunks[u->chunk];
    if (!r.upgraded_from) r.upgraded_from = choices_[u->chunk].level;
    choices_[u->chunk] = Choice::fetch(u->level);
    ready_[u->chunk] = false;
    r.choice = choices_[u->chunk];
    r.decided = now;
    r.estimate = e.bytes_per_s;
    r.estimate_low = e.low_bytes_per_s;
    r.predicted_finish = u->ready;
    r.bytes += ctx_.chunks[u->chunk].level_bytes[u->level];
    return StreamReceiver::Want{u->chunk, u->level};
  }

  // Decides the next chunk (under mu_); a recompute goes to the engine's queue.
  Choice decide() {
    const double now = seconds(Clock::now());
    scheduler::Situation s;
    s.ctx = &ctx_;
    s.now = now;
    s.deadline = o_.deadline_s;
    while (s.first < choices_.size() && ready_[s.first])
      ++s.first;
    std::vector<Choice> committed(choices_.begin() + s.first, choices_.end());
    for (std::uint32_t c = 0; c < choices_.size(); ++c) {
      if (!ready_[c]) continue;
      if (c >= s.first) committed[c - s.first] = Choice::done();
      if (choices_[c].fetched())
        s.done_loss += ctx_.level_loss[choices_[c].level] * ctx_.chunks[c].tokens /
                       static_cast<double>(ctx_.total_tokens());
    }
    s.lanes = scheduler::Lanes::at(now);
    if (running_ >= 0 && o_.recompute_tokens_per_s > 0) {
      // The engine's running chunk: done as far as planning goes, its end the engine's lane.
      committed[static_cast<std::uint32_t>(running_) - s.first] = Choice::done();
      s.lanes.recompute = std::max(now, running_end());
    }
    s.committed = committed;
    s.estimate = estimator_.estimate(now, in_flight());
    s.last_throughput = last_throughput_;
    decode_speed_.fill(s.rates);
    s.rates.recompute_tokens_per_s = o_.recompute ? o_.recompute_tokens_per_s : 0.0;
    const scheduler::Decision d = policy_.decide(s);

    const std::uint32_t chunk = s.next();
    Choice choice = d.choice;
    if (choice.recompute() && !o_.recompute) {
      // A baseline policy may ask for it with no engine to do it: fetch the smallest instead.
      choice = Choice::fetch(ctx_.chunks[chunk].smallest_level());
    }
    ChunkReport& r = report_.chunks[chunk];
    r.choice = choice;
    r.decided = now;
    r.estimate = s.estimate.bytes_per_s;
    r.estimate_low = s.estimate.low_bytes_per_s;
    r.predicted_finish = d.predicted_finish;
    if (choice.fetched()) r.bytes = ctx_.chunks[chunk].level_bytes[choice.level];
    choices_.push_back(choice);
    if (choice.recompute()) {
      engine_queue_.push_back(chunk);
      cv_.notify_all();
    }
    return choice;
  }

  // The engine thread: each queued chunk once every chunk before it is ready.
  void run_engine() {
    for (;;) {
      std::uint32_t chunk = 0;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] {
          if (stop_) return true;
          if (engine_queue_.empty()) return false;
          const std::uint32_t c = engine_queue_.front();
          return std::all_of(ready_.begin(), ready_.begin() + c, [](bool b) { return b; });
        });
        if (stop_) return;
        chunk = engine_queue_.front();
        running_ = chunk;
        running_since_ = Clock::now();
      }
      const std::uint32_t begin = chunk * info_.chunk_tokens;
      const std::span<const std::int32_t> tokens =
          std::span(info_.tokens).subspan(begin, ctx_.chunks[chunk].tokens);
      const Status s = o_.recompute(chunk, begin, tokens);
      std::lock_guard lock(mu_);
      if (!s.is_ok()) {
        engine_status_ =
            Status(s.code(), fmt::format("recompute of chunk {}: {}", chunk, s.message()));
        cv_.notify_all();
        return;
      }
      ready_[chunk] = true;
      running_ = -1;
      report_.chunks[chunk].ready = seconds(Clock::now());
      report_.chunks[chunk].landed = report_.chunks[chunk].decided;
      engine_queue_.pop_front();
      cv_.notify_all();
    }
  }

  const StreamInfo& info_;
  const scheduler::ContextCosts& ctx_;
  const AdaptiveOptions& o_;
  scheduler::Policy& policy_;
  AdaptiveReport& report_;
  const Clock::time_point start_ = Clock::now();

  std::mutex mu_;
  std::condition_variable cv_;
  scheduler::GoodputEstimator estimator_;
  double last_throughput_ = 0;
  scheduler::DecodeSpeed decode_speed_;
  std::uint64_t decodes_ = 0;
  std::vector<Choice> choices_;  // by chunk, as decided (and upgraded)
  struct Asked {
    std::uint32_t chunk, level;
    double at;  // seconds
    std::uint64_t bytes;
    bool upgrade;  // the chunk fetched again (upgrade())
    bool landed = false, taken = false;
  };
  std::vector<Asked> asked_;  // by want number
  std::vector<bool> ready_;
  std::deque<std::uint32_t> engine_queue_;
  std::int64_t running_ = -1;  // the chunk the engine is recomputing
  Clock::time_point running_since_{};
  Status engine_status_ = Status::ok();
  bool stop_ = false;
  std::thread engine_;
};

}  // namespace

Status fetch_adaptive(StreamReceiver& receiver, const StreamInfo& info, const KvView& dst,
                      const StreamReceiver::FetchOptions& options, const AdaptiveOptions& adaptive,
                      AdaptiveReport& report) {
  report = {};
  if (!(adaptive.deadline_s > 0))
    return Status(Errc::invalid_argument, "adaptive fetch: the deadline must be positive");
  if (!adaptive.level_loss.empty() && adaptive.level_loss.size() != info.levels) {
    return Status(Errc::invalid_argument,
                  fmt::format("adaptive fetch: {} level losses for a stream of {} levels",
                              adaptive.level_loss.size(), info.levels));
  }
  if (info.chunk_count == 0) return Status::ok();
  const scheduler::ContextCosts ctx = stream_costs(info, adaptive.level_loss);
  KVS_RETURN_IF_ERROR(ctx.check());
  const auto planner = scheduler::planner_policy();
  scheduler::Policy& policy = adaptive.policy ? *adaptive.policy : *planner;
  const std::uint32_t max_size = *std::max_element(info.sizes.begin(), info.sizes.end());
  // A configured seed is a known rate; UCX's is the interface's nominal one.
  double seed = adaptive.seed_bytes_per_s;
  auto seed_kind = scheduler::GoodputEstimator::Seed::configured;
  if (!(seed > 0)) {
    seed = receiver.link_estimate(info.size(0, 0));
    seed_kind = scheduler::GoodputEstimator::Seed::nominal;
  }

  // The slots are made before the deadline's clock starts: setting up is not fetching.
  KVS_RETURN_IF_ERROR(receiver.reserve_slots(options.slot_count(), max_size));
  AdaptiveSource source(info, ctx, adaptive, policy, seed, seed_kind, report);
  // Decode here (or in the caller's consumer), timed, so that the plan uses this machine's speed.
  StreamReceiver::FetchOptions o = options;
  ChunkDecoder decoder(options.decode_threads);
  UpgradeWindow window;
  o.consume = [&](std::size_t want, std::span<const std::byte> bytes) -> Status {
    const auto t0 = Clock::now();
    const std::optional<std::uint32_t> upgraded = source.upgrade_of(want);
    const Status s = options.consume ? options.consume(want, bytes)
                     : upgraded
                         ? window.decode(decoder, bytes, dst, *upgraded, info, options.profile)
                         : decoder.decode(bytes, dst, options.profile);
    source.decoded(want, Clock::now() - t0);
    return s;
  };
  Status s = receiver.fetch_from(info, dst, source, max_size, o, {});
  if (s.is_ok()) {
    s = source.finish_engine();
  } else {
    source.stop_engine();
  }
  source.finish_report();
  return s;
}

}  // namespace kvstream::transport
