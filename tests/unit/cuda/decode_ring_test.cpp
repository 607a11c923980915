// The decode ring's order of work on fake decoders: a decoder is waited for before it takes a
// new chunk, readiness comes in submission order, and a failed decode stops the ring naming its
// chunk while the chunks reported before it stand.
#include "decode_ring.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvstream::gpu {
namespace {

// What the fakes did, in order: "stage 0 c7" (decoder 0 staged a chunk whose first byte is 7),
// "launch 0", "wait 0", "ready 7".
struct Log {
  std::vector<std::string> events;
  std::vector<bool> finished;  // per decoder: what finished() says
  int fail_wait_of = -1;       // the decoder whose next wait fails
};

class FakeDecoder {
 public:
  FakeDecoder(Log& log, int index) : log_(&log), index_(index) {}
  Status stage(std::span<const std::byte> chunk, const CodecProfile*) {
    log_->events.push_back("stage " + std::to_string(index_) + " c" +
                           std::to_string(static_cast<int>(chunk[0])));
    return Status::ok();
  }
  Status launch(const KvView&) {
    log_->events.push_back("launch " + std::to_string(index_));
    return Status::ok();
  }
  Expected<bool> finished() { return static_cast<bool>(log_->finished[index_]); }
  Expected<double> decode_ms() { return 0.25 * (index_ + 1); }
  Status wait() {
    log_->events.push_back("wait " + std::to_string(index_));
    if (log_->fail_wait_of == index_) {
      return Status(Errc::corrupt_data, "substream 3 ran past its words");
    }
    return Status::ok();
  }

 private:
  Log* log_;
  int index_;
};

// A ring of `depth` fakes; submit(id) hands it a one-byte chunk holding id, and the ids it
// reports ready are in `got`.
struct Fixture {
  explicit Fixture(int depth) : ring(make(log, depth)) {}
  static DecodeRing<FakeDecoder> make(Log& log, int depth) {
    std::vector<FakeDecoder> d;
    for (int i = 0; i < depth; ++i)
      d.emplace_back(log, i);
    log.finished.assign(depth, false);
    return DecodeRing<FakeDecoder>(std::move(d));
  }
  Status submit(int id) {
    const std::vector<std::byte> chunk{static_cast<std::byte>(id)};
    return ring.submit(id, chunk, KvView{}, nullptr, ready);
  }
  Log log;
  DecodeRing<FakeDecoder> ring;
  std::vector<std::size_t> got;
  std::vector<double> kernel_ms;
  DecodeRing<FakeDecoder>::Ready ready = [this](std::size_t id, const DecodeTimes& t) {
    got.push_back(id);
    kernel_ms.push_back(t.kernel_ms);
    EXPECT_GE(t.staging_ms, 0);
    log.events.push_back("ready " + std::to_string(id));
  };
};

TEST(DecodeRing, ADecoderIsWaitedForBeforeItTakesTheNextChunk) {
  Fixture f(2);
  for (int id : {0, 1, 2})
    ASSERT_TRUE(f.submit(id).is_ok());
  EXPECT_EQ(f.log.events,
            (std::vector<std::string>{"stage 0 c0", "launch 0", "stage 1 c1", "launch 1", "wait 0",
                                      "ready 0", "stage 0 c2", "launch 0"}));
  EXPECT_EQ(f.ring.in_flight(), 2u);
  f.log.events.clear();
  ASSERT_TRUE(f.ring.drain(f.ready).is_ok());
  EXPECT_EQ(f.log.events, (std::vector<std::string>{"wait 1", "ready 1", "wait 0", "ready 2"}));
  EXPECT_EQ(f.ring.in_flight(), 0u);
  // Each chunk's device time is its own decoder's.
  EXPECT_EQ(f.kernel_ms, (std::vector<double>{0.25, 0.5, 0.25}));
}

TEST(DecodeRing, ReadinessComesInSubmissionOrder) {
  Fixture f(3);
  for (int id : {10, 11, 12})
    ASSERT_TRUE(f.submit(id).is_ok());
  f.log.finished = {false, true, true};  // the later two are done, the first is not
  ASSERT_TRUE(f.ring.poll(f.ready).is_ok());
  EXPECT_TRUE(f.got.empty());
  f.log.finished = {true, true, false};
  ASSERT_TRUE(f.ring.poll(f.ready).is_ok());
  EXPECT_EQ(f.got, (std::vector<std::size_t>{10, 11}));
  // A submit polls first: chunk 12's decoder is done now, and chunk 13 goes to decoder 0.
  f.log.finished = {false, false, true};
  ASSERT_TRUE(f.submit(13).is_ok());
  EXPECT_EQ(f.got, (std::vector<std::size_t>{10, 11, 12}));
  EXPECT_EQ(f.log.events.back(), "launch 0");
  EXPECT_EQ(f.ring.in_flight(), 1u);
}

TEST(DecodeRing, AFailedDecodeStopsTheRingNamingItsChunk) {
  Fixture f(2);
  ASSERT_TRUE(f.submit(0).is_ok());
  ASSERT_TRUE(f.submit(1).is_ok());
  f.log.fail_wait_of = 1;
  // Chunk 2 waits for chunk 0 (which decoded) and takes its decoder; chunk 3 waits for chunk 1.
  ASSERT_TRUE(f.submit(2).is_ok());
  const Status s = f.submit(3);
  EXPECT_EQ(s.code(), Errc::corrupt_data);
  EXPECT_NE(s.to_string().find("chunk 1"), std::string::npos) << s.to_string();
  EXPECT_EQ(f.got, (std::vector<std::size_t>{0}));
  // Nothing more: not chunk 4, not a drain.
  EXPECT_EQ(f.submit(4).code(), Errc::corrupt_data);
  EXPECT_EQ(f.ring.drain(f.ready).code(), Errc::corrupt_data);
  EXPECT_EQ(f.got, (std::vector<std::size_t>{0}));
}

}  // namespace
}  // namespace kvstream::gpu
