// Deadline-driven fetching: before each chunk request a policy (the planner by default) picks
// the chunk's level, or hands the chunk to the engine to recompute from its tokens, using the
// goodput estimator fed by the chunks that landed, the decode speed measured so far, and the
// engine's prefill rate. Once every chunk is decided, the planner spends the time left before
// the deadline fetching chunks again at better levels (its probe first of all).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <vector>

#include "costs.hpp"
#include "policy.hpp"
#include "session.hpp"

namespace kvstream::transport {

struct AdaptiveOptions {
  double deadline_s = 1;  // from the start of the fetch to every chunk ready
  // Expected loss at each level (e.g. ΔPPL % from `kvstream codec eval`); empty: each level
  // worse than the one below it by one unit, so the planner takes the lowest level that fits.
  std::vector<double> level_loss;
  scheduler::Policy* policy = nullptr;  // null: a new planner (a policy serves one fetch)
  // The link's goodput before any chunk lands, as configured (trusted like one landed chunk);
  // 0: UCX's estimate for the endpoint, if any (the interface's nominal rate: planned with at a
  // tenth).
  double seed_bytes_per_s = 0;
  // Decode speed (raw bytes per second) to plan with until decodes are timed (the first one is
  // not: it pays for the decoder's scratch); 0: free. Per level where known (level 0 decodes
  // slower than the lossy ones on the CPU); levels without one use decode_bytes_per_s. Then
  // each level plans with its own timed decodes, or its prior scaled as the others' measured
  // against theirs (scheduler/decode_speed.hpp).
  double decode_bytes_per_s = 0;
  std::vector<double> level_decode_bytes_per_s;
  // The engine: writes the KV of `chunk` (its tokens begin.. begin+tokens.size()) into the
  // destination, whose chunks before it are all there by then. Called in chunk order from a
  // thread of the fetch's own. Null, or a zero rate: the planner never recomputes.
  std::function<Status(std::uint32_t chunk, std::uint32_t begin,
                       std::span<const std::int32_t> tokens)>
      recompute;
  double recompute_tokens_per_s = 0;  // the engine's prefill rate, to plan with
};

// What happened to each chunk; times in seconds from the start of the fetch.
struct ChunkReport {
  std::uint32_t chunk = 0;
  scheduler::Choice choice;                   // what its KV holds in the end
  std::uint64_t bytes = 0;                    // on the wire, every fetch of it (0 when recomputed)
  double decided = 0, landed = 0, ready = 0;  // of its last fetch
  double estimate = 0, estimate_low = 0;      // bytes/s when decided
  double predicted_finish = 0;                // the policy's, when decided (NaN: none)
  // Handed to the engine, then fetched instead before the engine started it: its recompute
  // would have ended past the deadline (scheduler/revoke.hpp). `decided` is when it changed.
  bool revoked_recompute = false;
  // Fetched again at a better level once every chunk was decided (scheduler/upgrade.hpp): the
  // level it was first fetched at.
  std::optional<std::uint32_t> upgraded_from;
};

struct AdaptiveReport {
  std::string policy;
  std::vector<ChunkReport> chunks;  // by chunk
  double load_s = 0;                // until the last chunk was ready
  bool met = false;
  double expected_loss = 0;  // token-weighted level_loss of the choices
  std::uint64_t bytes = 0;
  // Per level, the decode speed the fetch would plan with now (its timed decodes; a prior where
  // it timed none; 0: not known): a receiver's next fetch can start from it, as a long-running
  // one would (`kvstream fetch --decode-gbps`).
  std::vector<double> decode_bytes_per_s;
};

// The planner's view of a stream: its chunks' sizes at every level and the given losses.
scheduler::ContextCosts stream_costs(const StreamInfo& info, std::span<const double> level_loss);

// Fetches every chunk of the stream into `dst` as fetch() does (options.level and first_chunk
// are not used), choosing each chunk's fate by `adaptive`. `report` holds every decision made,
// also when the fetch fails. An upgrade is decoded aside and copied over the chunk only once it
// decoded whole, so a fetch that fails in an upgrade leaves every chunk fetched before it whole,
// at the level it held; with options.consume the consumer gets an upgraded chunk a second time
// (under another want number) and decides itself.
Status fetch_adaptive(StreamReceiver& receiver, const StreamInfo& info, const KvView& dst,
                      const StreamReceiver::FetchOptions& options, const AdaptiveOptions& adaptive,
                      AdaptiveReport& report);

}  // namespace kvstream::transport
