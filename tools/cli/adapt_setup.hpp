// What `kvstream bench adapt` measures against: a context streamed with a large model's KV shape
// (real values tiled from the reference model's KV, runner::model_shaped_kv) whose per-chunk,
// per-level sizes are the encoder's real output; the fp16 and int8 baselines' sizes; the decode
// speed of this machine's CPU decoder on it; and a quality meter on the reference model's own
// contexts, where chunk k of the stream stands for the same token range of every context.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cli/quality_meter.hpp"
#include "costs.hpp"
#include "kvstream/kv_cache.hpp"

namespace kvstream::cli {

struct AdaptSetupOptions {
  std::string model_path;
  std::uint32_t contexts = 48;  // for quality
  std::uint32_t ctx = 384, chunk = 32, continuation = 128;
  std::uint32_t max_level = 5;
  KvLayout shape{32, 8, 128, DType::f16, 0};  // the stream's (tokens: ctx)
  std::uint64_t seed = 7;
  unsigned threads = 1;          // quality scoring
  unsigned decode_threads = 1;   // each chunk's decode, as the fetch will decode it
  std::string archive_path;      // the stream's archive, written here
  bool verbatim_level0 = false;  // the archive's level 0 as verbatim values (a copy to decode)
};

// Which representation a policy's chunks travel in.
enum class Carrier { levels, fp16, int8 };

struct AdaptSetup {
  AdaptSetup(AdaptSetupOptions o, runner::Model m) : options(std::move(o)), model(std::move(m)) {}
  AdaptSetupOptions options;
  runner::Model model;
  // Level losses: the measured ΔPPL of the whole context at each level (at least 0).
  scheduler::ContextCosts levels;
  scheduler::ContextCosts fp16, int8;  // one option each
  std::vector<QualityScore> level_quality;
  QualityScore int8_quality;
  double decode_bytes_per_s = 0;  // options.decode_threads, the stream's chunks over every level
  std::vector<double> level_decode_bytes_per_s;                     // the same, level by level
  double fp16_decode_bytes_per_s = 0, int8_decode_bytes_per_s = 0;  // `codec eval`'s, one core
  double decode_rate(Carrier c) const {
    return c == Carrier::levels ? decode_bytes_per_s
           : c == Carrier::fp16 ? fp16_decode_bytes_per_s
                                : int8_decode_bytes_per_s;
  }
  std::unique_ptr<QualityMeter> meter;  // methods: level0..levelN, then int8

  const scheduler::ContextCosts& costs(Carrier c) const {
    return c == Carrier::levels ? levels : c == Carrier::fp16 ? fp16 : int8;
  }
  // The quality of a run's choices (recomputed chunks are exact).
  Expected<QualityScore> score(Carrier c, std::span<const scheduler::Choice> choices) const;
};

Expected<std::unique_ptr<AdaptSetup>> prepare_adapt(const AdaptSetupOptions& o);

}  // namespace kvstream::cli
