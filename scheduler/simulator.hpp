// Replays a bandwidth trace against a policy and the real estimator: the link carries fetched
// chunks in request order at the trace's rate, each starting no earlier than `request_latency`
// after its request; the decoder takes them as they land; the engine recomputes a chunk once
// every chunk before it is ready (finish_time's lanes); a receive slot is busy from request until
// its chunk is decoded, and at most `window` of them wait for their chunk to land, as in
// StreamReceiver's fetch (FetchOptions::backlog); a probing policy gets its first fetched
// chunk's landing before it decides another fetch (Policy::probes_first); and, as in
// fetch_adaptive, a queued recompute that would end late may become a fetch (revoke.hpp), and once
// every chunk is decided an upgrading policy may fetch chunks again at better levels
// (upgrade.hpp).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "costs.hpp"
#include "estimator.hpp"
#include "policy.hpp"
#include "trace.hpp"

namespace kvstream::scheduler {

struct SimSetup {
  const ContextCosts* ctx = nullptr;  // the options the policy picks from
  const Trace* trace = nullptr;
  double start = 0;            // when in the trace the fetch begins
  double deadline = 1;         // seconds after start
  double request_latency = 0;  // request to first byte
  std::uint32_t window = 1;    // fetched chunks on the link at once
  // Landed chunks that may wait for the decoder beyond the window (receive slots: window +
  // backlog, each held from request until its chunk is decoded).
  std::uint32_t backlog = 0;
  double decode_bytes_per_s = 0;                 // 0: free
  std::vector<double> level_decode_bytes_per_s;  // where a level differs (Rates)
  double recompute_tokens_per_s = 0;             // 0: the engine cannot recompute
  double seed_bytes_per_s = 0;                   // the estimator's prior
};

struct ChunkRecord {
  std::uint32_t chunk = 0;
  Choice choice;                               // what its KV holds in the end
  std::uint64_t bytes = 0;                     // on the wire, every fetch (0 when recomputed)
  double decided = 0, landed = 0, ready = 0;   // seconds after start (of its last fetch)
  double estimate = 0, estimate_low = 0;       // bytes/s, when decided
  double predicted_finish = 0;                 // seconds after start (NaN: the policy has none)
  std::optional<std::uint32_t> upgraded_from;  // the level it was first fetched at, if upgraded
};

struct RunResult {
  std::string policy;
  bool met = false;
  double load_s = 0;  // until the last chunk is ready
  double loss = 0;    // token-weighted expected loss of the choices
  std::uint64_t bytes = 0;
  std::vector<ChunkRecord> chunks;
};

// Needs setup.ctx checked and a trace.
RunResult simulate(const SimSetup& setup, Policy& policy);

}  // namespace kvstream::scheduler
