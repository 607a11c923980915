// Calibration of codec profiles against the reference model: how much quality each level costs
// on real contexts, and step sizes that spend a quality budget where it is cheapest.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "kvstream/codec.hpp"
#include "kvstream/kv_cache.hpp"
#include "runner/model.hpp"
#include "runner/runner.hpp"

namespace kvstream::cli {

// Holds the fp16 KV caches and reference logits of a set of contexts, and measures the mean KL
// (nats per scored token) between the predictions made with them and with their coded copies.
class KlMeter {
 public:
  static Expected<std::unique_ptr<KlMeter>> create(
      const runner::Model& model, std::span<const std::vector<std::int32_t>> contexts,
      std::uint32_t ctx, std::uint32_t chunk, unsigned threads);
  Expected<double> measure(const CodecProfile& profile, std::uint8_t level);
  // The contexts' fp16 KV caches of `ctx()` tokens, and the chunk size.
  std::span<const KvBuffer> references() const noexcept { return refs_; }
  std::uint32_t ctx() const noexcept { return ctx_; }
  std::uint32_t chunk() const noexcept { return chunk_; }
  const runner::Model& model() const noexcept { return *model_; }

 private:
  KlMeter() = default;
  struct Worker {
    std::unique_ptr<runner::Runner> runner;
    std::unique_ptr<KvBuffer> decoded;
    std::vector<std::byte> chunk;
    ChunkEncoder encoder;
    ChunkDecoder decoder;
  };
  const runner::Model* model_ = nullptr;
  std::span<const std::vector<std::int32_t>> contexts_;
  std::uint32_t ctx_ = 0, chunk_ = 0;
  unsigned threads_ = 1;
  std::vector<KvBuffer> refs_;
  std::vector<std::vector<float>> ref_logits_;
  std::vector<Worker> workers_;
};

struct CalibrationOptions {
  // Mean KL per level, nats: about +0.1%, int8 quality (int8 costs ~2e-3 on stories260K), then
  // up to about +10% perplexity.
  std::vector<double> targets = {1e-3, 2e-3, 5e-3, 1e-2, 3e-2, 1e-1};
  float probe_step = 0.5f;  // relative step used to measure each segment's sensitivity
  int iterations = 6;       // step-scale refinements per level
  // Transform coding (codec/FORMAT.md): fit a KvTransform to the meter's caches and calibrate
  // the levels' coefficient steps. The model's RoPE: its frequencies (empty: none) and pairing.
  bool transform = false;
  std::vector<float> rope_frequencies;
  RopePairs rope_pairs = RopePairs::interleaved;
};

// "1e-3,3e-3,...": each level's mean-KL target (nats), positive and ascending, 1 to 15 of them
// (the chunk format's lossy levels).
Expected<std::vector<double>> parse_targets(std::string_view text);

// Measures each (layer, K|V, channel group)'s sensitivity alone, then for each target sets relative
// steps proportional to 1/sqrt(sensitivity) (the allocation that minimises size for an additive
// quality loss) and scales them until the measured KL meets the target. With
// `options.transform`, the sensitivities weigh the channels of a fitted transform instead, whose
// coefficients then share one step per level. `log` receives one line per measurement.
Expected<CodecProfile> calibrate(KlMeter& meter, std::uint32_t layers, std::uint32_t groups,
                                 const CalibrationOptions& options,
                                 const std::function<void(const std::string&)>& log);

}  // namespace kvstream::cli
