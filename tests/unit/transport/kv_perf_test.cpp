// kv_stream_bw and kv_lat between two workers on loopback, over real control channels: every
// chunk is fetched and counted (by a sink that reports chunks late, too), the baseline is tag_bw
// at the stream's mean chunk size, and the timeline says whether decoding overlapped.
#include <gtest/gtest.h>

#include <cmath>
#include <future>
#include <limits>
#include <thread>

#include "endpoints.hpp"
#include "kv_perf.hpp"
#include "kv_test_data.hpp"
#include "loopback.hpp"
#include "session.hpp"
#include "ucx_side.hpp"

namespace kvstream::transport {
namespace {

using namespace std::chrono_literals;

using testing::make_side;
using testing::Side;

TEST(KvPerf, ChunksAreStreamedCountedAndMeasuredAgainstTagBandwidth) {
  const KvLayout l{2, 2, 16, DType::f16, 256};
  auto kv = KvBuffer::create(l).value();
  testing_data::fill_synthetic(kv.view(), 4, false);
  const auto tokens = chunk_tokens_for(kv.view(), 2000, 1);
  ASSERT_TRUE(tokens.has_value()) << tokens.error().to_string();
  EXPECT_GE(*tokens, 1u);
  EXPECT_LE(*tokens, 128u);
  EncodedSource source;
  PushSource::Context c;
  c.kv = kv.view();
  c.tokens.assign(256, 1);
  c.chunk_tokens = *tokens;
  c.max_level = 1;
  ASSERT_TRUE(source.add(kPerfContext, c).is_ok());
  const StreamInfo info = source.open(kPerfContext).value()->info();
  const std::uint32_t cycled = std::min(256 / *tokens, 3u);  // the test asks for 3
  double mean = 0;
  for (std::uint32_t i = 0; i < cycled; ++i)
    mean += info.size(i, 1);
  mean /= cycled;
  // The size asked for is about what a chunk takes.
  EXPECT_NEAR(mean, 2000, 2000 * 0.5);

  // A sink that decodes nothing and reports each chunk late: want i once want i + 2 has landed,
  // the last two at finish(), each as costing 0.5 ms.
  class LateSink final : public KvPerfSink {
   public:
    Status open(const KvLayout&) override { return Status::ok(); }
    Status take(std::size_t want, std::span<const std::byte>, const Ready& ready) override {
      pending_.push_back(want);
      if (pending_.size() > 2) {
        ready(pending_.front(), 0.5);
        pending_.erase(pending_.begin());
      }
      return Status::ok();
    }
    Status finish(const Ready& ready) override {
      for (std::size_t w : pending_)
        ready(w, 0.5);
      pending_.clear();
      return Status::ok();
    }

   private:
    std::vector<std::size_t> pending_;
  };

  for (std::string test : {"kv_stream_bw", "kv_lat", "kv_stream_bw, late sink"}) {
    SCOPED_TRACE(test);
    const bool late = test == "kv_stream_bw, late sink";
    if (late) test = "kv_stream_bw";
    PerfParams p;
    p.test = test;
    p.size = 2000;
    p.iterations = 50;
    p.warmup = 5;
    p.window = 4;
    p.level = 1;
    p.chunks = 3;
    auto [a, b] = testing::control_pair();
    std::promise<std::vector<std::byte>> server_address, client_address;
    std::promise<Status> served;
    std::thread server([&, &control = a] {
      Side s = make_side();
      server_address.set_value(*s.worker->address());
      auto ep = UcxEndpoint::connect(s.worker, client_address.get_future().get());
      if (!ep) return served.set_value(ep.error());
      UcxDataLink link(std::move(*ep), sender_liveness(*control));
      served.set_value(serve_kv_perf(*control, link, source, p, Clock::now() + 30s));
    });
    Side side = make_side();
    client_address.set_value(*side.worker->address());
    auto ep = UcxEndpoint::connect(side.worker, server_address.get_future().get());
    ASSERT_TRUE(ep.has_value());
    Expected<KvPerfResult> r = Status(Errc::internal, "not run");
    LateSink sink;
    {
      UcxDataLink link(std::move(*ep), receiver_liveness(*b));
      KvPerfOptions options;
      options.decode = test == "kv_stream_bw";
      options.progress_thread = !options.decode;
      if (late) options.sink = &sink;
      r = run_kv_perf(*b, link, p, options, Clock::now() + 30s);
    }
    const Status s = served.get_future().get();
    server.join();
    ASSERT_TRUE(r.has_value()) << r.error().to_string();
    EXPECT_TRUE(s.is_ok()) << s.to_string();
    EXPECT_EQ(r->kv.iterations, 50u);
    EXPECT_EQ(r->baseline.iterations, 50u);
    EXPECT_NEAR(r->baseline.mean_size, mean, 0.5);
    // 50 chunks cycling over the first three, after 5 of warm-up.
    double bytes = 0;
    for (std::uint32_t i = 5; i < 55; ++i)
      bytes += info.size(i % cycled, 1);
    EXPECT_NEAR(r->kv.mean_size * 50, bytes, 1e-6);
    EXPECT_GT(r->efficiency(), 0);
    // Every chunk has its readiness; a sink's chunks their landing and decode too.
    ASSERT_EQ(r->timeline.size(), 55u);
    for (const ChunkTimes& t : r->timeline) {
      EXPECT_GE(t.ready_ms, 0);
      EXPECT_EQ(std::isnan(t.landed_ms), !late);
      if (late) {
        EXPECT_LE(t.landed_ms, t.ready_ms);
        EXPECT_EQ(t.decode_ms, 0.5);
      }
    }
    const TimelineSummary sum = summarize_timeline(r->timeline);
    EXPECT_EQ(std::isnan(sum.tail_ms), !late);
  }
}

TEST(KvPerf, ATimelineSaysWhetherDecodingOverlappedTheTransfer) {
  // Landed at 1, 2, 3 ms; ready at 1.5, 2.6, 3.4; decodes of 0.5, 0.6, 0.4 ms: the load ends
  // 0.4 ms after the last landing, within the largest decode (0.6).
  const std::vector<ChunkTimes> kept{{1, 1.5, 0.5}, {2, 2.6, 0.6}, {3, 3.4, 0.4}};
  const TimelineSummary a = summarize_timeline(kept);
  EXPECT_DOUBLE_EQ(a.transfer_ms, 3);
  EXPECT_DOUBLE_EQ(a.load_ms, 3.4);
  EXPECT_NEAR(a.tail_ms, 0.4, 1e-12);
  EXPECT_DOUBLE_EQ(a.median_decode_ms, 0.5);
  EXPECT_DOUBLE_EQ(a.max_decode_ms, 0.6);
  EXPECT_TRUE(a.overlaps());
  // The decoder fell behind: the last chunk is ready 1.4 ms after it landed, its decode 0.5.
  const std::vector<ChunkTimes> behind{{1, 1.5, 0.5}, {2, 2.9, 0.5}, {3, 4.4, 0.5}};
  EXPECT_FALSE(summarize_timeline(behind).overlaps());
  // Host decode: no landings, no decodes.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const TimelineSummary host = summarize_timeline(std::vector<ChunkTimes>{{nan, 2, nan}});
  EXPECT_DOUBLE_EQ(host.load_ms, 2);
  EXPECT_TRUE(std::isnan(host.tail_ms));
  EXPECT_FALSE(host.overlaps());
}

TEST(KvPerf, ALevelTheStreamLacksIsRefusedByTheServer) {
  const KvLayout l{2, 2, 16, DType::f16, 64};
  auto kv = KvBuffer::create(l).value();
  testing_data::fill_synthetic(kv.view(), 4, false);
  EncodedSource source;
  PushSource::Context c;
  c.kv = kv.view();
  c.tokens.assign(64, 1);
  c.chunk_tokens = 16;
  c.max_level = 0;
  ASSERT_TRUE(source.add(kPerfContext, c).is_ok());
  auto [a, b] = testing::control_pair();
  PerfParams p;
  p.test = "kv_stream_bw";
  p.level = 2;
  Side s = make_side();
  auto ep = UcxEndpoint::connect(s.worker, *s.worker->address());
  ASSERT_TRUE(ep.has_value());
  UcxDataLink link(std::move(*ep));
  EXPECT_EQ(serve_kv_perf(*a, link, source, p, Clock::now() + 5s).code(), Errc::invalid_argument);
  const auto f = b->receive(Clock::now() + 5s);
  ASSERT_TRUE(f.has_value());
  EXPECT_EQ(f->type, FrameType::error);
  EXPECT_NE(status_from_error_payload(f->payload).message().find("level 2"), std::string::npos);
}

}  // namespace
}  // namespace kvstream::transport
