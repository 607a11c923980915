#include "segment_encoding.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "crc32c.hpp"

namespace kvstream::codec {

namespace {

// sigma = mean absolute deviation * sqrt(pi / 2) for a Gaussian.
constexpr float kMadToSigma = 1.2533141f;

// Whether coding a segment's values relative to the previous token beats coding them relative
// to their centers: their spread in steps, and so their bits, would fall by log2 of the ratio
// of mean |x(t) - x(t - 1)| to mean |x - mean| (both measured in the statistics pass). It must
// save this many bits per value on average, a margin for what the estimate leaves out.
constexpr double kPredictionMinGain = 0.05;

// The smallest-error step no larger than `target` that still keeps |x| / step within int16.
std::uint8_t choose_step_code(float target, std::int64_t absmax_fixed) {
  const auto& steps = step_table();  // increasing
  // The last code whose step is <= target (code 0 if none is).
  const auto above = std::upper_bound(steps.begin(), steps.end(), target);
  const auto s = static_cast<std::uint32_t>(above == steps.begin() ? 0 : above - steps.begin() - 1);
  const float need = static_cast<float>(absmax_fixed + 1) / 65536.0f / 32767.0f;
  const auto enough = std::lower_bound(steps.begin() + s, steps.end(), need);
  return static_cast<std::uint8_t>(enough == steps.end() ? 255 : enough - steps.begin());
}

}  // namespace

Status check_encode(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                    const EncodeOptions& o, CodecProfile& builtin, const CodecProfile*& profile) {
  const KvLayout& l = src.layout();
  KVS_RETURN_IF_ERROR(src.check_range(token_begin, token_count).with_context("encode_chunk"));
  if (token_count == 0 || token_count > kMaxTokens) {
    return Status(Errc::invalid_argument,
                  fmt::format("chunk of {} tokens (1..{})", token_count, kMaxTokens));
  }
  if (l.row_values() > kMaxChannels || l.layers > kMaxLayers) {
    return Status(Errc::unsupported,
                  fmt::format("{} layers x {} channels exceed the format's limits", l.layers,
                              l.row_values()));
  }
  if (!valid_lanes(o.lanes) || o.substream_values == 0 || o.lane_values == 0) {
    return Status(Errc::invalid_argument,
                  fmt::format("lanes {} (1, 2, 4, 8, 16 or 32), substream_values {}, "
                              "lane_values {} (both at least 1)",
                              o.lanes, o.substream_values, o.lane_values));
  }
  if (o.verbatim && o.level != 0) {
    return Status(
        Errc::invalid_argument,
        fmt::format("verbatim coding at level {}: only level 0 (lossless) has it", o.level));
  }
  profile = nullptr;
  if (o.level == 0) return Status::ok();
  profile = o.profile;
  if (profile == nullptr) {
    builtin = CodecProfile::builtin(l.layers, 1);
    profile = &builtin;
  }
  if (profile->layers() != l.layers || l.row_values() % profile->groups() != 0 ||
      o.level > profile->levels()) {
    return Status(Errc::invalid_argument,
                  fmt::format("level {} with a profile of {} levels for {} layers x {} channel "
                              "groups (the KV has {} layers x {} channels)",
                              o.level, profile->levels(), profile->layers(), profile->groups(),
                              l.layers, l.row_values()));
  }
  if (const KvTransform* t = profile->transform();
      t != nullptr && (t->channels != l.row_values() || t->head_dim != l.head_dim)) {
    return Status(Errc::invalid_argument,
                  fmt::format("the profile's transform is for {} channels of {}-dim heads; the "
                              "KV has {} of {}",
                              t->channels, t->head_dim, l.row_values(), l.head_dim));
  }
  return Status::ok();
}

Status lossy_value_error(std::uint32_t layer, KvPart part, std::uint32_t token,
                         std::uint32_t channel, std::uint32_t head_dim, float x) {
  return Status(std::isfinite(x) ? Errc::unsupported : Errc::invalid_argument,
                fmt::format("layer {} {} token {} channel {} (head {}, dim {}) is {}: lossy "
                            "levels need finite values within +-2^30",
                            layer, part == KvPart::key ? "K" : "V", token, channel,
                            channel / head_dim, channel % head_dim, x));
}

Predictor choose_predictor(std::size_t C, std::uint32_t tokens, const ChannelStats& s) {
  if (tokens < 2) return Predictor::none;
  double log_ratio = 0;
  for (std::size_t c = 0; c < C; ++c) {
    if (s.dev[c] == 0 || s.step_dev[c] == 0) continue;  // a constant channel costs nothing
    log_ratio += std::log2((static_cast<double>(s.step_dev[c]) / (tokens - 1)) /
                           (static_cast<double>(s.dev[c]) / tokens));
  }
  return log_ratio < -kPredictionMinGain * static_cast<double>(C) ? Predictor::previous_token
                                                                  : Predictor::none;
}

void choose_steps(const CodecProfile& profile, std::uint8_t level, std::uint32_t layer, KvPart part,
                  std::size_t C, std::uint32_t tokens, const ChannelStats& s,
                  std::uint8_t* step_code, float* step, std::int32_t* center) {
  // Transform coefficients have absolute steps: the transform already weighs them equally.
  const bool absolute = profile.transform() != nullptr;
  const auto& steps = step_table();
  for (std::size_t c = 0; c < C; ++c) {
    const float sigma = static_cast<float>(s.dev[c] / tokens) * (kMadToSigma / 65536.0f);
    const float rel_step = profile.relative_step(
        level, layer, part, static_cast<std::uint32_t>(c * profile.groups() / C));
    step_code[c] = choose_step_code(absolute ? rel_step : sigma * rel_step, s.absmax[c]);
    step[c] = steps[step_code[c]];
    const float mean = static_cast<float>(s.mean[c]) / 65536.0f;
    center[c] =
        static_cast<std::int32_t>(std::clamp(std::nearbyint(mean / step[c]), -32768.0f, 32767.0f));
  }
}

std::uint32_t substream_tokens(std::uint32_t tokens, std::size_t C, const EncodeOptions& o) {
  const std::size_t wanted = std::clamp<std::size_t>(
      (std::size_t{tokens} * C + o.substream_values - 1) / o.substream_values, 1, tokens);
  return static_cast<std::uint32_t>((tokens + wanted - 1) / wanted);
}

std::uint32_t substream_lanes(std::uint32_t per, std::size_t C, const EncodeOptions& o) {
  // Each lane costs a 4-byte state, about 1% of a 512-value lane's payload at 6 bits per
  // value; smaller substreams get fewer lanes. 512 lets a 4096-value segment (a stories260K
  // chunk's) have the 8 lanes that the vector decoder needs.
  std::uint32_t lanes = o.lanes;
  while (lanes > 1 && std::size_t{per} * C < std::size_t{lanes} * o.lane_values)
    lanes /= 2;
  return lanes;
}

Status finish_chunk(const ChunkFields& f, std::span<const std::uint32_t> offsets,
                    std::vector<std::byte>& out) {
  if (out.size() > UINT32_MAX) {
    return Status(Errc::unsupported, fmt::format("chunk of {} bytes exceeds 4 GiB", out.size()));
  }
  const KvLayout& l = *f.layout;
  const auto segments = static_cast<std::uint32_t>(offsets.size());
  const auto total = static_cast<std::uint32_t>(out.size());
  ByteWriter w(out);
  std::memcpy(out.data(), kMagic, 4);
  w.put_at<std::uint16_t>(4, kVersion);
  w.put_at<std::uint16_t>(6, kHeaderSize);
  w.put_at<std::uint8_t>(8, f.level);
  w.put_at<std::uint8_t>(9, static_cast<std::uint8_t>(l.dtype));
  w.put_at<std::uint16_t>(10, f.transformed ? kFlagTransform : 0);
  w.put_at<std::uint32_t>(12, l.layers);
  w.put_at<std::uint32_t>(16, l.kv_heads);
  w.put_at<std::uint32_t>(20, l.head_dim);
  w.put_at<std::uint32_t>(24, f.token_begin);
  w.put_at<std::uint32_t>(28, f.token_count);
  w.put_at<std::uint32_t>(32, segments);
  w.put_at<std::uint32_t>(36, total);
  w.put_at<std::uint32_t>(40, f.transformed ? f.transform_id : 0);
  for (std::uint32_t i = 0; i < segments; ++i) {
    const std::size_t entry = kHeaderSize + std::size_t{i} * kSegmentEntrySize;
    const std::uint32_t end = i + 1 < segments ? offsets[i + 1] : total;
    const std::uint32_t size = end - offsets[i];
    w.put_at<std::uint32_t>(entry, offsets[i]);
    w.put_at<std::uint32_t>(entry + 4, size);
    w.put_at<std::uint32_t>(entry + 8, crc32c(std::span(out).subspan(offsets[i], size)));
  }
  std::uint32_t hcrc = crc32c(std::span(out).first(kHeaderCrcOffset));
  hcrc =
      crc32c(std::span(out).subspan(kHeaderSize, std::size_t{segments} * kSegmentEntrySize), hcrc);
  w.put_at<std::uint32_t>(kHeaderCrcOffset, hcrc);
  return Status::ok();
}

}  // namespace kvstream::codec
