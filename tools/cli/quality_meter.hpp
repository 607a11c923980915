// Quality of a context whose chunks came by different means (DESIGN.md's measures): the real
// model's KV of each context, each chunk's token range taken from one method's decoded cache
// (a codec level, int8, ...) or exact (fp16, or recomputed), scored on the continuation against
// the lossless cache. What an adaptive fetch's choices cost, measured rather than assumed.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvstream/codec.hpp"
#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"
#include "runner/model.hpp"

namespace kvstream::cli {

struct QualityScore {
  double delta_ppl_pct = 0, top1 = 0, kl = 0;
  std::uint64_t positions = 0;  // tokens scored, over all contexts
};

class QualityMeter {
 public:
  static constexpr int kExact = -1;  // a chunk as the lossless cache has it

  // `methods`: names from `codec eval` (e.g. "level2", "int8"); each context is at least
  // ctx + 2 tokens. Encodes and decodes every chunk of every context with every method once.
  static Expected<std::unique_ptr<QualityMeter>> create(
      const runner::Model& model, std::vector<std::vector<std::int32_t>> contexts,
      std::uint32_t ctx, std::uint32_t chunk, const CodecProfile& profile,
      std::span<const std::string> methods, unsigned threads);

  std::uint32_t chunks() const { return (ctx_ + chunk_ - 1) / chunk_; }
  const std::vector<std::string>& methods() const { return names_; }
  std::size_t contexts() const { return contexts_.size(); }
  // `per_chunk[c]`: an index into methods(), or kExact.
  Expected<QualityScore> measure(std::span<const int> per_chunk, unsigned threads) const;

 private:
  QualityMeter() = default;
  struct Context {
    std::vector<std::int32_t> tokens;
    std::optional<KvBuffer> reference;  // set once made
    std::vector<KvBuffer> decoded;      // by method
    std::vector<float> reference_logits;
  };
  const runner::Model* model_ = nullptr;
  std::uint32_t ctx_ = 0, chunk_ = 0;
  std::vector<std::string> names_;
  std::vector<Context> contexts_;
};

}  // namespace kvstream::cli
