// The UCX owners on loopback: two workers in two threads (each worker is single-threaded)
// exchange tagged messages and RMA writes; waits keep their deadlines.
#include <gtest/gtest.h>

#include <cstring>
#include <future>
#include <numeric>
#include <thread>

#include "data_link.hpp"
#include "ucx.hpp"
#include "ucx_side.hpp"

namespace kvstream::transport {
namespace {

using namespace std::chrono_literals;

using testing::make_side;
using testing::Side;

ucp_request_param_t no_callback() {
  ucp_request_param_t p{};
  return p;
}

Status receive(UcxWorker& w, std::vector<std::byte>& buf, ucp_tag_t tag,
               Clock::time_point deadline) {
  ucp_request_param_t p = no_callback();
  return w.wait(ucp_tag_recv_nbx(w.get(), buf.data(), buf.size(), tag, ~ucp_tag_t{0}, &p), deadline,
                "ucp_tag_recv_nbx");
}

Status send(UcxEndpoint& ep, const std::vector<std::byte>& buf, ucp_tag_t tag,
            Clock::time_point deadline) {
  ucp_request_param_t p = no_callback();
  return ep.worker().wait(ucp_tag_send_nbx(ep.get(), buf.data(), buf.size(), tag, &p), deadline,
                          "ucp_tag_send_nbx");
}

std::vector<std::byte> pattern(std::size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (std::size_t i = 0; i < n; ++i)
    v[i] = static_cast<std::byte>((i * 131 + seed) >> 3);
  return v;
}

TEST(Ucx, TaggedMessagesCrossBetweenWorkers) {
  for (std::size_t size : {std::size_t{100}, std::size_t{(1u << 20) + 8}}) {
    std::promise<std::vector<std::byte>> address;
    std::promise<Status> received;
    const auto want = pattern(size, static_cast<unsigned>(size));
    std::vector<std::byte> got(size);
    std::thread receiver([&] {
      Side b = make_side();
      address.set_value(*b.worker->address());
      received.set_value(receive(*b.worker, got, 42, Clock::now() + 10s));
    });
    Side a = make_side();
    auto ep = UcxEndpoint::connect(a.worker, address.get_future().get());
    ASSERT_TRUE(ep.has_value()) << ep.error().to_string();
    EXPECT_TRUE(send(**ep, want, 42, Clock::now() + 10s).is_ok());
    const Status r = received.get_future().get();
    receiver.join();
    ASSERT_TRUE(r.is_ok()) << r.to_string();
    EXPECT_EQ(got, want) << size;
    ep->reset();  // endpoint before its worker
  }
}

TEST(Ucx, AReceiveThatNothingMatchesTimesOutAndIsCancelled) {
  Side b = make_side();
  std::vector<std::byte> buf(64);
  const auto start = Clock::now();
  const Status s = receive(*b.worker, buf, 7, Clock::now() + 200ms);
  EXPECT_EQ(s.code(), Errc::timeout) << s.to_string();
  EXPECT_LT(Clock::now() - start, 5s);
}

TEST(Ucx, RemoteWritesLandInARegisteredRegion) {
  std::promise<std::vector<std::byte>> address, key;
  std::promise<std::uint64_t> base;
  std::promise<void> written;
  std::vector<std::byte> region(1 << 16);
  std::promise<std::vector<std::byte>> seen;
  std::thread target([&] {
    Side b = make_side();
    auto mr = MemoryRegion::map(b.context, region.data(), region.size());
    ASSERT_TRUE(mr.has_value()) << mr.error().to_string();
    address.set_value(*b.worker->address());
    key.set_value(*(*mr)->packed_key());
    base.set_value(reinterpret_cast<std::uint64_t>(region.data()));
    // A put completes at the target without its CPU, but shared-memory and TCP transports need
    // the target's worker to make progress.
    auto done = written.get_future();
    while (done.wait_for(0s) != std::future_status::ready)
      b.worker->progress();
    seen.set_value(region);
  });
  Side a = make_side();
  auto ep = UcxEndpoint::connect(a.worker, address.get_future().get());
  ASSERT_TRUE(ep.has_value());
  auto rkey = RemoteKey::unpack(**ep, key.get_future().get());
  ASSERT_TRUE(rkey.has_value()) << rkey.error().to_string();
  const auto data = pattern(4096, 9);
  ucp_request_param_t p{};
  const std::uint64_t at = base.get_future().get() + 1000;
  Status s =
      a.worker->wait(ucp_put_nbx((*ep)->get(), data.data(), data.size(), at, (*rkey)->get(), &p),
                     Clock::now() + 10s, "ucp_put_nbx");
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  // Flush so that the data is at the target before it is told.
  s = a.worker->wait(ucp_ep_flush_nbx((*ep)->get(), &p), Clock::now() + 10s, "ucp_ep_flush_nbx");
  ASSERT_TRUE(s.is_ok()) << s.to_string();
  written.set_value();
  const auto after = seen.get_future().get();
  target.join();
  EXPECT_EQ(std::memcmp(after.data() + 1000, data.data(), data.size()), 0);
  rkey->reset();
  ep->reset();
}

// An endpoint in ErrorMode::none hears nothing from UCX when its peer dies: the data link's
// liveness probe must end its waits. Here the peer never takes what is sent to it (a rendezvous
// send stays pending) and the probe says it is gone after 100 ms.
TEST(Ucx, AProbeThatLosesThePeerEndsSendsAndWaitsInErrorModeNone) {
  Side b = make_side();
  Side a = make_side();
  auto ep = UcxEndpoint::connect(a.worker, *b.worker->address(), ErrorMode::none);
  ASSERT_TRUE(ep.has_value()) << ep.error().to_string();
  const auto gone_at = Clock::now() + 100ms;
  int probes = 0;
  UcxDataLink link(std::move(*ep), [&]() -> Status {
    ++probes;
    if (Clock::now() < gone_at) return Status::ok();
    return Status(Errc::disconnected, "the probe lost its peer");
  });
  const auto big = pattern(8u << 20, 3);
  const auto start = Clock::now();
  Status s = link.send(5, big, Clock::now() + 30s);
  EXPECT_EQ(s.code(), Errc::disconnected) << s.to_string();
  EXPECT_NE(s.message().find("the probe lost its peer"), std::string::npos);
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_GT(probes, 1);
  // The link stays failed and says why at once.
  std::vector<std::byte> slot(64);
  EXPECT_EQ(link.post_receive(6, slot).code(), Errc::disconnected);
  const auto waited = link.wait_any(Clock::now() + 30s);
  ASSERT_FALSE(waited.has_value());
  EXPECT_EQ(waited.error().code(), Errc::disconnected);
  EXPECT_EQ(link.send(7, slot, Clock::now() + 30s).code(), Errc::disconnected);
}

TEST(Ucx, ASendPastItsDeadlineAbortsTheEndpoint) {
  Side b = make_side();
  Side a = make_side();
  auto ep = UcxEndpoint::connect(a.worker, *b.worker->address(), ErrorMode::none);
  ASSERT_TRUE(ep.has_value()) << ep.error().to_string();
  UcxDataLink link(std::move(*ep));
  const auto big = pattern(8u << 20, 4);
  const Status s = link.send(5, big, Clock::now() + 200ms);
  EXPECT_EQ(s.code(), Errc::timeout) << s.to_string();
  EXPECT_EQ(link.send(5, big, Clock::now() + 10s).code(), Errc::timeout);  // stays aborted
}

}  // namespace
}  // namespace kvstream::transport
