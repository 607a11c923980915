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
#include "golden_cases.hpp"
#include "kv_test_data.hpp"
#include "kvstream/codec.hpp"

namespace kvstream {
namespace {

using testing_data::GoldenCase;
using testing_data::kGoldenCases;
using testing_data::profile_of;

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
  for (const GoldenCase& g : kGoldenCases) {
    const KvBuffer src = testing_data::golden_source(g);
    const CodecProfile profile = profile_of(g);
    const EncodeOptions o = testing_data::golden_options(g, profile);
    std::vector<std::byte> chunk;
    ASSERT_TRUE(encode_chunk(src.view(), g.begin, g.count, o, chunk).is_ok()) << g.name;
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

// Files the version 1 encoder wrote (tests/golden/v1): decoders still read them, to the values
// the current files decode to.
TEST(Golden, VersionOneFilesStillDecode) {
  auto manifest = read_manifest();
  int read = 0;
  for (const GoldenCase& g : kGoldenCases) {
    const auto file = kDir / "v1" / (std::string(g.name) + ".kvsc");
    if (!std::filesystem::exists(file)) continue;
    const auto chunk = read_file(file);
    const auto info = read_chunk_info(chunk);
    ASSERT_TRUE(info) << g.name;
    EXPECT_EQ(info->version, 1) << g.name;
    EXPECT_EQ(decoded_crc(chunk, g), manifest[g.name]) << g.name;
    ++read;
  }
  EXPECT_EQ(read, 5);
}

}  // namespace
}  // namespace kvstream
