// The sender's chunk buffers: which buffer a request gets, what the pool keeps, and that a
// server's sessions reuse one another's buffers instead of making new ones.
#include "buffer_pool.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "session_fixture.hpp"

namespace kvstream::transport {
namespace {

using namespace std::chrono_literals;

std::vector<std::byte> with_capacity(std::size_t n) {
  std::vector<std::byte> b;
  b.reserve(n);
  return b;
}

TEST(BufferPool, ANewBufferHasRoomForTheChunksOfItsStream) {
  BufferPool pool(1 << 20);
  const auto b = pool.take(16000);
  EXPECT_TRUE(b.empty());
  EXPECT_GE(b.capacity(), 17000u);  // 1/16 more than asked
}

TEST(BufferPool, TakesTheSmallestFreeBufferThatFits) {
  BufferPool pool(1 << 20);
  for (std::size_t n : {4000, 1000, 2000})
    pool.give(with_capacity(n));
  EXPECT_EQ(pool.kept_buffers(), 3u);
  EXPECT_EQ(pool.take(1500).capacity(), 2000u);
  EXPECT_EQ(pool.take(100).capacity(), 1000u);
  // None left fits: a new one, and the 4000 stays.
  EXPECT_GE(pool.take(5000).capacity(), 5000u);
  EXPECT_EQ(pool.kept_buffers(), 1u);
  EXPECT_EQ(pool.kept_bytes(), 4000u);
}

TEST(BufferPool, AnUnknownSizeGetsTheLargestFreeBuffer) {
  BufferPool pool(1 << 20);
  EXPECT_EQ(pool.take(0).capacity(), 0u);
  for (std::size_t n : {1000, 3000, 2000})
    pool.give(with_capacity(n));
  EXPECT_EQ(pool.take(0).capacity(), 3000u);
}

TEST(BufferPool, KeepsNoMoreThanItsLimitDroppingTheSmallestFirst) {
  BufferPool pool(10000);
  for (std::size_t n : {3000, 4000, 2000})
    pool.give(with_capacity(n));
  EXPECT_EQ(pool.kept_bytes(), 9000u);
  pool.give(with_capacity(5000));  // 2000 and 3000 go
  EXPECT_EQ(pool.kept_buffers(), 2u);
  EXPECT_EQ(pool.kept_bytes(), 9000u);
  EXPECT_EQ(pool.take(4500).capacity(), 5000u);
  pool.give(with_capacity(20000));  // over the limit on its own
  pool.give({});                    // nothing to keep
  EXPECT_EQ(pool.kept_buffers(), 1u);
  BufferPool none(0);
  none.give(with_capacity(10));
  EXPECT_EQ(none.kept_buffers(), 0u);
}

TEST(BufferPool, SessionsOfOneServerReuseEachOthersBuffers) {
  Served served;
  ArchiveSource source(served.dir);
  BufferPool pool(std::size_t{64} << 20);
  const auto session = [&](std::uint32_t window) {
    auto [a, b] = testing::control_pair();
    auto [x, y] = FakeDataLink::pair();
    auto sender = std::async(std::launch::async, [&, c = std::move(a), l = std::move(x)] {
      return serve_session(*c, *l, source, 5000ms, pool);
    });
    StreamReceiver receiver(*b, *y);
    auto info = receiver.open("ctx", Clock::now() + 5s);
    ASSERT_TRUE(info.has_value()) << info.error().to_string();
    auto kv = KvBuffer::create(served.layout).value();
    StreamReceiver::FetchOptions o;
    o.window = window;
    ASSERT_TRUE(receiver.fetch(*info, kv.view(), o, {}).is_ok());
    EXPECT_TRUE(same_tokens(kv, served.expected(0), 0, served.layout.tokens));
    receiver.close(Clock::now() + 5s);
    const Status s = sender.get();
    EXPECT_TRUE(s.is_ok()) << s.to_string();
  };
  session(2);
  const std::size_t buffers = pool.kept_buffers(), bytes = pool.kept_bytes();
  EXPECT_GE(buffers, 1u);
  EXPECT_LE(buffers, 2u);  // at most one per chunk in flight
  session(2);
  EXPECT_EQ(pool.kept_buffers(), buffers);  // a new buffer would have been kept too
  EXPECT_EQ(pool.kept_bytes(), bytes);
}

TEST(BufferPool, ThreadsTakeAndGiveConcurrently) {
  BufferPool pool(1 << 20);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&pool, t] {
      for (int i = 0; i < 2000; ++i) {
        auto b = pool.take(static_cast<std::size_t>(1000 + 100 * ((i + t) % 7)));
        b.resize(10);
        pool.give(std::move(b));
      }
    });
  }
  for (auto& th : threads)
    th.join();
  // The books still balance: what is kept is what comes back out.
  const std::size_t buffers = pool.kept_buffers(), bytes = pool.kept_bytes();
  EXPECT_LE(bytes, std::size_t{1} << 20);
  EXPECT_GE(buffers, 1u);
  std::size_t taken = 0, sum = 0;
  for (auto b = pool.take(0); b.capacity() > 0; b = pool.take(0)) {
    ++taken;
    sum += b.capacity();
  }
  EXPECT_EQ(taken, buffers);
  EXPECT_EQ(sum, bytes);
  EXPECT_EQ(pool.kept_bytes(), 0u);
}

}  // namespace
}  // namespace kvstream::transport
