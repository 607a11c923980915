// The quality meter on stories260K: exact chunks cost nothing, a lossless level costs nothing,
// a lossy one costs something, and mixing charges only the chunks it touches.
#include "cli/quality_meter.hpp"

#include <gtest/gtest.h>

#include "runner/runner.hpp"
#include "runner/sampling.hpp"
#include "test_models.hpp"

namespace kvstream::cli {
namespace {

std::unique_ptr<QualityMeter> meter() {
  const runner::Model& model = testing::stories260k();
  std::vector<std::vector<std::int32_t>> contexts;
  for (std::uint64_t i = 0; i < 3; ++i) {
    runner::Runner r(model);
    runner::Sampler sampler(40 + i, 0, 1.0f, 0.9f);
    contexts.push_back(runner::sample_context(r, sampler, 96).value());
  }
  const std::vector<std::string> methods{"level0", "level5", "int8"};
  auto m = QualityMeter::create(model, std::move(contexts), 64, 16,
                                CodecProfile::builtin(model.config().layers, 1), methods, 2);
  EXPECT_TRUE(m) << m.error().to_string();
  return std::move(m).value();
}

TEST(QualityMeter, ScoresWhatEachChunkWasGiven) {
  const auto m = meter();
  ASSERT_EQ(m->chunks(), 4u);
  const QualityScore exact = m->measure(std::vector<int>(4, QualityMeter::kExact), 1).value();
  EXPECT_EQ(exact.delta_ppl_pct, 0);
  EXPECT_EQ(exact.top1, 1);
  EXPECT_EQ(exact.positions, 3u * 31);
  EXPECT_EQ(m->measure(std::vector<int>(4, 0), 1).value().delta_ppl_pct, 0);  // lossless
  const QualityScore l5 = m->measure(std::vector<int>(4, 1), 2).value();
  EXPECT_GT(l5.kl, 0);
  EXPECT_LT(l5.top1, 1);
  // Level 5 on one chunk only: between nothing and level 5 everywhere; the same for any thread
  // count.
  const QualityScore one = m->measure(std::vector<int>{QualityMeter::kExact, 1, 0, 0}, 1).value();
  EXPECT_GT(one.kl, 0);
  EXPECT_LT(one.kl, l5.kl);
  EXPECT_EQ(one.kl, m->measure(std::vector<int>{QualityMeter::kExact, 1, 0, 0}, 3).value().kl);
}

TEST(QualityMeter, RefusesChoicesItCannotScore) {
  const auto m = meter();
  EXPECT_EQ(m->measure(std::vector<int>(3, 0), 1).error().code(), Errc::invalid_argument);
  EXPECT_EQ(m->measure(std::vector<int>(4, 3), 1).error().code(), Errc::invalid_argument);
  const std::vector<std::string> bad{"level9"};
  EXPECT_EQ(QualityMeter::create(testing::stories260k(), {{1, 2, 3}}, 64, 16,
                                 CodecProfile::builtin(5, 1), bad, 1)
                .error()
                .code(),
            Errc::invalid_argument);
}

}  // namespace
}  // namespace kvstream::cli
