// kv_stream_bw and kv_lat between two workers on loopback, over real control channels: every
// chunk is fetched and counted, and the baseline is tag_bw at the stream's mean chunk size.
#include <gtest/gtest.h>

#include <future>
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

  for (const char* test : {"kv_stream_bw", "kv_lat"}) {
    SCOPED_TRACE(test);
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
    {
      UcxDataLink link(std::move(*ep), receiver_liveness(*b));
      KvPerfOptions options;
      options.decode = std::string(test) == "kv_stream_bw";
      options.progress_thread = !options.decode;
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
  }
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
