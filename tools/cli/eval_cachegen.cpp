#include "cli/eval_cachegen.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <span>

#include "cli/eval_rows.hpp"
#include "kvstream/half.hpp"

namespace kvstream::cli {

namespace {

// Bits to code the counted symbols under their own empirical distribution.
double entropy_bits(std::span<const std::uint32_t> hist) {
  double total = 0, bits = 0;
  for (std::uint32_t c : hist)
    total += c;
  for (std::uint32_t c : hist) {
    if (c > 0) bits -= c * std::log2(c / total);
  }
  return bits;
}

// Quantizes `x` (C values) to integers in [-cmax, cmax] with a per-row absmax scale rounded to
// fp16, as both variants do; returns the scale, writes the integers.
float quantize_row(std::span<const float> x, int cmax, std::span<int> q) {
  float absmax = 0;
  for (float v : x)
    absmax = std::max(absmax, std::fabs(v));
  const float mx = half_to_float(float_to_half(absmax));
  for (std::size_t c = 0; c < x.size(); ++c) {
    const float r = mx > 0 ? std::nearbyint(x[c] * (static_cast<float>(cmax) / mx)) : 0;
    q[c] = std::clamp(static_cast<int>(r), -cmax, cmax);
  }
  return mx;
}

float dequantize(int q, int cmax, float mx) {
  return static_cast<float>(q) / static_cast<float>(cmax) * mx;
}

// CacheGen as released in LMCache: per-token absmax over all channels of a layer, 32 or 16
// bins by layer group (scaled from its 32-layer config: K layers < 10/32 of the depth and V
// layers < 2/32 get 32 bins), arithmetic coding per (layer, channel) with a 33-entry 16-bit
// CDF sent per chunk, an fp16 max per (layer, token) and an int32 length per stream.
class Released final : public EvalMethod {
 public:
  const std::string& name() const override { return name_; }
  bool timed() const override { return false; }
  Status encode(const KvView& kv, std::uint32_t b, std::uint32_t n, Encoded& out) override {
    const KvLayout& l = kv.layout();
    const std::size_t C = l.row_values();
    const auto raw = gather(kv, b, n);
    out.data.assign(raw.size(), std::byte{0});
    std::vector<float> x(C);
    std::vector<int> q(C);
    double bits = 0;
    std::size_t row = 0;
    for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
      for (KvPart part : {KvPart::key, KvPart::value}) {
        const double depth = static_cast<double>(layer) / l.layers;
        const int cmax = depth < (part == KvPart::key ? 10.0 / 32 : 2.0 / 32) ? 15 : 7;
        std::vector<std::uint32_t> hist(C * 64, 0);
        for (std::uint32_t t = 0; t < n; ++t, ++row) {
          for (std::size_t c = 0; c < C; ++c)
            x[c] = fp16_at(raw, row * C + c);
          const float mx = quantize_row(x, cmax, q);
          for (std::size_t c = 0; c < C; ++c) {
            ++hist[c * 64 + static_cast<std::size_t>(q[c] + cmax)];
            put_fp16(out.data, row * C + c, dequantize(q[c], cmax, mx));
          }
        }
        for (std::size_t c = 0; c < C; ++c)
          bits += entropy_bits(std::span(hist).subspan(c * 64, 64));
        bits += static_cast<double>(C) * (33 * 16 + 32);  // CDF table and length per stream
        bits += 16.0 * n;                                 // fp16 max per token
      }
    }
    out.wire_bits = bits;
    return Status::ok();
  }
  Status decode(const Encoded& in, const KvView& kv, std::uint32_t b, std::uint32_t n) override {
    return scatter(in.data, kv, b, n);  // encode already stored the dequantized values
  }

 private:
  std::string name_ = "cachegen";
};

// CacheGen as its paper describes it (§5.2): tokens in groups of 10, the first of each (the
// anchor) quantized on its own and the others as deltas from the anchor as decoded;
// layer-wise quantization (shallower layers finer); arithmetic coding with distributions
// profiled offline, so that chunks carry none. Here the anchor gets 8-bit per-token absmax
// (int8's 255 levels), a delta per-token absmax with ±cmax levels, cmax set by the setting for
// the first third of the layers and half of it (at least 1) below; an fp16 scale per token.
// The coder is ideal with distributions fitted to the chunk itself, which no offline profile
// beats: anchors one per (layer, K|V) (a chunk's 13 anchors are too few per channel), deltas
// one per (layer, K|V, channel).
class Paper final : public EvalMethod {
 public:
  Paper(int setting, int shallow_cmax)
      : name_(fmt::format("cachegen-paper-{}", setting)), shallow_cmax_(shallow_cmax) {}
  const std::string& name() const override { return name_; }
  bool timed() const override { return false; }
  Status encode(const KvView& kv, std::uint32_t b, std::uint32_t n, Encoded& out) override {
    constexpr std::uint32_t kGroup = 10;
    constexpr int kAnchorMax = 127;
    const KvLayout& l = kv.layout();
    const std::size_t C = l.row_values();
    const auto raw = gather(kv, b, n);
    out.data.assign(raw.size(), std::byte{0});
    std::vector<float> x(C), anchor(C);
    std::vector<int> q(C);
    double bits = 0;
    std::size_t row = 0;
    for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
      const int cmax = 3 * layer < l.layers ? shallow_cmax_ : std::max(1, shallow_cmax_ / 2);
      const std::size_t width = 2 * static_cast<std::size_t>(cmax) + 1;
      for (int part = 0; part < 2; ++part) {
        std::vector<std::uint32_t> anchors(2 * kAnchorMax + 1, 0), deltas(C * width, 0);
        for (std::uint32_t t = 0; t < n; ++t, ++row) {
          for (std::size_t c = 0; c < C; ++c)
            x[c] = fp16_at(raw, row * C + c);
          if (t % kGroup == 0) {
            const float mx = quantize_row(x, kAnchorMax, q);
            for (std::size_t c = 0; c < C; ++c) {
              ++anchors[static_cast<std::size_t>(q[c] + kAnchorMax)];
              anchor[c] = half_to_float(float_to_half(dequantize(q[c], kAnchorMax, mx)));
              put_fp16(out.data, row * C + c, anchor[c]);
            }
          } else {
            for (std::size_t c = 0; c < C; ++c)
              x[c] -= anchor[c];
            const float mx = quantize_row(x, cmax, q);
            for (std::size_t c = 0; c < C; ++c) {
              ++deltas[c * width + static_cast<std::size_t>(q[c] + cmax)];
              put_fp16(out.data, row * C + c, anchor[c] + dequantize(q[c], cmax, mx));
            }
          }
        }
        bits += entropy_bits(anchors);
        for (std::size_t c = 0; c < C; ++c)
          bits += entropy_bits(std::span(deltas).subspan(c * width, width));
        bits += 16.0 * n;  // fp16 scale per token
      }
    }
    out.wire_bits = bits;
    return Status::ok();
  }
  Status decode(const Encoded& in, const KvView& kv, std::uint32_t b, std::uint32_t n) override {
    return scatter(in.data, kv, b, n);
  }

 private:
  std::string name_;
  int shallow_cmax_;
};

}  // namespace

std::vector<std::unique_ptr<EvalMethod>> make_cachegen_methods() {
  std::vector<std::unique_ptr<EvalMethod>> m;
  m.push_back(std::make_unique<Released>());
  int setting = 1;
  for (int cmax : {31, 15, 7})
    m.push_back(std::make_unique<Paper>(setting++, cmax));
  return m;
}

}  // namespace kvstream::cli
