// What the planner knows about a context and about the machines: per chunk, its tokens, its
// decoded size and its size on the wire at each level; per level, the quality it costs; and the
// rates of the link, the decoder and the engine's recompute. Times are seconds on the caller's
// clock: the scheduler never reads a clock of its own.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kvstream/status.hpp"

namespace kvstream::scheduler {

struct ChunkCosts {
  std::uint32_t tokens = 0;
  std::uint64_t raw_bytes = 0;             // decoded (fp16) size: what decode rates count
  std::vector<std::uint64_t> level_bytes;  // on the wire, at each level
  // The level with the fewest bytes on the wire (the first of equals): the fastest fetch.
  std::uint32_t smallest_level() const;
};

struct ContextCosts {
  std::vector<ChunkCosts> chunks;
  // Expected quality loss (ΔPPL %, lower is better) of a context held entirely at each level.
  // A context mixing levels is charged each chunk's loss weighted by its share of the tokens.
  std::vector<double> level_loss;

  std::uint32_t levels() const { return static_cast<std::uint32_t>(level_loss.size()); }
  std::uint32_t chunk_count() const { return static_cast<std::uint32_t>(chunks.size()); }
  std::uint64_t total_tokens() const;
  // The bytes the link must carry at the least for chunks `from`.. (each at its smallest level).
  std::uint64_t smallest_bytes(std::uint32_t from) const;
  // Every chunk has a size for every level, at least one token, and losses are finite and >= 0.
  Status check() const;
};

struct Rates {
  double link_bytes_per_s = 0;        // goodput to plan with (the estimator's conservative bound)
  double decode_bytes_per_s = 0;      // raw bytes decoded per second; 0: decoding is free
  double recompute_tokens_per_s = 0;  // the engine's prefill rate; 0: it cannot recompute
  double chunk_overhead_s = 0;        // link time per request beyond its bytes (latency not hidden)
  // Decode speed per level, where it differs: level 0 (lossless) decodes at a fraction of the
  // lossy levels' speed on the CPU, and a planner that saw one speed for all chose it for chunks
  // the decoder then made late. Levels without an entry (or with 0) decode at decode_bytes_per_s.
  std::vector<double> level_decode_bytes_per_s;
  double decode_rate(std::uint32_t level) const {
    return level < level_decode_bytes_per_s.size() && level_decode_bytes_per_s[level] > 0
               ? level_decode_bytes_per_s[level]
               : decode_bytes_per_s;
  }
  // Seconds the decoder takes for chunk `c` at `level` (0 when decoding is free).
  double decode_s(const ChunkCosts& c, std::uint32_t level) const {
    const double rate = decode_rate(level);
    return rate > 0 ? static_cast<double>(c.raw_bytes) / rate : 0.0;
  }
};

// What to do with one chunk: fetch it at a level, or have the engine recompute it from its
// tokens (which the receiver already holds: the stream's description carries them). Among the
// chunks a plan has committed to, `ready` marks one already done: it takes no more lane time,
// and its loss is counted where the ready ones are.
struct Choice {
  static constexpr std::uint32_t kRecompute = 0xFFFFFFFF, kReady = 0xFFFFFFFE;
  std::uint32_t level = 0;
  bool recompute() const { return level == kRecompute; }
  bool ready() const { return level == kReady; }
  bool fetched() const { return level < kReady; }
  static Choice fetch(std::uint32_t l) { return {l}; }
  static Choice recomputed() { return {kRecompute}; }
  static Choice done() { return {kReady}; }
  friend bool operator==(Choice, Choice) = default;
};
std::string to_string(Choice c);  // "L3", "recompute" or "ready"

// When each lane is next free: the link; the decoder; the engine's recompute.
struct Lanes {
  double link = 0, decode = 0, recompute = 0;
  static Lanes at(double now) { return {now, now, now}; }
};

// Runs `plan` (one choice per chunk from `first` on) through the lanes: the link carries fetched
// chunks in order and the decoder takes each once it has landed; a recomputed chunk needs the KV
// of every chunk before it, so it starts once they are all ready. So recomputing a head overlaps
// fetching what follows it, and a recomputed tail waits for everything before it.
// Returns when the last chunk is ready.
double finish_time(const ContextCosts& ctx, const Rates& rates, Lanes lanes, std::uint32_t first,
                   std::span<const Choice> plan);

// Token-weighted loss of a whole-context plan (chunks before `first` count as `done_loss`, the
// loss already committed).
double plan_loss(const ContextCosts& ctx, std::uint32_t first, std::span<const Choice> plan,
                 double done_loss = 0);

}  // namespace kvstream::scheduler
