#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "kvstream/codec.hpp"

namespace kvstream {
namespace {

std::string temp(const char* name) {
  return (std::filesystem::temp_directory_path() /
          (std::string("kvstream-profile-") + std::to_string(::getpid()) + "-" + name))
      .string();
}

std::string write(const char* name, const std::string& text) {
  const std::string p = temp(name);
  std::ofstream(p) << text;
  return p;
}

TEST(CodecProfile, BuiltinIsFinerForShallowLayersAndKeys) {
  const CodecProfile p = CodecProfile::builtin(4, 2);
  EXPECT_EQ(p.levels(), 5u);
  for (std::uint32_t level = 1; level <= p.levels(); ++level) {
    EXPECT_LT(p.relative_step(level, 0, KvPart::value, 0),
              p.relative_step(level, 3, KvPart::value, 0));
    EXPECT_LT(p.relative_step(level, 2, KvPart::key, 1),
              p.relative_step(level, 2, KvPart::value, 1));
    if (level > 1) {
      EXPECT_GT(p.relative_step(level, 1, KvPart::key, 0),
                p.relative_step(level - 1, 1, KvPart::key, 0));
    }
  }
}

TEST(CodecProfile, SaveLoadRoundTrip) {
  std::vector<float> steps;
  for (int i = 0; i < 2 * 3 * 2 * 4; ++i)
    steps.push_back(0.01f * static_cast<float>(i + 1));
  auto p = CodecProfile::from_steps(3, 4, 2, steps);
  ASSERT_TRUE(p);
  p->set_targets({1e-3, 3e-2});
  const std::string path = temp("rt");
  ASSERT_TRUE(p->save(path).is_ok());
  auto q = CodecProfile::load(path);
  ASSERT_TRUE(q) << q.error().to_string();
  EXPECT_EQ(q->layers(), 3u);
  EXPECT_EQ(q->groups(), 4u);
  EXPECT_EQ(q->levels(), 2u);
  EXPECT_EQ(q->targets(), (std::vector<double>{1e-3, 3e-2}));
  ASSERT_EQ(q->steps().size(), steps.size());
  for (std::size_t i = 0; i < steps.size(); ++i)
    EXPECT_FLOAT_EQ(q->steps()[i], steps[i]);
  EXPECT_FLOAT_EQ(q->relative_step(2, 1, KvPart::value, 3),
                  steps[q->index(2, 1, KvPart::value, 3)]);
  std::filesystem::remove(path);
}

TEST(CodecProfile, MalformedFilesNameTheLine) {
  struct Case {
    const char* text;
    const char* mention;
  };
  const Case cases[] = {
      {"kvstream-profile 2\n", ":1: expected 'kvstream-profile 1'"},
      {"kvstream-profile 1\nlayers 0\n", ":2: expected 'layers N'"},
      {"kvstream-profile 1\nlayers 1\ngroups 1\nlevels 1\nlevel 1 0.1 0.5\n", ":5: step 1"},
      {"kvstream-profile 1\nlayers 1\ngroups 1\nlevels 1\nlevel 1 0.1 0.5 -1\n", ":5: step 1"},
      {"kvstream-profile 1\nlayers 1\ngroups 1\nlevels 1\nlevel 1 0.1 0.5 0.5 9\n",
       ":5: unexpected '9'"},
      {"kvstream-profile 1\nlayers 1\ngroups 1\nlevels 2\nlevel 1 0.1 0.5 0.5\n",
       "ends before all 2 levels"},
      {"kvstream-profile 1\nlayers 1\ngroups 1\nlevels 1\nlevel 2 0.1 0.5 0.5\n",
       ":5: expected 'level 1"},
  };
  for (const Case& c : cases) {
    const std::string path = write("bad", c.text);
    auto p = CodecProfile::load(path);
    ASSERT_FALSE(p) << c.text;
    EXPECT_EQ(p.error().code(), Errc::corrupt_data);
    EXPECT_NE(p.error().message().find(c.mention), std::string::npos) << p.error().message();
    std::filesystem::remove(path);
  }
  EXPECT_EQ(CodecProfile::load(temp("missing")).status().code(), Errc::not_found);
  EXPECT_EQ(CodecProfile::from_steps(1, 1, 1, {0.5f}).status().code(), Errc::invalid_argument);
  EXPECT_EQ(CodecProfile::from_steps(1, 1, 1, {0.5f, 0.0f}).status().code(),
            Errc::invalid_argument);
}

TEST(CodecProfile, EncoderRejectsAProfileOfAnotherShape) {
  auto kv = KvBuffer::create(KvLayout{2, 2, 8, DType::f16, 16});
  auto p = CodecProfile::from_steps(3, 1, 1, std::vector<float>(6, 0.5f));
  std::vector<std::byte> out;
  EncodeOptions o;
  o.level = 1;
  o.profile = &*p;
  EXPECT_EQ(encode_chunk(kv->view(), 0, 16, o, out).code(), Errc::invalid_argument);
  auto groups = CodecProfile::from_steps(2, 3, 1, std::vector<float>(12, 0.5f));  // 16 % 3 != 0
  o.profile = &*groups;
  EXPECT_EQ(encode_chunk(kv->view(), 0, 16, o, out).code(), Errc::invalid_argument);
}

}  // namespace
}  // namespace kvstream
