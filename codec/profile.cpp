#include <fmt/format.h>

#include <cmath>

#include "chunk_format.hpp"
#include "kvstream/codec.hpp"

namespace kvstream {

namespace {
// Relative steps of the built-in lossy levels at the least sensitive position (last layer, V).
constexpr float kBuiltinBase[] = {0.08f, 0.14f, 0.25f, 0.45f, 0.8f};
// Sensitivity ratios measured on stories260K (DESIGN.md): the first layer ~40x the last, K ~3x
// V. For noise weighted by sensitivity, the best steps scale with 1/sqrt(sensitivity).
constexpr float kFirstToLastSensitivity = 40.0f;
constexpr float kKeyToValueSensitivity = 3.0f;
}  // namespace

CodecProfile CodecProfile::builtin(std::uint32_t layers, std::uint32_t groups) {
  CodecProfile p;
  p.layers_ = layers;
  p.groups_ = groups;
  p.levels_ = static_cast<std::uint32_t>(std::size(kBuiltinBase));
  p.steps_.resize(std::size_t{p.levels_} * layers * 2 * groups);
  for (std::uint32_t level = 1; level <= p.levels_; ++level) {
    for (std::uint32_t l = 0; l < layers; ++l) {
      const float depth =
          layers > 1 ? static_cast<float>(l) / static_cast<float>(layers - 1) : 1.0f;
      const float layer_scale = std::pow(kFirstToLastSensitivity, 0.5f * (depth - 1.0f));
      for (std::uint32_t part = 0; part < 2; ++part) {
        const float part_scale = part == 0 ? 1.0f / std::sqrt(kKeyToValueSensitivity) : 1.0f;
        for (std::uint32_t h = 0; h < groups; ++h) {
          p.steps_[p.index(level, l, static_cast<KvPart>(part), h)] =
              kBuiltinBase[level - 1] * layer_scale * part_scale;
        }
      }
    }
  }
  return p;
}

Expected<CodecProfile> CodecProfile::from_steps(std::uint32_t layers, std::uint32_t groups,
                                                std::uint32_t levels, std::vector<float> steps) {
  if (layers == 0 || groups == 0 || levels == 0 || levels > kMaxLevel) {
    return Status(Errc::invalid_argument,
                  fmt::format("profile with {} layers, {} channel groups and {} levels (1..{})",
                              layers, groups, levels, kMaxLevel));
  }
  const std::size_t want = std::size_t{levels} * layers * 2 * groups;
  if (steps.size() != want) {
    return Status(Errc::invalid_argument,
                  fmt::format("profile needs {} steps, got {}", want, steps.size()));
  }
  for (float s : steps) {
    if (!(s > 0.0f) || !std::isfinite(s)) {
      return Status(Errc::invalid_argument, fmt::format("profile step {} is not positive", s));
    }
  }
  CodecProfile p;
  p.layers_ = layers;
  p.groups_ = groups;
  p.levels_ = levels;
  p.steps_ = std::move(steps);
  return p;
}

std::span<const float, 256> quantization_steps() noexcept {
  return codec::step_table();
}

Status CodecProfile::set_transform(KvTransform transform) {
  KVS_RETURN_IF_ERROR(transform.validate());
  if (transform.layers() != layers_) {
    return Status(Errc::invalid_argument, fmt::format("transform of {} layers for a profile of {}",
                                                      transform.layers(), layers_));
  }
  if (transform.channels % groups_ != 0) {
    return Status(Errc::invalid_argument,
                  fmt::format("{} channels in {} groups", transform.channels, groups_));
  }
  transform_id_ = transform.id();
  transform_ = std::make_shared<const KvTransform>(std::move(transform));
  return Status::ok();
}

}  // namespace kvstream
