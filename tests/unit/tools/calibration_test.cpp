#include "cli/calibration.hpp"

#include <gtest/gtest.h>

#include "runner/sampling.hpp"
#include "test_models.hpp"

namespace kvstream::cli {
namespace {

using kvstream::testing::stories260k;

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

}  // namespace
}  // namespace kvstream::cli
