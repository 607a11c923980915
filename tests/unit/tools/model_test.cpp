#include "runner/model.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include "test_models.hpp"

namespace kvstream::runner {
namespace {

using kvstream::testing::temp_dir;

std::vector<char> read_all(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::filesystem::path write_file(const std::string& name, const std::vector<char>& bytes) {
  const auto p = temp_dir() / name;
  std::ofstream(p, std::ios::binary)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return p;
}

std::vector<char> stories_bytes() {
  return read_all(models_dir() / "stories260K.bin");
}

void set_header(std::vector<char>& bytes, int field, std::int32_t value) {
  std::memcpy(bytes.data() + 4 * field, &value, 4);
}

Status load_status(const std::filesystem::path& p) {
  return Model::load(p).status();
}

TEST(Model, LoadsStoriesConfig) {
  const ModelConfig& c = kvstream::testing::stories260k().config();
  EXPECT_EQ(c.dim, 64u);
  EXPECT_EQ(c.hidden_dim, 172u);
  EXPECT_EQ(c.layers, 5u);
  EXPECT_EQ(c.heads, 8u);
  EXPECT_EQ(c.kv_heads, 4u);
  EXPECT_EQ(c.head_dim(), 8u);
  EXPECT_EQ(c.vocab, 512u);
  EXPECT_EQ(c.seq_len, 512u);
  EXPECT_TRUE(c.shared_classifier);
  const KvLayout l = kvstream::testing::stories260k().kv_layout(384, DType::f16);
  EXPECT_EQ(l.total_values(), 2u * 5 * 384 * 32);
}

TEST(Model, MissingFileIsNotFound) {
  const Status s = load_status(temp_dir() / "no-such-model.bin");
  EXPECT_EQ(s.code(), Errc::not_found);
  EXPECT_NE(s.message().find("no-such-model.bin"), std::string::npos);
}

TEST(Model, EmptyAndShortHeaderAreCorrupt) {
  EXPECT_EQ(load_status(write_file("empty.bin", {})).code(), Errc::corrupt_data);
  EXPECT_EQ(load_status(write_file("short.bin", std::vector<char>(20, 0))).code(),
            Errc::corrupt_data);
}

TEST(Model, TruncatedWeightsAreCorruptAndSaySo) {
  const auto full = stories_bytes();
  const std::vector<char> bytes(full.begin(), full.end() - 100);
  const Status s = load_status(write_file("truncated.bin", bytes));
  EXPECT_EQ(s.code(), Errc::corrupt_data);
  EXPECT_NE(s.message().find("truncated"), std::string::npos) << s.message();
}

TEST(Model, TrailingBytesAreCorrupt) {
  auto bytes = stories_bytes();
  bytes.insert(bytes.end(), 8, '\0');
  EXPECT_EQ(load_status(write_file("long.bin", bytes)).code(), Errc::corrupt_data);
}

TEST(Model, InconsistentHeadersAreCorruptNamingTheField) {
  struct Case {
    int field;
    std::int32_t value;
    const char* mention;
  };
  const Case cases[] = {
      {0, 0, "dim"},         {0, -64, "dim"},    {1, 0, "hidden_dim"}, {2, 0, "n_layers"},
      {2, 5000, "n_layers"}, {3, 7, "n_heads"},  {4, 3, "n_kv_heads"}, {4, 16, "n_kv_heads"},
      {5, 0, "vocab_size"},  {6, -1, "seq_len"}, {3, 64, "odd"},       {1, 1 << 30, "hidden_dim"},
  };
  for (const Case& c : cases) {
    auto bytes = stories_bytes();
    set_header(bytes, c.field, c.value);
    const Status s = load_status(write_file("bad-header.bin", bytes));
    EXPECT_EQ(s.code(), Errc::corrupt_data) << c.field << "=" << c.value;
    EXPECT_NE(s.message().find(c.mention), std::string::npos) << s.message();
  }
}

TEST(Model, NegativeVocabExpectsSeparateClassifier) {
  // Flipping the sign claims a separate classifier the file does not have.
  auto bytes = stories_bytes();
  set_header(bytes, 5, -512);
  EXPECT_EQ(load_status(write_file("no-classifier.bin", bytes)).code(), Errc::corrupt_data);
  // With the classifier appended it loads and uses it.
  std::vector<char> cls(512 * 64 * 4);
  const auto emb_begin = bytes.begin() + 28;
  std::copy(emb_begin, emb_begin + static_cast<std::ptrdiff_t>(cls.size()), cls.begin());
  bytes.insert(bytes.end(), cls.begin(), cls.end());
  auto m = Model::load(write_file("classifier.bin", bytes));
  ASSERT_TRUE(m) << m.error().to_string();
  EXPECT_FALSE(m->config().shared_classifier);
  EXPECT_NE(m->classifier(), m->token_embedding());
}

TEST(Model, NonFiniteWeightIsCorrupt) {
  auto bytes = stories_bytes();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(bytes.data() + 28 + 4 * 1000, &nan, 4);
  const Status s = load_status(write_file("nan.bin", bytes));
  EXPECT_EQ(s.code(), Errc::corrupt_data);
  EXPECT_NE(s.message().find("not finite"), std::string::npos);
}

}  // namespace
}  // namespace kvstream::runner
