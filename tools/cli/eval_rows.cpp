#include "cli/eval_rows.hpp"

#include <cstring>

#include "kvstream/half.hpp"

namespace kvstream::cli {

// The tokens' rows as one fp16 byte array, [layer][K|V][token][channel].
std::vector<std::byte> gather(const KvView& kv, std::uint32_t begin, std::uint32_t count) {
  const KvLayout& l = kv.layout();
  std::vector<std::byte> out;
  out.reserve(2 * std::size_t{l.layers} * count * l.row_bytes());
  for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
    for (KvPart part : {KvPart::key, KvPart::value}) {
      for (std::uint32_t t = begin; t < begin + count; ++t) {
        const std::byte* row = kv.row(layer, part, t);
        out.insert(out.end(), row, row + l.row_bytes());
      }
    }
  }
  return out;
}

Status scatter(std::span<const std::byte> in, const KvView& kv, std::uint32_t begin,
               std::uint32_t count) {
  const KvLayout& l = kv.layout();
  if (in.size() != 2 * std::size_t{l.layers} * count * l.row_bytes()) {
    return Status(Errc::corrupt_data, "decoded size does not match the token range");
  }
  const std::byte* p = in.data();
  for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
    for (KvPart part : {KvPart::key, KvPart::value}) {
      for (std::uint32_t t = begin; t < begin + count; ++t) {
        std::memcpy(kv.row(layer, part, t), p, l.row_bytes());
        p += l.row_bytes();
      }
    }
  }
  return Status::ok();
}

float fp16_at(std::span<const std::byte> rows, std::size_t i) {
  std::uint16_t h;
  std::memcpy(&h, rows.data() + 2 * i, 2);
  return half_to_float(h);
}

void put_fp16(std::span<std::byte> rows, std::size_t i, float value) {
  const std::uint16_t h = float_to_half(value);
  std::memcpy(rows.data() + 2 * i, &h, 2);
}

}  // namespace kvstream::cli
