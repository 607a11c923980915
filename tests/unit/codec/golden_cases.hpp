// The golden files' cases (tests/golden): how each was encoded, from which synthetic source.
// The golden test holds the CPU encoder and decoder to them; the GPU encoder's tests hold it to
// the same bytes.
#pragma once

#include <cstdint>

#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"

namespace kvstream::testing_data {

struct GoldenCase {
  const char* name;
  KvLayout layout;
  std::uint32_t begin, count;
  std::uint8_t level;
  std::uint32_t lanes, substream_values;
  bool specials;
  bool smooth_keys = false;  // K drifts slowly, so that its segments use the predictor
  bool transform = false;    // coded with testing_data::make_transform_profile(..., 3)
  bool tails = false;        // segments end in constant channels (fill_constant_tails)
  bool verbatim = false;     // level 0 as coding 3
};

inline const GoldenCase kGoldenCases[] = {
    {"f16-level0", {3, 2, 16, DType::f16, 192}, 128, 64, 0, 8, 16384, true},
    {"f16-level2", {3, 2, 16, DType::f16, 192}, 128, 64, 2, 8, 16384, false},
    {"f16-level3-substreams", {3, 2, 16, DType::f16, 96}, 0, 96, 3, 32, 700, false},
    {"bf16-level5", {2, 1, 8, DType::bf16, 40}, 7, 33, 5, 8, 16384, false},
    {"f32-level0", {2, 2, 8, DType::f32, 50}, 10, 40, 0, 2, 256, true},
    {"f32-level1", {2, 2, 8, DType::f32, 50}, 0, 50, 1, 4, 100, false},
    {"tiny-f16-level0", {1, 1, 4, DType::f16, 3}, 0, 3, 0, 1, 16384, false},
    {"tiny-f16-level4", {1, 1, 4, DType::f16, 5}, 0, 5, 4, 2, 8, false},
    // Large enough for several lanes per substream (the encoder gives a lane ~512 values):
    // these pin the group-by-group, step-by-step order of FORMAT.md.
    {"f16-level2-4lanes", {2, 2, 16, DType::f16, 256}, 0, 256, 2, 4, 1 << 20, false},
    {"f32-level0-4lanes", {1, 2, 16, DType::f32, 300}, 20, 256, 0, 4, 1 << 20, true},
    {"bf16-level0-2lanes", {1, 1, 32, DType::bf16, 128}, 0, 128, 0, 2, 1 << 20, true},
    {"f16-level3-8lanes", {2, 4, 16, DType::f16, 256}, 0, 256, 3, 8, 1 << 20, false},
    {"f16-level0-8lanes", {2, 4, 16, DType::f16, 256}, 0, 256, 0, 8, 1 << 20, true},
    {"f16-level2-predicted", {2, 4, 16, DType::f16, 256}, 0, 256, 2, 8, 2048, false, true},
    {"f16-level2-transform", {2, 2, 8, DType::f16, 200}, 40, 128, 2, 8, 16384, false, false, true},
    // Constant tails of 0, 8, 16, all 64, 40 and 0 channels (version 2).
    {"f16-level3-tails",
     {3, 4, 16, DType::f16, 160},
     16,
     128,
     3,
     8,
     4096,
     false,
     true,
     false,
     true},
    // Level 0 as verbatim values (coding 3), from every source dtype.
    {.name = "f16-level0-verbatim",
     .layout = {2, 2, 8, DType::f16, 40},
     .begin = 5,
     .count = 30,
     .level = 0,
     .lanes = 8,
     .substream_values = 16384,
     .specials = true,
     .verbatim = true},
    {.name = "bf16-level0-verbatim",
     .layout = {1, 1, 8, DType::bf16, 9},
     .begin = 0,
     .count = 9,
     .level = 0,
     .lanes = 8,
     .substream_values = 16384,
     .specials = true,
     .verbatim = true},
    {.name = "f32-level0-verbatim",
     .layout = {1, 2, 4, DType::f32, 12},
     .begin = 3,
     .count = 7,
     .level = 0,
     .lanes = 8,
     .substream_values = 16384,
     .specials = true,
     .verbatim = true},
};

inline CodecProfile profile_of(const GoldenCase& g) {
  return g.transform ? testing_data::make_transform_profile(g.layout.layers, g.layout.kv_heads,
                                                            g.layout.head_dim, 3)
                     : CodecProfile::builtin(g.layout.layers, 1);
}

// The source a case encodes.
inline KvBuffer golden_source(const GoldenCase& g) {
  KvBuffer src = KvBuffer::create(g.layout).value();
  fill_synthetic(src.view(), 42, g.specials);
  if (g.smooth_keys) fill_smooth(src.view(), 42, /*keys_only=*/true);
  if (g.tails) fill_constant_tails(src.view());
  return src;
}

inline EncodeOptions golden_options(const GoldenCase& g, const CodecProfile& profile) {
  EncodeOptions o;
  o.level = g.level;
  o.profile = &profile;
  o.lanes = g.lanes;
  o.substream_values = g.substream_values;
  o.verbatim = g.verbatim;
  return o;
}

}  // namespace kvstream::testing_data
