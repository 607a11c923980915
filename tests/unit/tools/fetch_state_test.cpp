// OUT.partial: what a broken-off fetch keeps round-trips, damaged files are refused with the
// reason, and a partial fetch resumes only the request and stream it began.
#include <gtest/gtest.h>

#include <fstream>

#include "cli/fetch_state.hpp"
#include "test_models.hpp"

namespace kvstream::cli {
namespace {

transport::StreamInfo stream() {
  transport::StreamInfo info;
  info.layout = KvLayout{2, 2, 8, DType::f16, 40};
  info.chunk_tokens = 16;
  info.chunk_count = 3;
  info.levels = 2;
  info.sizes = {100, 50, 90, 45, 30, 15};
  info.tokens.assign(40, 1);
  return info;
}

TEST(FetchState, SavedStateLoadsAsItWas) {
  const auto info = stream();
  FetchState s =
      fresh_fetch_state("ctx", 1, info, std::vector<std::byte>(info.layout.total_bytes()));
  EXPECT_EQ(s.sizes, (std::vector<std::uint32_t>{50, 45, 15}));
  s.landed[1] = 1;
  s.kv[7] = std::byte{42};
  const std::string path = (kvstream::testing::temp_dir() / "state.partial").string();
  ASSERT_TRUE(save_fetch_state(path, s).is_ok());
  const auto back = load_fetch_state(path);
  ASSERT_TRUE(back.has_value()) << back.error().to_string();
  EXPECT_EQ(back->context, "ctx");
  EXPECT_EQ(back->level, 1u);
  EXPECT_EQ(back->landed, s.landed);
  EXPECT_EQ(back->kv, s.kv);
  EXPECT_TRUE(check_resumable(*back, "ctx", 1, info).is_ok());
  EXPECT_NE(
      check_resumable(*back, "ctx", 0, info).message().find("at level 1, not 'ctx' at level 0"),
      std::string::npos);
  auto changed = info;
  changed.sizes[3] = 46;  // chunk 1 at level 1 is not what it was
  EXPECT_NE(check_resumable(*back, "ctx", 1, changed).message().find("not the stream"),
            std::string::npos);
}

TEST(FetchState, MissingAndDamagedFilesAreRefusedWithTheReason) {
  const std::string path = (kvstream::testing::temp_dir() / "damaged.partial").string();
  EXPECT_EQ(load_fetch_state(path + ".none").error().code(), Errc::not_found);
  const auto info = stream();
  ASSERT_TRUE(
      save_fetch_state(path, fresh_fetch_state("ctx", 0, info,
                                               std::vector<std::byte>(info.layout.total_bytes())))
          .is_ok());
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  const auto load_bytes = [&](const std::string& b) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << b;
    return load_fetch_state(path);
  };
  EXPECT_NE(load_bytes("not a state").error().message().find("magic"), std::string::npos);
  for (std::size_t cut : {std::size_t{12}, std::size_t{30}, bytes.size() - 1}) {
    const auto r = load_bytes(bytes.substr(0, cut));
    ASSERT_FALSE(r.has_value()) << cut;
    EXPECT_EQ(r.error().code(), Errc::corrupt_data) << cut;
  }
  EXPECT_EQ(load_bytes(bytes + "x").error().code(), Errc::corrupt_data);
}

}  // namespace
}  // namespace kvstream::cli
