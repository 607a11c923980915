// The decisions and bytes of FORMAT.md's encoding that every encoder makes alike: the CPU
// encoder (encoder.cpp) and the host side of the GPU one (cuda/encode_plan.cpp). The passes over
// the values are each encoder's own; what they feed into here decides the chunk's bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "byte_io.hpp"
#include "chunk_format.hpp"
#include "kvstream/codec.hpp"
#include "kvstream/status.hpp"

namespace kvstream::codec {

// Checks an encode's range, layout, options and profile as encode_chunk does; `profile` becomes
// the profile to use (`builtin` when the options name none at a lossy level, null at level 0).
Status check_encode(const KvView& src, std::uint32_t token_begin, std::uint32_t token_count,
                    const EncodeOptions& o, CodecProfile& builtin, const CodecProfile*& profile);

// A lossy level's error for a value that is not finite (invalid_argument) or beyond +-2^30
// (unsupported), naming where it is.
Status lossy_value_error(std::uint32_t layer, KvPart part, std::uint32_t token,
                         std::uint32_t channel, std::uint32_t head_dim, float x);

// The coding of every segment of a chunk at level `level` of a `dtype` source.
constexpr Coding coding_for(std::uint8_t level, DType dtype) noexcept {
  return level > 0 ? Coding::quantized : dtype == DType::f32 ? Coding::split32 : Coding::split16;
}

// Per channel of a lossy segment, in 16.16 fixed point: the mean of x (the sum over tokens,
// divided), its summed |x - mean| and summed |x(t) - x(t - 1)|, and its largest |x|.
struct ChannelStats {
  const std::int64_t* mean;
  const std::int64_t* dev;
  const std::int64_t* step_dev;
  const std::int64_t* absmax;
};

// Whether the segment's values are coded relative to the previous token (FORMAT.md "Symbols").
Predictor choose_predictor(std::size_t C, std::uint32_t tokens, const ChannelStats& s);

// Each channel's step code, step and center for segment (layer, part) at `level`.
void choose_steps(const CodecProfile& profile, std::uint8_t level, std::uint32_t layer, KvPart part,
                  std::size_t C, std::uint32_t tokens, const ChannelStats& s,
                  std::uint8_t* step_code, float* step, std::int32_t* center);

// Tokens per substream: token-aligned substreams of about o.substream_values values, none empty
// (the same for every segment of a chunk); and the lanes of substreams of `per` tokens.
std::uint32_t substream_tokens(std::uint32_t tokens, std::size_t C, const EncodeOptions& o);
std::uint32_t substream_lanes(std::uint32_t per, std::size_t C, const EncodeOptions& o);

// One segment's fields. `step_codes` is empty for lossless codings.
struct SegmentFields {
  Coding coding;
  Predictor predictor;
  std::uint32_t lanes, substreams;
  std::uint32_t tail;  // FORMAT.md "Constant tail" (0 for lossless codings)
  std::span<const std::uint8_t> step_codes, tables;
  std::span<const std::int32_t> centers;
};

// Appends a segment: its fields, then per substream the byte size of its words, its lane
// states, its words. `words(k)` and `states(k)` give substream k's.
template <class Words, class States>
void write_segment(const SegmentFields& f, Words words, States states, ByteWriter& w) {
  w.put(static_cast<std::uint8_t>(f.coding));
  w.put(static_cast<std::uint8_t>(f.predictor));
  w.put(static_cast<std::uint8_t>(f.lanes));
  w.put(std::uint8_t{0});
  w.put(static_cast<std::uint16_t>(f.substreams));
  w.put(static_cast<std::uint16_t>(f.tail));
  w.put_bytes(std::as_bytes(f.step_codes));
  w.put_bytes(std::as_bytes(f.tables));
  for (std::int32_t c : f.centers)
    w.put_zigzag_varint(c);
  for (std::uint32_t k = 0; k < f.substreams; ++k)
    w.put(static_cast<std::uint32_t>(2 * words(k).size()));
  for (std::uint32_t k = 0; k < f.substreams; ++k) {
    for (std::uint32_t x : states(k))
      w.put(x);
  }
  for (std::uint32_t k = 0; k < f.substreams; ++k)
    w.put_bytes(std::as_bytes(words(k)));
}

struct ChunkFields {
  std::uint8_t level;
  const KvLayout* layout;
  std::uint32_t token_begin, token_count;
  bool transformed;
  std::uint32_t transform_id;  // KvTransform::id() of a transform-coded chunk's transform
};

// Fills in the header and segment table of `out`, whose segment i begins at offsets[i] and
// whose last segment ends at out.size(): sizes, checksums, the header's checksum. An error if
// the chunk is too large for the format.
Status finish_chunk(const ChunkFields& f, std::span<const std::uint32_t> offsets,
                    std::vector<std::byte>& out);

}  // namespace kvstream::codec
