// tag_bw between two workers on loopback: every message is taken and the figures add up.
#include <gtest/gtest.h>

#include <future>
#include <thread>

#include "perf.hpp"
#include "ucx_side.hpp"

namespace kvstream::transport {
namespace {

using namespace std::chrono_literals;

using testing::make_side;
using testing::Side;

// Connects two workers (each in its own thread) and runs the two sides of a bandwidth test.
template <typename Send, typename Receive>
std::pair<Expected<PerfResult>, Expected<PerfResult>> run(const PerfParams& p, Send send,
                                                          Receive receive) {
  std::promise<std::vector<std::byte>> a_address, b_address;
  std::promise<Expected<PerfResult>> received;
  std::thread receiver([&] {
    Side b = make_side();
    b_address.set_value(*b.worker->address());
    auto ep = UcxEndpoint::connect(b.worker, a_address.get_future().get());
    received.set_value(ep ? receive(**ep, p, Clock::now() + 30s)
                          : Expected<PerfResult>(ep.error()));
  });
  Side a = make_side();
  a_address.set_value(*a.worker->address());
  auto ep = UcxEndpoint::connect(a.worker, b_address.get_future().get());
  Expected<PerfResult> sent =
      ep ? send(**ep, p, Clock::now() + 30s) : Expected<PerfResult>(ep.error());
  auto r = received.get_future().get();
  receiver.join();
  return {std::move(sent), std::move(r)};
}

// Both sides' figures add up: every timed message counted, bytes over time is the bandwidth.
void expect_consistent(const PerfResult& r, std::uint64_t size, std::uint64_t iterations) {
  EXPECT_EQ(r.iterations, iterations);
  EXPECT_GT(r.seconds, 0);
  EXPECT_NEAR(r.bandwidth_mib_s * r.seconds * (1 << 20), double(size) * double(iterations),
              double(size));
  EXPECT_NEAR(r.message_rate * r.seconds, double(iterations), 1e-6);
}

TEST(Perf, TagAndActiveMessageBandwidthTakeEveryMessage) {
  // Small messages go eager, 1 MiB ones by rendezvous.
  for (std::uint64_t size : {std::uint64_t{64}, std::uint64_t{1} << 20}) {
    PerfParams p;
    p.size = size;
    p.iterations = 200;
    p.warmup = 20;
    p.window = 8;
    auto [sent, received] = run(p, run_tag_bw_sender, run_tag_bw_receiver);
    ASSERT_TRUE(received.has_value()) << received.error().to_string();
    ASSERT_TRUE(sent.has_value()) << sent.error().to_string();
    expect_consistent(*sent, size, 200);
    expect_consistent(*received, size, 200);
    p.test = "am_bw";
    auto [am_sent, am_received] = run(p, run_am_bw_sender, run_am_bw_receiver);
    ASSERT_TRUE(am_received.has_value()) << am_received.error().to_string();
    ASSERT_TRUE(am_sent.has_value()) << am_sent.error().to_string();
    expect_consistent(*am_sent, size, 200);
    expect_consistent(*am_received, size, 200);
  }
}

TEST(Perf, UnknownTestsAndZeroSizesAreRefused) {
  PerfParams p;
  p.test = "am_lat";
  EXPECT_NE(validate(p).message().find("test 'am_lat'"), std::string::npos);
  p.test = "kv_lat";
  EXPECT_TRUE(validate(p).is_ok());
  p.level = 16;
  EXPECT_EQ(validate(p).code(), Errc::invalid_argument);
  p = PerfParams{};
  p.size = 0;
  EXPECT_EQ(validate(p).code(), Errc::invalid_argument);
}

TEST(Perf, RequestsRoundTripAndMalformedOnesAreRefused) {
  PerfParams p;
  p.size = 1 << 20;
  p.iterations = 77;
  p.warmup = 5;
  p.window = 3;
  p.level = 4;
  auto bytes = encode_perf_request(p);
  const auto back = decode_perf_request(bytes);
  ASSERT_TRUE(back.has_value()) << back.error().to_string();
  EXPECT_EQ(back->test, "tag_bw");
  EXPECT_EQ(back->size, p.size);
  EXPECT_EQ(back->iterations, 77u);
  EXPECT_EQ(back->warmup, 5u);
  EXPECT_EQ(back->window, 3u);
  EXPECT_EQ(back->level, 4);
  bytes.pop_back();
  EXPECT_EQ(decode_perf_request(bytes).error().code(), Errc::protocol_error);
  bytes = encode_perf_request(p);
  bytes.push_back(std::byte{0});
  EXPECT_EQ(decode_perf_request(bytes).error().code(), Errc::protocol_error);
  p.window = 0;
  EXPECT_EQ(decode_perf_request(encode_perf_request(p)).error().code(), Errc::invalid_argument);
}

TEST(Perf, TableRowsHaveUcxPerftestsColumns) {
  PerfResult r;
  r.iterations = 2000;
  r.overhead_p50_us = 91.249;
  r.overhead_avg_us = 97.223;
  r.bandwidth_mib_s = 10285.68;
  r.message_rate = 10286;
  // A line ucx_perftest 1.13 printed for the same figures.
  EXPECT_EQ(perf_table_final(r),
            "Final:                  2000     91.249    97.223    97.223    10285.68   10285.68"
            "       10286       10286\n");
  EXPECT_EQ(perf_csv(r), "2000,91.249,97.223,97.223,10285.68,10285.68,10286,10286\n");
}

}  // namespace
}  // namespace kvstream::transport
