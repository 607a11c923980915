// Header, segment table and segment parsing of the chunk format (FORMAT.md).
#include "chunk_parse.hpp"

#include <fmt/format.h>

#include <cstring>

#include "byte_io.hpp"
#include "crc32c.hpp"
#include "rans.hpp"
#include "table_bank.hpp"

namespace kvstream::codec {

Status corrupt(std::string what) {
  return Status(Errc::corrupt_data, "chunk: " + std::move(what));
}

Expected<ChunkInfo> parse_header(std::span<const std::byte> chunk,
                                 std::vector<SegmentEntry>& segments_out) {
  ByteReader r(chunk);
  char magic[4];
  std::uint16_t version = 0, header_size = 0, flags = 0;
  std::uint8_t level = 0, dtype = 0;
  std::uint32_t layers = 0, heads = 0, dim = 0, begin = 0, count = 0, segments = 0, total = 0;
  std::uint32_t reserved = 0, header_crc = 0;
  if (chunk.size() < kHeaderSize) {
    return corrupt(
        fmt::format("{} bytes, shorter than the {}-byte header", chunk.size(), kHeaderSize));
  }
  for (char& m : magic)
    r.get(m);
  if (std::memcmp(magic, kMagic, 4) != 0) return corrupt("bad magic (not a kvstream chunk)");
  r.get(version);
  if (version < kOldestVersion || version > kVersion) {
    return Status(Errc::unsupported,
                  fmt::format("chunk: format version {} (this decoder reads {} to {})", version,
                              kOldestVersion, kVersion));
  }
  r.get(header_size);
  r.get(level);
  r.get(dtype);
  r.get(flags);
  r.get(layers);
  r.get(heads);
  r.get(dim);
  r.get(begin);
  r.get(count);
  r.get(segments);
  r.get(total);
  r.get(reserved);
  r.get(header_crc);
  if (header_size != kHeaderSize) return corrupt(fmt::format("header size {}", header_size));
  if (level > kMaxLevel) return corrupt(fmt::format("level {}", level));
  if (dtype > static_cast<std::uint8_t>(DType::bf16))
    return corrupt(fmt::format("dtype {}", dtype));
  const bool transformed = flags == kFlagTransform;
  if ((flags != 0 && !transformed) || (!transformed && reserved != 0)) {
    return corrupt("reserved header bits set");
  }
  if (transformed && level == 0) return corrupt("a lossless chunk marked transform-coded");
  if (layers == 0 || layers > kMaxLayers || heads == 0 || dim == 0 ||
      std::uint64_t{heads} * dim > kMaxChannels) {
    return corrupt(fmt::format("shape {} layers x {} heads x {} dims", layers, heads, dim));
  }
  if (count == 0 || count > kMaxTokens || std::uint64_t{begin} + count > UINT32_MAX) {
    return corrupt(fmt::format("token range {} + {}", begin, count));
  }
  if (segments != 2 * layers) {
    return corrupt(fmt::format("{} segments for {} layers", segments, layers));
  }
  if (total != chunk.size()) {
    return corrupt(fmt::format("header says {} bytes, chunk has {}", total, chunk.size()));
  }
  const std::size_t table_end = kHeaderSize + std::size_t{segments} * kSegmentEntrySize;
  if (table_end > chunk.size()) return corrupt("segment table runs past the end");
  std::uint32_t crc = crc32c(chunk.first(kHeaderCrcOffset));
  crc = crc32c(chunk.subspan(kHeaderSize, table_end - kHeaderSize), crc);
  if (crc != header_crc) return corrupt("header checksum mismatch");

  const ChunkInfo info{.level = level,
                       .dtype = static_cast<DType>(dtype),
                       .layers = layers,
                       .kv_heads = heads,
                       .head_dim = dim,
                       .token_begin = begin,
                       .token_count = count,
                       .total_size = total,
                       .transform_id = reserved,
                       .transformed = transformed,
                       .version = version};
  segments_out.resize(segments);
  std::size_t expected_offset = table_end;
  for (std::uint32_t i = 0; i < segments; ++i) {
    SegmentEntry& e = segments_out[i];
    r.get(e.offset);
    r.get(e.size);
    r.get(e.crc);
    if (e.offset != expected_offset || e.size < kSegmentFixedSize ||
        std::size_t{e.offset} + e.size > chunk.size()) {
      return corrupt(fmt::format("segment {} at [{}, +{}) is misplaced", i, e.offset, e.size));
    }
    expected_offset = std::size_t{e.offset} + e.size;
  }
  if (expected_offset != chunk.size()) return corrupt("bytes after the last segment");
  return info;
}

namespace {

// A verbatim segment's fixed fields are set ones, and its values fill the rest exactly.
template <class Bad>
Status parse_verbatim(ByteReader& r, const ChunkInfo& info, std::size_t C, std::uint8_t predictor,
                      std::uint8_t lanes, std::uint8_t reserved, std::uint16_t substreams,
                      std::uint16_t tail, const Bad& bad, SegmentView& s) {
  if (!r.ok()) return bad("truncated fixed fields");
  if (predictor != 0 || lanes != 1 || reserved != 0 || substreams != 1 || tail != 0) {
    return bad(
        fmt::format("verbatim with predictor {}, lanes {}, reserved {}, substreams {}, "
                    "tail {} (must be 0, 1, 0, 1, 0)",
                    predictor, lanes, reserved, substreams, tail));
  }
  const std::uint64_t want = std::uint64_t{info.token_count} * C * dtype_size(info.dtype);
  if (r.remaining() != want) {
    return bad(fmt::format("verbatim with {} bytes of values for {} x {} of {}", r.remaining(),
                           info.token_count, C, dtype_name(info.dtype)));
  }
  s.coding = Coding::verbatim;
  s.predictor = Predictor::none;
  s.lanes = 1;
  s.substreams = 1;
  s.coded = static_cast<std::uint32_t>(C);
  s.step_codes = s.table_ids = s.states = {};
  s.centers.clear();
  s.stream_bytes.clear();
  r.get_bytes(r.remaining(), s.words);
  return Status::ok();
}

}  // namespace

Status parse_segment(std::span<const std::byte> chunk, const SegmentEntry& entry,
                     std::uint32_t index, const ChunkInfo& info, SegmentView& s) {
  const auto seg = chunk.subspan(entry.offset, entry.size);
  if (crc32c(seg) != entry.crc) {
    return corrupt(fmt::format("segment {} (layer {} {}) checksum mismatch", index, index / 2,
                               index % 2 == 0 ? "K" : "V"));
  }
  const auto bad = [&](std::string what) {
    return corrupt(fmt::format("segment {} (layer {} {}): {}", index, index / 2,
                               index % 2 == 0 ? "K" : "V", what));
  };
  const std::size_t C = std::size_t{info.kv_heads} * info.head_dim;
  ByteReader r(seg);
  std::uint8_t coding = 0, predictor = 0, lanes = 0, res8 = 0;
  std::uint16_t substreams = 0, tail = 0;
  r.get(coding);
  r.get(predictor);
  r.get(lanes);
  r.get(res8);
  r.get(substreams);
  r.get(tail);
  const Coding want = info.level > 0             ? Coding::quantized
                      : info.dtype == DType::f32 ? Coding::split32
                                                 : Coding::split16;
  const bool verbatim = info.level == 0 && coding == static_cast<std::uint8_t>(Coding::verbatim);
  if (coding != static_cast<std::uint8_t>(want) && !verbatim) {
    return bad(fmt::format("coding {} where level {} of {} needs {}{}", coding, info.level,
                           dtype_name(info.dtype), static_cast<int>(want),
                           info.level == 0 ? " or 3" : ""));
  }
  if (verbatim) return parse_verbatim(r, info, C, predictor, lanes, res8, substreams, tail, bad, s);
  if (predictor > static_cast<std::uint8_t>(Predictor::previous_token) ||
      (predictor != 0 && coding != static_cast<std::uint8_t>(Coding::quantized))) {
    return bad(fmt::format("predictor {} with coding {}", predictor, coding));
  }
  if (!valid_lanes(lanes)) return bad(fmt::format("{} lanes", lanes));
  if (res8 != 0) return bad("reserved bits set");
  if (tail != 0 && (info.version < 2 || coding != static_cast<std::uint8_t>(Coding::quantized))) {
    return bad(fmt::format("a constant tail of {} channels in a version {} chunk with coding {}",
                           tail, info.version, coding));
  }
  if (tail > C) return bad(fmt::format("a constant tail of {} of its {} channels", tail, C));
  if (substreams == 0 || substreams > info.token_count) {
    return bad(fmt::format("{} substreams for {} tokens", substreams, info.token_count));
  }
  const std::uint32_t per = (info.token_count + substreams - 1) / substreams;
  if (std::uint64_t{substreams} * per - per >= info.token_count) {
    return bad(fmt::format("{} substreams leave one empty", substreams));
  }
  s.coding = static_cast<Coding>(coding);
  s.predictor = static_cast<Predictor>(predictor);
  s.lanes = lanes;
  s.substreams = substreams;
  s.coded = static_cast<std::uint32_t>(C - tail);
  if (s.coding == Coding::quantized && !r.get_bytes(C, s.step_codes)) return bad("truncated steps");
  if (!r.get_bytes(C, s.table_ids)) return bad("truncated table ids");
  for (std::byte id : s.table_ids) {
    if (static_cast<std::uint8_t>(id) >= kBankTables) {
      return bad(fmt::format("table id {}", static_cast<int>(id)));
    }
  }
  s.centers.resize(C);
  for (std::size_t c = 0; c < C; ++c) {
    if (!r.get_zigzag_varint(s.centers[c])) return bad(fmt::format("bad center of channel {}", c));
  }
  s.stream_bytes.resize(substreams);
  std::uint64_t total_words = 0;
  for (std::uint32_t k = 0; k < substreams; ++k) {
    if (!r.get(s.stream_bytes[k])) return bad("truncated substream sizes");
    if (s.stream_bytes[k] % 2 != 0) return bad(fmt::format("substream {} has odd size", k));
    total_words += s.stream_bytes[k];
  }
  if (!r.get_bytes(std::size_t{4} * substreams * lanes, s.states)) return bad("truncated states");
  for (std::size_t i = 0; i < s.states.size(); i += 4) {
    std::uint32_t x;
    std::memcpy(&x, s.states.data() + i, 4);
    if (x < kRansLow) return bad(fmt::format("lane state {} below 2^16", i / 4));
  }
  if (total_words != r.remaining()) {
    return bad(
        fmt::format("substreams hold {} bytes, segment has {} left", total_words, r.remaining()));
  }
  r.get_bytes(r.remaining(), s.words);
  return Status::ok();
}

Status check_destination(const ChunkInfo& info, const KvView& dst) {
  const KvLayout& dl = dst.layout();
  if (dl.layers != info.layers || dl.kv_heads != info.kv_heads || dl.head_dim != info.head_dim) {
    return Status(
        Errc::invalid_argument,
        fmt::format("chunk of {}x{}x{} into a view of {}x{}x{} (layers x heads x dim)", info.layers,
                    info.kv_heads, info.head_dim, dl.layers, dl.kv_heads, dl.head_dim));
  }
  return dst.check_range(info.token_begin, info.token_count).with_context("decode_chunk");
}

Expected<const KvTransform*> chunk_transform(const ChunkInfo& info, const CodecProfile* profile) {
  const KvTransform* t = profile != nullptr ? profile->transform() : nullptr;
  if (t == nullptr || profile->transform_id() != info.transform_id) {
    return Status(
        Errc::invalid_argument,
        fmt::format("chunk is transform-coded with transform {:08x}; {}", info.transform_id,
                    t == nullptr
                        ? "no profile with a transform was given"
                        : fmt::format("the profile's is {:08x}", profile->transform_id())));
  }
  if (t->channels != std::size_t{info.kv_heads} * info.head_dim || t->head_dim != info.head_dim ||
      t->layers() != info.layers) {
    return corrupt("its shape differs from its transform's");  // same id, other shape
  }
  return t;
}

}  // namespace kvstream::codec
