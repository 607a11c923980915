#include "cli/calibration.hpp"

#include <gtest/gtest.h>

#include "runner/sampling.hpp"
#include "test_models.hpp"

namespace kvstream::cli {
namespace {

using kvstream::testing::stories260k;

TEST(Calibration, TargetsAreAPositiveAscendingListOfAtMostFifteen) {
  const auto ok = parse_targets("1.5e-4,1e-3,0.1");
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(*ok, (std::vector<double>{1.5e-4, 1e-3, 0.1}));
  for (const char* bad : {"", "1e-3,,2e-3", "0,1e-3", "-1e-3", "2e-3,1e-3", "1e-3,1e-3", "x", "nan",
                          "1e-3 ", "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16"}) {
    EXPECT_FALSE(parse_targets(bad)) << "'" << bad << "'";
  }
  EXPECT_TRUE(parse_targets("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15"));
}

TEST(Calibration, MeetsTargetsAndGivesSensitiveLayersFinerSteps) {
  const auto contexts =
      *runner::sample_contexts(stories260k(), 4, runner::SampleOptions{200, 77}, 2);
  auto meter = KlMeter::create(stories260k(), contexts, 160, 80, 2);
  ASSERT_TRUE(meter) << meter.error().to_string();

  // The lossless level costs nothing; coarse steps cost more than fine ones.
  const auto fine = CodecProfile::from_steps(5, 1, 1, std::vector<float>(10, 0.05f));
  const auto coarse = CodecProfile::from_steps(5, 1, 1, std::vector<float>(10, 1.0f));
  EXPECT_EQ(*(*meter)->measure(*fine, 0), 0.0);
  const double kl_fine = *(*meter)->measure(*fine, 1);
  const double kl_coarse = *(*meter)->measure(*coarse, 1);
  EXPECT_GT(kl_fine, 0.0);
  EXPECT_GT(kl_coarse, 10 * kl_fine);

  CalibrationOptions o;
  o.targets = {3e-3, 3e-2};
  o.iterations = 4;
  auto profile = calibrate(**meter, 5, 1, o, [](const std::string&) {});
  ASSERT_TRUE(profile) << profile.error().to_string();
  ASSERT_EQ(profile->levels(), 2u);
  for (std::uint32_t level = 1; level <= 2; ++level) {
    const double kl = *(*meter)->measure(*profile, static_cast<std::uint8_t>(level));
    EXPECT_LE(kl, o.targets[level - 1] * 1.1) << "level " << level;
    EXPECT_GE(kl, o.targets[level - 1] * 0.3) << "level " << level << " wastes bits";
    // stories260K's first layer K is far more sensitive than its last layer V.
    EXPECT_LT(profile->relative_step(level, 0, KvPart::key, 0),
              profile->relative_step(level, 4, KvPart::value, 0));
  }
  for (std::size_t i = 0; i < 10; ++i)
    EXPECT_GT(profile->steps()[10 + i], profile->steps()[i]);
}

// Transform coding: the fitted transform codes the model's KV in fewer bits than direct
// quantization at the same measured quality, and every level meets its target.
TEST(Calibration, TransformMeetsTargetsInFewerBits) {
  const auto contexts =
      *runner::sample_contexts(stories260k(), 4, runner::SampleOptions{200, 78}, 2);
  auto meter = KlMeter::create(stories260k(), contexts, 160, 80, 2);
  ASSERT_TRUE(meter) << meter.error().to_string();
  CalibrationOptions o;
  o.targets = {2e-3};
  o.iterations = 4;
  auto plain = calibrate(**meter, 5, 1, o, [](const std::string&) {});
  o.transform = true;
  o.rope_frequencies = stories260k().rope_frequencies();
  auto transformed = calibrate(**meter, 5, 1, o, [](const std::string&) {});
  ASSERT_TRUE(plain && transformed) << transformed.error().to_string();
  ASSERT_NE(transformed->transform(), nullptr);
  EXPECT_EQ(plain->transform(), nullptr);
  EXPECT_LE(*(*meter)->measure(*transformed, 1), o.targets[0]);
  // Size of the calibration caches at level 1 under each profile.
  const auto bits = [&](const CodecProfile& p) {
    std::size_t bytes = 0, values = 0;
    std::vector<std::byte> chunk;
    EncodeOptions e;
    e.level = 1;
    e.profile = &p;
    for (const KvBuffer& kv : (*meter)->references()) {
      for (std::uint32_t s = 0; s < 160; s += 80) {
        EXPECT_TRUE(encode_chunk(kv.view(), s, 80, e, chunk).is_ok());
        bytes += chunk.size();
        values += 80 * kv.layout().row_values() * 2 * kv.layout().layers;
      }
    }
    return 8.0 * static_cast<double>(bytes) / static_cast<double>(values);
  };
  EXPECT_LT(bits(*transformed), bits(*plain) - 0.5);  // about a bit per value on stories260K
}

}  // namespace
}  // namespace kvstream::cli
