// Validation of a chunk's header, segment table and segment side information (FORMAT.md). Every
// decoder (the CPU one here, the CUDA one in cuda/) parses through these, so that a chunk is
// accepted or refused for the same reasons whatever decodes it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "chunk_format.hpp"
#include "kvstream/codec.hpp"
#include "kvstream/status.hpp"

namespace kvstream::codec {

Status corrupt(std::string what);

struct SegmentEntry {
  std::uint32_t offset, size, crc;
};

// Validates the header and the segment table (not the segments); fills `segments`, reusing its
// storage.
Expected<ChunkInfo> parse_header(std::span<const std::byte> chunk,
                                 std::vector<SegmentEntry>& segments);

// A segment's parsed side information; spans point into the chunk.
struct SegmentView {
  Coding coding;
  Predictor predictor;
  std::uint32_t lanes, substreams;
  std::uint32_t coded;  // C': the channels the words code, before the constant tail
  std::span<const std::byte> step_codes, table_ids;
  std::vector<std::int32_t> centers;
  std::vector<std::uint32_t> stream_bytes;
  std::span<const std::byte> states, words;
};

// Checks segment `index`'s checksum against its table entry and parses its side information.
Status parse_segment(std::span<const std::byte> chunk, const SegmentEntry& entry,
                     std::uint32_t index, const ChunkInfo& info, SegmentView& out);

// Checks that a chunk described by `info` can be decoded into `dst` (shape and token range).
Status check_destination(const ChunkInfo& info, const KvView& dst);

// The transform a transform-coded chunk needs from `profile`: an error naming the ids when the
// profile has none or another, corrupt_data when its shape differs from the chunk's.
Expected<const KvTransform*> chunk_transform(const ChunkInfo& info, const CodecProfile* profile);

}  // namespace kvstream::codec
