// Store-mode sessions on the shared fake data link (and its fault injector) with real control
// channels: full streams at every level, resume after a dead sender, a corrupted chunk, a
// stalled sender, and requests that break the protocol.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <thread>

#include "encode_plan.hpp"
#include "session_fixture.hpp"

namespace kvstream::transport {
namespace {

using namespace std::chrono_literals;

TEST(Session, FullStreamsAtEveryLevelMatchTheArchive) {
  Served served;
  Session s(served.dir);
  StreamReceiver receiver(*s.control, *s.link);
  auto info = receiver.open("ctx", Clock::now() + 5s);
  ASSERT_TRUE(info.has_value()) << info.error().to_string();
  EXPECT_EQ(info->chunk_count, 4u);
  EXPECT_EQ(info->levels, 4u);
  EXPECT_EQ(info->tokens.size(), 116u);
  EXPECT_EQ(info->tokens[3], 21);
  for (std::uint32_t level = 0; level < info->levels; ++level) {
    auto kv = KvBuffer::create(served.layout).value();
    std::vector<std::uint32_t> landed;
    StreamReceiver::FetchOptions o;
    o.level = level;
    o.window = 1 + level;  // one to four in flight
    o.progress_thread = level % 2 == 1;
    const Status f =
        receiver.fetch(*info, kv.view(), o, [&](std::uint32_t c) { landed.push_back(c); });
    ASSERT_TRUE(f.is_ok()) << f.to_string();
    EXPECT_EQ(landed, (std::vector<std::uint32_t>{0, 1, 2, 3}));
    EXPECT_TRUE(same_tokens(kv, served.expected(level), 0, 116)) << level;
  }
  receiver.close(Clock::now() + 5s);
  EXPECT_TRUE(s.sender.result.get().is_ok());
}

TEST(Session, SlotsComeFromTheReceiversAllocatorAndItsFailureIsNamed) {
  Served served;
  Session s(served.dir);
  StreamReceiver receiver(*s.control, *s.link);
  auto info = receiver.open("ctx", Clock::now() + 5s);
  ASSERT_TRUE(info.has_value()) << info.error().to_string();
  // An allocator handing out memory it keeps track of: the chunks land in it.
  std::vector<SlotMemory> handed;
  receiver.set_slot_allocator([&](std::size_t bytes) -> Expected<SlotMemory> {
    handed.push_back({std::make_shared<std::byte[]>(bytes), bytes});
    return handed.back();
  });
  auto kv = KvBuffer::create(served.layout).value();
  StreamReceiver::FetchOptions o;
  o.level = 2;
  o.window = 3;
  o.consume = [&](std::size_t, std::span<const std::byte> chunk) {
    const bool ours = std::any_of(handed.begin(), handed.end(), [&](const SlotMemory& m) {
      return chunk.data() >= m.owner.get() && chunk.data() + chunk.size() <= m.owner.get() + m.size;
    });
    EXPECT_TRUE(ours);
    return decode_chunk(chunk, kv.view());
  };
  ASSERT_TRUE(receiver.fetch(*info, kv.view(), o, [](std::uint32_t) {}).is_ok());
  EXPECT_EQ(handed.size(), 3u);  // one per slot of the window
  EXPECT_TRUE(same_tokens(kv, served.expected(2), 0, 116));
  // A new allocator replaces the slots; one that fails ends the fetch with its error.
  receiver.set_slot_allocator([](std::size_t) -> Expected<SlotMemory> {
    return Status(Errc::resource_exhausted, "no pinned memory left");
  });
  const Status f = receiver.fetch(*info, kv.view(), o, [](std::uint32_t) {});
  EXPECT_EQ(f.code(), Errc::resource_exhausted);
  EXPECT_NE(f.to_string().find("no pinned memory"), std::string::npos) << f.to_string();
  receiver.close(Clock::now() + 5s);
  EXPECT_TRUE(s.sender.result.get().is_ok());
}

// Chunks 0..3 at one level, counting what the fetch asks for and what has landed.
class CountingSource final : public WantSource {
 public:
  explicit CountingSource(std::uint32_t level) : level_(level) {}
  Next next() override {
    if (asked_ == 4) return {};
    most_in_flight_ = std::max(most_in_flight_.load(), asked_ + 1 - landed_);
    return {Next::Kind::want, {asked_++, level_}};
  }
  void landed(std::size_t, std::size_t, Clock::time_point, Clock::time_point) override {
    ++landed_;
  }
  std::uint32_t asked() const { return asked_; }
  std::uint32_t most_in_flight() const { return most_in_flight_; }

 private:
  std::uint32_t level_;
  std::atomic<std::uint32_t> asked_{0}, landed_{0}, most_in_flight_{0};
};

// A decoder slower than the link: without a backlog, the slots it holds keep the link idle;
// with one, the link asks for more chunks as they land, never more than the window at once.
TEST(Session, ABacklogLetsTheLinkAskAheadOfASlowDecoder) {
  for (bool thread : {false, true}) {
    for (std::uint32_t backlog : {0u, 2u}) {
      SCOPED_TRACE(
          fmt::format("{}, backlog {}", thread ? "progress thread" : "one thread", backlog));
      Served served;
      Session s(served.dir);
      StreamReceiver receiver(*s.control, *s.link);
      auto info = receiver.open("ctx", Clock::now() + 5s).value();
      auto kv = KvBuffer::create(served.layout).value();
      CountingSource source(2);
      StreamReceiver::FetchOptions o;
      o.window = 1;
      o.backlog = backlog;
      o.progress_thread = thread;
      std::uint32_t asked_while_first_decodes = 0;
      o.consume = [&](std::size_t want, std::span<const std::byte> chunk) {
        if (want == 0) {
          // Until the link has asked for every chunk the slots allow, or long enough to know
          // it will not.
          const auto until = Clock::now() + (backlog > 0 && thread ? 5s : 300ms);
          while (source.asked() < 1 + backlog && Clock::now() < until)
            std::this_thread::sleep_for(1ms);
          asked_while_first_decodes = source.asked();
        }
        return decode_chunk(chunk, kv.view());
      };
      std::uint32_t max_size = 0;
      for (std::uint32_t c = 0; c < 4; ++c)
        max_size = std::max(max_size, info.size(c, 2));
      ASSERT_TRUE(receiver.fetch_from(info, kv.view(), source, max_size, o, nullptr).is_ok());
      // Decoding on the thread that drives the link, nothing is asked while it decodes.
      EXPECT_EQ(asked_while_first_decodes, thread ? 1 + backlog : 1);
      EXPECT_EQ(source.most_in_flight(), 1u);
      EXPECT_TRUE(same_tokens(kv, served.expected(2), 0, 116));
      receiver.close(Clock::now() + 5s);
    }
  }
}

TEST(Session, StreamsOfOneSessionKeepTheirOwnChunks) {
  Served served;
  std::filesystem::copy_file(served.dir / "ctx.kva", served.dir / "twin.kva");
  Session s(served.dir);
  StreamReceiver receiver(*s.control, *s.link);
  auto first = receiver.open("ctx", Clock::now() + 5s).value();
  auto second = receiver.open("twin", Clock::now() + 5s).value();
  EXPECT_EQ(first.stream, 0u);
  EXPECT_EQ(second.stream, 1u);
  for (const StreamInfo* info : {&second, &first}) {
    auto kv = KvBuffer::create(served.layout).value();
    StreamReceiver::FetchOptions o;
    o.level = info->stream + 1;
    ASSERT_TRUE(receiver.fetch(*info, kv.view(), o, nullptr).is_ok());
    EXPECT_TRUE(same_tokens(kv, served.expected(o.level), 0, 116));
  }
  receiver.close(Clock::now() + 5s);
}

TEST(Session, ADeadSenderIsADisconnectAndTheStreamResumes) {
  Served served;
  auto kv = KvBuffer::create(served.layout).value();
  std::vector<std::uint32_t> landed;
  StreamReceiver::FetchOptions o;
  o.level = 2;
  o.window = 1;
  {
    Faults dies;
    dies.fail_after_sends = 2;  // chunks 0 and 1 arrive, then the sender is gone
    Session s(served.dir, dies);
    StreamReceiver receiver(*s.control, *s.link);
    auto info = receiver.open("ctx", Clock::now() + 5s).value();
    const auto start = Clock::now();
    const Status f =
        receiver.fetch(info, kv.view(), o, [&](std::uint32_t c) { landed.push_back(c); });
    EXPECT_EQ(f.code(), Errc::disconnected) << f.to_string();
    EXPECT_LT(Clock::now() - start, 5s);
    EXPECT_EQ(s.sender.result.get().code(), Errc::disconnected);
  }
  ASSERT_EQ(landed, (std::vector<std::uint32_t>{0, 1}));
  const KvBuffer want = served.expected(2);
  EXPECT_TRUE(same_tokens(kv, want, 0, 64));  // what landed stays valid
  Session again(served.dir);
  StreamReceiver receiver(*again.control, *again.link);
  auto info = receiver.open("ctx", Clock::now() + 5s).value();
  o.first_chunk = 2;
  o.progress_thread = true;
  ASSERT_TRUE(
      receiver.fetch(info, kv.view(), o, [&](std::uint32_t c) { landed.push_back(c); }).is_ok());
  EXPECT_EQ(landed, (std::vector<std::uint32_t>{0, 1, 2, 3}));
  EXPECT_TRUE(same_tokens(kv, want, 0, 116));
  receiver.close(Clock::now() + 5s);
}

// With and without the fetch's progress thread (decoding on the caller's thread).
TEST(Session, ACorruptedChunkIsCaughtAndNamed) {
  for (bool thread : {false, true}) {
    SCOPED_TRACE(thread ? "progress thread" : "one thread");
    Served served;
    Faults corrupt;
    corrupt.corrupt_send = 1;
    Session s(served.dir, corrupt);
    StreamReceiver receiver(*s.control, *s.link);
    auto info = receiver.open("ctx", Clock::now() + 5s).value();
    auto kv = KvBuffer::create(served.layout).value();
    StreamReceiver::FetchOptions o;
    o.level = 1;
    o.window = 1;
    o.progress_thread = thread;
    std::vector<std::uint32_t> landed;
    const Status f =
        receiver.fetch(info, kv.view(), o, [&](std::uint32_t c) { landed.push_back(c); });
    EXPECT_EQ(f.code(), Errc::corrupt_data) << f.to_string();
    EXPECT_EQ(f.message().rfind("chunk 1: ", 0), 0u) << f.message();
    EXPECT_EQ(landed, std::vector<std::uint32_t>{0});
    receiver.close(Clock::now() + 5s);
  }
}

TEST(Session, AStalledSenderTimesOutWithinTheChunkTimeout) {
  for (bool thread : {false, true}) {
    SCOPED_TRACE(thread ? "progress thread" : "one thread");
    Served served;
    Faults slow;
    slow.delay = 1500ms;
    Session s(served.dir, slow);
    StreamReceiver receiver(*s.control, *s.link);
    auto info = receiver.open("ctx", Clock::now() + 5s).value();
    auto kv = KvBuffer::create(served.layout).value();
    StreamReceiver::FetchOptions o;
    o.chunk_timeout = 300ms;
    o.progress_thread = thread;
    const auto start = Clock::now();
    const Status f = receiver.fetch(info, kv.view(), o, nullptr);
    EXPECT_EQ(f.code(), Errc::timeout) << f.to_string();
    EXPECT_LT(Clock::now() - start, 1400ms);
    receiver.close(Clock::now() + 5s);
  }
}

TEST(Session, BadRequestsEndTheSessionWithAnErrorNamingThem) {
  Served served;
  {
    Session s(served.dir);
    StreamReceiver receiver(*s.control, *s.link);
    const auto missing = receiver.open("nope", Clock::now() + 5s);
    EXPECT_EQ(missing.error().code(), Errc::not_found);
    EXPECT_NE(missing.error().message().find("no context 'nope'"), std::string::npos);
    EXPECT_EQ(s.sender.result.get().code(), Errc::not_found);
  }
  {
    Session s(served.dir);
    StreamReceiver receiver(*s.control, *s.link);
    EXPECT_EQ(receiver.open("../etc/passwd", Clock::now() + 5s).error().code(),
              Errc::invalid_argument);  // refused before it is sent
    receiver.close(Clock::now() + 5s);
  }
  {
    Session s(served.dir);
    StreamReceiver receiver(*s.control, *s.link);
    auto info = receiver.open("ctx", Clock::now() + 5s).value();
    std::vector<std::byte> request(20);
    const std::uint32_t chunk = 9;
    std::memcpy(request.data() + 4, &chunk, 4);  // stream 0, chunk 9, level 0
    ASSERT_TRUE(s.control->send(FrameType::chunk_request, request, Clock::now() + 5s).is_ok());
    const auto answer = s.control->receive(Clock::now() + 5s);
    ASSERT_TRUE(answer.has_value());
    EXPECT_EQ(answer->type, FrameType::error);
    EXPECT_NE(status_from_error_payload(answer->payload).message().find("chunk 9 at level 0"),
              std::string::npos);
    EXPECT_EQ(s.sender.result.get().code(), Errc::protocol_error);
  }
}

// A push context of the 100 tokens of `kv`, in chunks of 32.
PushSource::Context push_context(const KvBuffer& kv) {
  PushSource::Context c;
  c.kv = kv.view();
  c.tokens.assign(100, 3);
  c.chunk_tokens = 32;
  return c;
}

// Fetches c's stream at `level` and checks that the receiver holds what encoding each chunk here
// with c's options and decoding it gives, each chunk within the stream's size bound.
void expect_push_fetch(StreamReceiver& receiver, const StreamInfo& info,
                       const PushSource::Context& c, std::uint32_t level) {
  auto got = KvBuffer::create(c.kv.layout()).value();
  StreamReceiver::FetchOptions o;
  o.level = level;
  ASSERT_TRUE(receiver.fetch(info, got.view(), o, nullptr).is_ok()) << level;
  auto want = KvBuffer::create(c.kv.layout()).value();
  std::vector<std::byte> chunk;
  for (std::uint32_t begin = 0; begin < 100; begin += 32) {
    EncodeOptions e;
    e.level = static_cast<std::uint8_t>(level);
    e.lanes = c.lanes;
    e.lane_values = c.lane_values;
    EXPECT_TRUE(encode_chunk(c.kv, begin, std::min(32u, 100 - begin), e, chunk).is_ok());
    EXPECT_LE(chunk.size(), info.size(begin / 32, level));
    EXPECT_TRUE(decode_chunk(chunk, want.view()).is_ok());
  }
  EXPECT_TRUE(same_tokens(got, want, 0, 100)) << level;
}

TEST(Session, PushModeEncodesEachChunkAtTheLevelAsked) {
  const KvLayout l{2, 2, 16, DType::f16, 100};
  auto kv = KvBuffer::create(l).value();
  testing_data::fill_synthetic(kv.view(), 8, false);
  PushSource source;
  PushSource::Context c = push_context(kv);
  c.lanes = 32;
  c.lane_values = 128;
  ASSERT_TRUE(source.add("live", c).is_ok());
  c.tokens.pop_back();
  EXPECT_EQ(source.add("short", c).code(), Errc::invalid_argument);

  Session s(source);
  StreamReceiver receiver(*s.control, *s.link);
  auto info = receiver.open("live", Clock::now() + 5s);
  ASSERT_TRUE(info.has_value()) << info.error().to_string();
  EXPECT_FALSE(info->exact_sizes);
  EXPECT_EQ(info->chunk_count, 4u);
  EXPECT_EQ(info->levels, 6u);
  for (std::uint32_t level = 0; level < info->levels; ++level)
    expect_push_fetch(receiver, *info, c, level);
  receiver.close(Clock::now() + 5s);
  EXPECT_TRUE(s.sender.result.get().is_ok());
}

// A push context's own encoder: each stream gets one from the factory, and the chunks it writes
// are what the receiver decodes. Here the GPU encoder's logic run on the CPU (what GpuEncoder
// runs on a device), so push mode serves the GPU encoder's chunks; a factory that cannot make
// an encoder (no GPU) fails the open with its reason.
TEST(Session, PushModeEncodesWithTheContextsEncoder) {
  const KvLayout l{2, 2, 16, DType::f16, 100};
  auto kv = KvBuffer::create(l).value();
  testing_data::fill_synthetic(kv.view(), 5, false);
  PushSource source;
  PushSource::Context c = push_context(kv);
  std::atomic<int> made = 0, encoded = 0;
  c.encoder = [&]() -> Expected<ChunkEncodeFn> {
    ++made;
    return ChunkEncodeFn([&](const KvView& v, std::uint32_t begin, std::uint32_t count,
                             const EncodeOptions& o, std::vector<std::byte>& out) {
      ++encoded;
      return gpu::encode_on_host(v, begin, count, o, out);
    });
  };
  ASSERT_TRUE(source.add("gpu", c).is_ok());
  c.encoder = []() -> Expected<ChunkEncodeFn> {
    return Status(Errc::unsupported, "no usable CUDA device");
  };
  ASSERT_TRUE(source.add("no-gpu", c).is_ok());
  {
    Session s(source);
    StreamReceiver receiver(*s.control, *s.link);
    auto info = receiver.open("gpu", Clock::now() + 5s);
    ASSERT_TRUE(info.has_value()) << info.error().to_string();
    for (std::uint32_t level : {0u, 3u})
      expect_push_fetch(receiver, *info, c, level);
    receiver.close(Clock::now() + 5s);
    EXPECT_TRUE(s.sender.result.get().is_ok());
  }
  EXPECT_EQ(made.load(), 1);
  EXPECT_EQ(encoded.load(), 8);
  Session s(source);
  StreamReceiver receiver(*s.control, *s.link);
  const auto refused = receiver.open("no-gpu", Clock::now() + 5s);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().code(), Errc::unsupported);
  EXPECT_NE(refused.error().message().find("no usable CUDA device"), std::string::npos);
}

// A stream served from memory (EncodedSource) fetched in any order, a chunk twice, at mixed
// levels: each want lands once, and the cache holds what the last fetch of each chunk decodes to.
TEST(Session, ChunksComeInAnyOrderAtMixedLevelsFromMemory) {
  const KvLayout l{2, 2, 16, DType::f16, 128};
  auto kv = KvBuffer::create(l).value();
  testing_data::fill_synthetic(kv.view(), 9, false);
  EncodedSource source;
  PushSource::Context c;
  c.kv = kv.view();
  c.tokens.assign(128, 5);
  c.chunk_tokens = 32;
  c.max_level = 3;
  ASSERT_TRUE(source.add("mem", c).is_ok());
  c.chunk_tokens = 0;
  EXPECT_EQ(source.add("bad", c).code(), Errc::invalid_argument);

  Session s(source);
  StreamReceiver receiver(*s.control, *s.link);
  auto info = receiver.open("mem", Clock::now() + 5s);
  ASSERT_TRUE(info.has_value()) << info.error().to_string();
  EXPECT_TRUE(info->exact_sizes);
  const std::vector<StreamReceiver::Want> wants{{3, 1}, {0, 0}, {2, 3}, {0, 2}, {1, 0}, {3, 1}};
  auto got = KvBuffer::create(l).value();
  std::vector<std::size_t> landed;
  StreamReceiver::FetchOptions o;
  o.window = 3;
  ASSERT_TRUE(
      receiver
          .fetch_chunks(*info, got.view(), wants, o, [&](std::size_t i) { landed.push_back(i); })
          .is_ok());
  std::sort(landed.begin(), landed.end());
  EXPECT_EQ(landed, (std::vector<std::size_t>{0, 1, 2, 3, 4, 5}));
  auto want = KvBuffer::create(l).value();
  std::vector<std::byte> chunk;
  for (const auto& [index, level] : {std::pair{0u, 2u}, {1u, 0u}, {2u, 3u}, {3u, 1u}}) {
    EncodeOptions e;
    e.level = static_cast<std::uint8_t>(level);
    ASSERT_TRUE(encode_chunk(kv.view(), index * 32, 32, e, chunk).is_ok());
    EXPECT_EQ(chunk.size(), info->size(index, level));
    ASSERT_TRUE(decode_chunk(chunk, want.view()).is_ok());
  }
  EXPECT_TRUE(same_tokens(got, want, 0, 128));
  const std::vector<StreamReceiver::Want> beyond{{4, 0}};
  EXPECT_EQ(receiver.fetch_chunks(*info, got.view(), beyond, o, nullptr).code(),
            Errc::invalid_argument);
  receiver.close(Clock::now() + 5s);
  EXPECT_TRUE(s.sender.result.get().is_ok());
}

// A sender that answers every request with chunk 0 (sizes made to agree): a well-formed chunk
// of the wrong token range must not be decoded into the cache as the chunk asked for.
TEST(Session, AChunkOfAnotherTokenRangeIsAProtocolError) {
  class Lying final : public ChunkSource {
   public:
    explicit Lying(std::filesystem::path dir) : inner_(std::move(dir)) {}
    Expected<std::unique_ptr<SourceStream>> open(const std::string& id) override {
      KVS_ASSIGN_OR_RETURN(auto real, inner_.open(id));
      return std::unique_ptr<SourceStream>(std::make_unique<Stream>(std::move(real)));
    }

   private:
    struct Stream final : SourceStream {
      explicit Stream(std::unique_ptr<SourceStream> real) : real_(std::move(real)) {
        info_ = real_->info();
        for (std::uint32_t c = 0; c < info_.chunk_count; ++c)
          for (std::uint32_t l = 0; l < info_.levels; ++l)
            info_.sizes[c * info_.levels + l] = info_.size(0, l);
      }
      const StreamInfo& info() const override { return info_; }
      Expected<std::span<const std::byte>> read(std::uint32_t, std::uint32_t level,
                                                std::vector<std::byte>& scratch) override {
        return real_->read(0, level, scratch);
      }
      std::unique_ptr<SourceStream> real_;
      StreamInfo info_;
    };
    ArchiveSource inner_;
  };
  Served served;
  Lying source(served.dir);
  Session s(source, 2000ms);
  StreamReceiver receiver(*s.control, *s.link);
  auto info = receiver.open("ctx", Clock::now() + 5s).value();
  auto kv = KvBuffer::create(served.layout).value();
  std::vector<std::uint32_t> landed;
  StreamReceiver::FetchOptions o;
  o.window = 1;
  const Status f =
      receiver.fetch(info, kv.view(), o, [&](std::uint32_t c) { landed.push_back(c); });
  EXPECT_EQ(f.code(), Errc::protocol_error) << f.to_string();
  EXPECT_NE(f.message().find("asked for chunk 1 (tokens from 32)"), std::string::npos)
      << f.to_string();
  EXPECT_EQ(landed, (std::vector<std::uint32_t>{0}));
  receiver.close(Clock::now() + 5s);
  (void)s.sender.result.get();
}

TEST(Session, StreamInfoRoundTripsAndRefusesInconsistentCounts) {
  StreamInfo s;
  s.stream = 3;
  s.exact_sizes = false;
  s.layout = {2, 2, 16, DType::bf16, 70};
  s.chunk_tokens = 32;
  s.chunk_count = 3;
  s.levels = 2;
  s.sizes = {10, 20, 30, 40, 50, 60};
  s.tokens.assign(70, 5);
  auto bytes = encode_stream_info(s);
  auto back = decode_stream_info(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().to_string();
  EXPECT_EQ(back->sizes, s.sizes);
  EXPECT_EQ(back->stream, 3u);
  EXPECT_FALSE(back->exact_sizes);
  EXPECT_EQ(back->size(2, 1), 60u);
  bytes.pop_back();
  EXPECT_EQ(decode_stream_info(bytes).error().code(), Errc::protocol_error);
  s.sizes[4] = static_cast<std::uint32_t>(chunk_size_bound(s.layout, 32) + 1);  // more than any
  EXPECT_NE(decode_stream_info(encode_stream_info(s)).error().message().find("a chunk of"),
            std::string::npos);
  s.sizes[4] = 50;
  s.chunk_count = 2;  // 70 tokens need 3 chunks of 32
  EXPECT_EQ(decode_stream_info(encode_stream_info(s)).error().code(), Errc::protocol_error);
}

}  // namespace
}  // namespace kvstream::transport

namespace kvstream::transport {
namespace {

TEST(Pacing, RatesParseInTcsUnits) {
  EXPECT_DOUBLE_EQ(*parse_rate("2gbit"), 2e9);
  EXPECT_DOUBLE_EQ(*parse_rate("500Mbit"), 5e8);
  EXPECT_DOUBLE_EQ(*parse_rate("1.5kbit"), 1500);
  EXPECT_DOUBLE_EQ(*parse_rate("1e6bit"), 1e6);
  for (const char* bad : {"", "gbit", "2", "2 gbit", "-1mbit", "0bit", "2gbps"}) {
    EXPECT_EQ(parse_rate(bad).error().code(), Errc::invalid_argument) << bad;
  }
}

// The pacer's only promise is a lower bound on time: 3 messages of 12500 bytes at 1 Mbit/s
// cannot all start within 200 ms.
TEST(Pacing, MessagesStartNoSoonerThanTheRateAllows) {
  auto [a, b] = FakeDataLink::pair();
  PacedLink paced(std::move(a), 1e6);
  const std::vector<std::byte> message(12500);
  const auto start = Clock::now();
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(paced.send(1, message, Clock::now() + 5s).is_ok());
  // 3 x 100 ms of messages at 1 Mbit/s: the third starts no sooner than 200 ms in.
  EXPECT_GE(Clock::now() - start, 200ms);
}

}  // namespace
}  // namespace kvstream::transport
