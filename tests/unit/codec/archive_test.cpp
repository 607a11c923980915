#include "kvstream/archive.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "kv_test_data.hpp"

namespace kvstream {
namespace {

class Archive : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("kvstream-archive-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    kv_ = std::make_unique<KvBuffer>(*KvBuffer::create(KvLayout{2, 2, 8, DType::f16, 300}));
    testing_data::fill_synthetic(kv_->view(), 9, false);
    for (int i = 0; i < 300; ++i)
      tokens_.push_back(i * 7 % 512);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const char* name) const { return (dir_ / name).string(); }
  std::string write(const char* name) {
    ArchiveOptions o;
    o.chunk_tokens = 128;
    o.max_level = 3;
    EXPECT_TRUE(write_archive(path(name), kv_->view(), tokens_, o).is_ok());
    return path(name);
  }
  void corrupt_byte(const std::string& p, std::uint64_t at) {
    std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(at));
    char c;
    f.get(c);
    f.seekp(static_cast<std::streamoff>(at));
    f.put(static_cast<char>(c ^ 0x40));
  }

  std::filesystem::path dir_;
  std::unique_ptr<KvBuffer> kv_;
  std::vector<std::int32_t> tokens_;
};

TEST_F(Archive, RoundTripsEveryChunkAtEveryLevel) {
  auto r = ArchiveReader::open(write("a.kva"));
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->info().chunk_count, 3u);
  EXPECT_EQ(r->info().levels, 4u);
  EXPECT_EQ(r->info().layout.tokens, 300u);
  EXPECT_EQ(r->tokens(), tokens_);
  auto out = KvBuffer::create(kv_->layout());
  std::vector<std::byte> chunk;
  for (std::uint32_t level = 0; level < 4; ++level) {
    for (std::uint32_t i = 0; i < 3; ++i) {
      ASSERT_TRUE(r->read_chunk(i, level, chunk).is_ok());
      EXPECT_EQ(chunk.size(), r->chunk_size(i, level));
      ASSERT_TRUE(decode_chunk(chunk, out->view()).is_ok());
    }
    if (level == 0) {
      EXPECT_EQ(std::memcmp(out->bytes().data(), kv_->bytes().data(), kv_->bytes().size()), 0);
    }
  }
  EXPECT_LT(r->chunk_size(0, 3), r->chunk_size(0, 1));
  EXPECT_EQ(r->read_chunk(3, 0, chunk).code(), Errc::out_of_range);
  EXPECT_EQ(r->read_chunk(0, 4, chunk).code(), Errc::out_of_range);
}

TEST_F(Archive, MissingFileIsNotFound) {
  EXPECT_EQ(ArchiveReader::open(path("none.kva")).status().code(), Errc::not_found);
}

TEST_F(Archive, TruncationAndCorruptionAreDetected) {
  const std::string p = write("b.kva");
  const auto size = std::filesystem::file_size(p);
  for (std::uint64_t keep : {std::uint64_t{0}, std::uint64_t{10}, std::uint64_t{64},
                             std::uint64_t{1000}, std::uint64_t{size - 1}}) {
    const std::string cut = path("cut.kva");
    std::filesystem::copy_file(p, cut, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(cut, keep);
    EXPECT_EQ(ArchiveReader::open(cut).status().code(), Errc::corrupt_data) << keep;
  }
  // Header, tokens and index are checked on open; a chunk when it is read.
  for (std::uint64_t at :
       {std::uint64_t{5}, std::uint64_t{30}, std::uint64_t{70}, std::uint64_t{size - 20}}) {
    const std::string bad = path("bad.kva");
    std::filesystem::copy_file(p, bad, std::filesystem::copy_options::overwrite_existing);
    corrupt_byte(bad, at);
    EXPECT_FALSE(ArchiveReader::open(bad)) << at;
  }
  const std::string bad = path("badchunk.kva");
  std::filesystem::copy_file(p, bad, std::filesystem::copy_options::overwrite_existing);
  corrupt_byte(bad, 64 + 300 * 4 + 4 + 100);  // inside chunk 0 level 0
  auto r = ArchiveReader::open(bad);
  ASSERT_TRUE(r);
  std::vector<std::byte> chunk;
  const Status s = r->read_chunk(0, 0, chunk);
  EXPECT_EQ(s.code(), Errc::corrupt_data);
  EXPECT_NE(s.message().find("chunk 0 level 0"), std::string::npos) << s.message();
  EXPECT_TRUE(r->read_chunk(1, 0, chunk).is_ok());  // the rest stays readable
}

TEST_F(Archive, FailedWriteLeavesNothingUnderTheFinalName) {
  const std::string p = write("c.kva");
  const auto before = std::filesystem::file_size(p);
  // A NaN makes the lossy levels fail half-way through the archive.
  const std::uint16_t nan = 0x7E00;
  std::memcpy(kv_->view().row(1, KvPart::value, 200), &nan, 2);
  ArchiveOptions o;
  o.chunk_tokens = 128;
  o.max_level = 3;
  const Status s = write_archive(p, kv_->view(), tokens_, o);
  EXPECT_EQ(s.code(), Errc::invalid_argument);
  EXPECT_NE(s.message().find("chunk 1 level 1"), std::string::npos) << s.message();
  EXPECT_EQ(std::filesystem::file_size(p), before);  // the old archive is untouched
  EXPECT_TRUE(ArchiveReader::open(p));
  for (const auto& e : std::filesystem::directory_iterator(dir_)) {
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << e.path();
  }
  EXPECT_EQ(write_archive(path("nodir/x.kva"), kv_->view(), tokens_, o).code(), Errc::not_found);
  EXPECT_EQ(write_archive(path("d.kva"), kv_->view(), std::span(tokens_).first(10), o).code(),
            Errc::invalid_argument);
}

}  // namespace
}  // namespace kvstream
