// The CacheGen baselines of `kvstream codec eval` on hand-made caches: what the paper's variant
// decodes to and what it counts.
#include "cli/eval_cachegen.hpp"

#include <gtest/gtest.h>

#include <cmath>

#include "kvstream/half.hpp"

namespace kvstream::cli {
namespace {

constexpr KvLayout kLayout{3, 2, 8, DType::f16, 40};  // 3 layers, 16 channels, 40 tokens

std::unique_ptr<EvalMethod> method(const std::string& name) {
  for (auto& m : make_cachegen_methods()) {
    if (m->name() == name) return std::move(m);
  }
  return nullptr;
}

void fill(const KvView& kv, float (*value)(std::uint32_t layer, std::uint32_t t, std::size_t c)) {
  for (std::uint32_t layer = 0; layer < kLayout.layers; ++layer) {
    for (KvPart part : {KvPart::key, KvPart::value}) {
      for (std::uint32_t t = 0; t < kLayout.tokens; ++t) {
        auto* row = reinterpret_cast<std::uint16_t*>(kv.row(layer, part, t));
        for (std::size_t c = 0; c < kLayout.row_values(); ++c)
          row[c] = float_to_half(value(layer, t, c));
      }
    }
  }
}

float at(const KvView& kv, std::uint32_t layer, KvPart part, std::uint32_t t, std::size_t c) {
  return half_to_float(reinterpret_cast<const std::uint16_t*>(kv.row(layer, part, t))[c]);
}

TEST(CacheGenBaselines, OneReleasedAndThreePaperSettings) {
  std::vector<std::string> names;
  for (const auto& m : make_cachegen_methods()) {
    names.push_back(m->name());
    EXPECT_FALSE(m->timed()) << m->name();
  }
  EXPECT_EQ(names, (std::vector<std::string>{"cachegen", "cachegen-paper-1", "cachegen-paper-2",
                                             "cachegen-paper-3"}));
}

TEST(CacheGenBaselines, PaperIdenticalTokensCostTheirScalesAlone) {
  // Every value 1.5: each anchor row quantizes to 127 everywhere (one symbol, 0 bits), every
  // delta is 0 (0 bits), so a chunk of 30 tokens costs its fp16 scales: 16 bits per token per
  // (layer, K|V). It decodes exactly.
  auto src = KvBuffer::create(kLayout);
  auto dst = KvBuffer::create(kLayout);
  ASSERT_TRUE(src.has_value() && dst.has_value());
  fill(src->view(), [](std::uint32_t, std::uint32_t, std::size_t) { return 1.5f; });
  auto m = method("cachegen-paper-2");
  ASSERT_NE(m, nullptr);
  Encoded e;
  ASSERT_TRUE(m->encode(src->view(), 5, 30, e).is_ok());
  EXPECT_DOUBLE_EQ(e.wire_bits, 16.0 * 30 * 2 * kLayout.layers);
  ASSERT_TRUE(m->decode(e, dst->view(), 5, 30).is_ok());
  for (std::uint32_t t = 5; t < 35; ++t)
    EXPECT_EQ(at(dst->view(), 2, KvPart::value, t, 3), 1.5f);
}

TEST(CacheGenBaselines, PaperDeltasAreFromTheDecodedAnchorOfTheirGroup) {
  // Token t of the chunk: a per-channel base plus a drift that grows within each group of 10.
  // An anchor (t % 10 == 0) is within half an int8 step of its absmax (plus fp16 rounding); a
  // token between anchors is within half a delta step of the source, its delta taken from the
  // anchor as decoded, so the anchor's own error does not add to it.
  auto src = KvBuffer::create(kLayout);
  auto dst = KvBuffer::create(kLayout);
  ASSERT_TRUE(src.has_value() && dst.has_value());
  fill(src->view(), [](std::uint32_t layer, std::uint32_t t, std::size_t c) {
    return static_cast<float>(std::sin(0.7 * static_cast<double>(c) + layer) +
                              0.01 * static_cast<double>((t % 10) * (c % 5)));
  });
  auto m = method("cachegen-paper-1");  // cmax 31 in layer 0, 15 in layers 1 and 2
  Encoded e;
  ASSERT_TRUE(m->encode(src->view(), 0, 30, e).is_ok());
  ASSERT_TRUE(m->decode(e, dst->view(), 0, 30).is_ok());
  EXPECT_GT(e.wire_bits, 0);
  for (std::uint32_t layer = 0; layer < kLayout.layers; ++layer) {
    const double cmax = layer == 0 ? 31 : 15;
    for (std::uint32_t t = 0; t < 30; ++t) {
      double absmax = 0;
      for (std::size_t c = 0; c < kLayout.row_values(); ++c) {
        const double anchor = at(dst->view(), layer, KvPart::key, t - t % 10, c);
        const double x = at(src->view(), layer, KvPart::key, t, c);
        absmax = std::max(absmax, std::fabs(t % 10 == 0 ? x : x - anchor));
      }
      const double step = absmax / (t % 10 == 0 ? 127 : cmax);
      for (std::size_t c = 0; c < kLayout.row_values(); ++c) {
        const double x = at(src->view(), layer, KvPart::key, t, c);
        const double got = at(dst->view(), layer, KvPart::key, t, c);
        EXPECT_LE(std::fabs(got - x), 0.5 * step + 2e-3 * std::fabs(x) + 1e-6)
            << "layer " << layer << " token " << t << " channel " << c;
      }
    }
  }
}

}  // namespace
}  // namespace kvstream::cli
