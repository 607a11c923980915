// The session tests' shared setup: a synthetic context's archive, a sender serving it in a
// thread, and the receiver's ends, all on the shared fake data link (and its fault injector).
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <future>
#include <memory>

#include "kv_test_data.hpp"
#include "kvstream/archive.hpp"
#include "loopback.hpp"
#include "session.hpp"
#include "test_models.hpp"

namespace kvstream::transport {

// Numbers the archive folders of one test process, across the files that include this.
inline int served_folders = 0;

namespace {

using namespace std::chrono_literals;

// An archive of a synthetic context in a fresh folder: 4 chunks of 32 tokens (the last 20).
struct Served {
  std::filesystem::path dir;
  KvLayout layout{2, 2, 16, DType::f16, 116};
  Served() {
    dir = kvstream::testing::temp_dir() / ("served" + std::to_string(served_folders++));
    std::filesystem::create_directories(dir);
    auto kv = KvBuffer::create(layout).value();
    testing_data::fill_synthetic(kv.view(), 5, false);
    std::vector<std::int32_t> tokens(layout.tokens);
    for (std::uint32_t i = 0; i < layout.tokens; ++i)
      tokens[i] = static_cast<std::int32_t>(i * 7 % 500);
    ArchiveOptions o;
    o.chunk_tokens = 32;
    o.max_level = 3;
    EXPECT_TRUE(write_archive((dir / "ctx.kva").string(), kv.view(), tokens, o).is_ok());
  }
  // What decoding the archive's chunks at `level` locally gives.
  KvBuffer expected(std::uint32_t level) const {
    auto r = ArchiveReader::open((dir / "ctx.kva").string()).value();
    auto kv = KvBuffer::create(layout).value();
    std::vector<std::byte> chunk;
    for (std::uint32_t c = 0; c < r.info().chunk_count; ++c) {
      EXPECT_TRUE(r.read_chunk(c, level, chunk).is_ok());
      EXPECT_TRUE(decode_chunk(chunk, kv.view()).is_ok());
    }
    return kv;
  }
};

// A sender serving one session from `source` in a thread, over `link`.
struct Sender {
  std::unique_ptr<ControlChannel> control;
  std::unique_ptr<DataLink> link;
  std::future<Status> result;
  void start(ChunkSource& source, std::chrono::milliseconds idle) {
    result = std::async(std::launch::async, [this, &source, idle] {
      Status s = serve_session(*control, *link, source, idle);
      link.reset();  // a sender that is gone: the receiver's link sees it
      return s;
    });
  }
};

// A receiver's control channel and (fake) data link, and the sender at their other ends: from
// the archives in `dir`, or from any source that outlives the session.
struct Session {
  std::unique_ptr<ArchiveSource> archives;
  Sender sender;
  std::unique_ptr<ControlChannel> control;
  std::unique_ptr<DataLink> link;
  Session(const std::filesystem::path& dir, Faults faults = {},
          std::chrono::milliseconds idle = 5000ms)
      : archives(std::make_unique<ArchiveSource>(dir)) {
    connect(*archives, faults, idle);
  }
  explicit Session(ChunkSource& source, std::chrono::milliseconds idle = 5000ms) {
    connect(source, {}, idle);
  }
  // The archives in `dir`, the sender paced to `bits_per_second`.
  Session(const std::filesystem::path& dir, double bits_per_second)
      : archives(std::make_unique<ArchiveSource>(dir)) {
    connect(*archives, {}, 5000ms, bits_per_second);
  }

 private:
  void connect(ChunkSource& source, Faults faults, std::chrono::milliseconds idle,
               double bits_per_second = 0) {
    auto [a, b] = testing::control_pair();
    auto [x, y] = FakeDataLink::pair();
    sender.control = std::move(a);
    sender.link = std::make_unique<FaultyLink>(std::move(x), faults);
    if (bits_per_second > 0)
      sender.link = std::make_unique<PacedLink>(std::move(sender.link), bits_per_second);
    control = std::move(b);
    link = std::move(y);
    sender.start(source, idle);
  }
};

bool same_tokens(const KvBuffer& a, const KvBuffer& b, std::uint32_t begin, std::uint32_t end) {
  for (std::uint32_t l = 0; l < a.layout().layers; ++l)
    for (KvPart p : {KvPart::key, KvPart::value})
      for (std::uint32_t t = begin; t < end; ++t)
        if (std::memcmp(a.view().row(l, p, t), b.view().row(l, p, t), a.layout().row_bytes()) != 0)
          return false;
  return true;
}

}  // namespace
}  // namespace kvstream::transport
