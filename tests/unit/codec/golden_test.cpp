// Golden files pin the chunk format: the encoder must reproduce them byte for byte, and the
// decoder must turn them into the recorded values. After a deliberate format change, rerun
// with KVSTREAM_UPDATE_GOLDEN=1 to rewrite them (and say so in the commit).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>

#include "crc32c.hpp"
#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"

namespace kvstream {
namespace {

struct GoldenCase {
  const char* name;
  KvLayout layout;
  std::uint32_t begin, count;
  std::uint8_t level;
  std::uint32_t lanes, substream_values;
  bool specials;
  bool smooth_keys = false;  // K drifts slowly, so that its segments use the predictor
  bool transform = false;    // coded with testing_data::make_transform_profile(..., 3)
};

const GoldenCase kCases[] = {
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
};

CodecProfile profile_of(const GoldenCase& g) {
  return g.transform ? testing_data::make_transform_profile(g.layout.layers, g.layout.kv_heads,
                                                            g.layout.head_dim, 3)
                     : CodecProfile::builtin(g.layout.layers, 1);
}

const std::filesystem::path kDir = KVSTREAM_GOLDEN_DIR;

std::vector<std::byte> read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  const std::vector<char> c{std::istreambuf_iterator<char>(in), {}};
  const auto* b = reinterpret_cast<const std::byte*>(c.data());
  return {b, b + c.size()};
}

std::map<std::string, std::uint32_t> read_manifest() {
  std::map<std::string, std::uint32_t> m;
  std::ifstream in(kDir / "MANIFEST");
  std::string name;
  std::uint32_t crc;
  while (in >> name >> std::hex >> crc)
    m[name] = crc;
  return m;
}

// CRC32C of a view's tokens [begin, begin + count) decoded into f32.
std::uint32_t decoded_crc(std::span<const std::byte> chunk, const GoldenCase& g) {
  KvLayout l = g.layout;
  l.dtype = DType::f32;
  auto out = KvBuffer::create(l);
  const CodecProfile profile = profile_of(g);
  EXPECT_TRUE(decode_chunk(chunk, out->view(), &profile).is_ok()) << g.name;
  std::uint32_t crc = 0;
  for (std::uint32_t layer = 0; layer < l.layers; ++layer) {
    for (KvPart part : {KvPart::key, KvPart::value}) {
      for (std::uint32_t t = g.begin; t < g.begin + g.count; ++t) {
        crc = codec::crc32c(std::span(out->view().row(layer, part, t), l.row_bytes()), crc);
      }
    }
  }
  return crc;
}

TEST(Golden, EncoderReproducesAndDecoderReadsEveryFile) {
  const bool update = std::getenv("KVSTREAM_UPDATE_GOLDEN") != nullptr;
  auto manifest = read_manifest();
  std::ostringstream new_manifest;
  for (const GoldenCase& g : kCases) {
    auto src = KvBuffer::create(g.layout);
    ASSERT_TRUE(src);
    testing_data::fill_synthetic(src->view(), 42, g.specials);
    if (g.smooth_keys) testing_data::fill_smooth(src->view(), 42, /*keys_only=*/true);
    const CodecProfile profile = profile_of(g);
    EncodeOptions o;
    o.level = g.level;
    o.profile = &profile;
    o.lanes = g.lanes;
    o.substream_values = g.substream_values;
    std::vector<std::byte> chunk;
    ASSERT_TRUE(encode_chunk(src->view(), g.begin, g.count, o, chunk).is_ok()) << g.name;
    const auto file = kDir / (std::string(g.name) + ".kvsc");
    if (update) {
      std::ofstream(file, std::ios::binary)
          .write(reinterpret_cast<const char*>(chunk.data()), static_cast<long>(chunk.size()));
      new_manifest << g.name << ' ' << std::hex << decoded_crc(chunk, g) << '\n';
      continue;
    }
    const auto golden = read_file(file);
    ASSERT_FALSE(golden.empty()) << "missing golden file " << file;
    EXPECT_EQ(chunk, golden) << g.name << ": the encoder's output changed";
    ASSERT_TRUE(manifest.count(g.name)) << g.name << " missing from MANIFEST";
    EXPECT_EQ(decoded_crc(golden, g), manifest[g.name]) << g.name << ": decoded values changed";
  }
  if (update) std::ofstream(kDir / "MANIFEST") << new_manifest.str();
}

}  // namespace
}  // namespace kvstream
