// Control channels on loopback TCP: the handshake both ways, a wrong secret refused and
// logged, deadlines, and frames that break the rules.
#include <gtest/gtest.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <future>
#include <thread>

#include "control.hpp"
#include "endpoints.hpp"
#include "loopback.hpp"

namespace kvstream::transport {
namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;

Secret secret_of(const char* text) {
  return *Secret::from_bytes(std::as_bytes(std::span(text, std::strlen(text))));
}

// Accepts one connection on 127.0.0.1 and runs `serve` on its channel in a thread.
class OneShotServer {
 public:
  explicit OneShotServer(std::function<void(ControlChannel&)> serve)
      : acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
    port_ = acceptor_.local_endpoint().port();
    thread_ = std::thread([this, serve = std::move(serve)] {
      auto io = std::make_unique<asio::io_context>();
      tcp::socket s = acceptor_.accept(*io);
      ControlChannel channel(std::move(io), std::move(s), 4096);
      serve(channel);
    });
  }
  ~OneShotServer() { thread_.join(); }
  std::uint16_t port() const { return port_; }

 private:
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

Expected<std::unique_ptr<ControlChannel>> connect(std::uint16_t port) {
  return ControlChannel::connect("127.0.0.1", port, Clock::now() + 5s, 4096);
}

TEST(Control, RightSecretAuthenticatesBothWaysThenFramesFlow) {
  const Secret secret = secret_of("a shared secret, 32 bytes long!!");
  std::promise<Status> served;
  OneShotServer server([&](ControlChannel& c) {
    Status s = authenticate_client(c, secret, Clock::now() + 5s, nullptr);
    if (s.is_ok()) {
      auto f = c.receive(Clock::now() + 5s);  // echo one frame
      s = f ? c.send(f->type, f->payload, Clock::now() + 5s) : f.error();
    }
    served.set_value(s);
  });
  auto client = connect(server.port());
  ASSERT_TRUE(client.has_value()) << client.error().to_string();
  ASSERT_TRUE(authenticate_to_server(**client, secret, Clock::now() + 5s).is_ok());
  const std::vector<std::byte> address(300, std::byte{7});
  ASSERT_TRUE((*client)->send(FrameType::worker_address, address, Clock::now() + 5s).is_ok());
  const auto echo = (*client)->receive(Clock::now() + 5s);
  ASSERT_TRUE(echo.has_value()) << echo.error().to_string();
  EXPECT_EQ(echo->type, FrameType::worker_address);
  EXPECT_EQ(echo->payload, address);
  EXPECT_TRUE(served.get_future().get().is_ok());
}

TEST(Control, WrongSecretIsRefusedLoggedAndLearnsNothing) {
  std::promise<Status> served;
  std::string log;
  OneShotServer server([&](ControlChannel& c) {
    served.set_value(authenticate_client(c, secret_of("the server's secret, 32 bytes..."),
                                         Clock::now() + 5s,
                                         [&](const std::string& line) { log += line; }));
  });
  auto client = connect(server.port());
  ASSERT_TRUE(client.has_value());
  const Status s = authenticate_to_server(**client, secret_of("not the server's secret, at all"),
                                          Clock::now() + 5s);
  EXPECT_EQ(s.code(), Errc::auth_failed) << s.to_string();
  EXPECT_EQ(s.message(), "peer: authentication failed");
  EXPECT_EQ(served.get_future().get().code(), Errc::auth_failed);
  EXPECT_NE(log.find("refused 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("wrong secret"), std::string::npos) << log;
  // The connection is closed: nothing more comes.
  EXPECT_FALSE((*client)->receive(Clock::now() + 1s).has_value());
}

TEST(Control, ASilentClientTimesOutWithinItsDeadline) {
  std::promise<Status> served;
  std::string log;
  OneShotServer server([&](ControlChannel& c) {
    served.set_value(authenticate_client(c, secret_of("0123456789abcdef"), Clock::now() + 300ms,
                                         [&](const std::string& line) { log += line; }));
  });
  auto client = connect(server.port());
  ASSERT_TRUE(client.has_value());
  const auto start = Clock::now();
  const Status s = served.get_future().get();
  EXPECT_EQ(s.code(), Errc::timeout) << s.to_string();
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_NE(log.find("deadline passed"), std::string::npos) << log;
}

TEST(Control, BeforeAuthenticationFramesAreSmall) {
  std::promise<Status> served;
  OneShotServer server([&](ControlChannel& c) {
    served.set_value(
        authenticate_client(c, secret_of("0123456789abcdef"), Clock::now() + 5s, nullptr));
  });
  auto client = connect(server.port());
  ASSERT_TRUE(client.has_value());
  ASSERT_TRUE((*client)->receive(Clock::now() + 5s).has_value());  // hello
  const std::vector<std::byte> big(2000);
  ASSERT_TRUE((*client)->send(FrameType::auth, big, Clock::now() + 5s).is_ok());
  const Status s = served.get_future().get();
  EXPECT_EQ(s.code(), Errc::protocol_error);
  EXPECT_NE(s.message().find("over the 1024-byte limit"), std::string::npos) << s.message();
}

// Sends raw bytes after connecting, as a misbehaving peer would.
void send_raw(std::uint16_t port, std::vector<std::byte> bytes, bool then_close) {
  asio::io_context io;
  tcp::socket s(io);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  asio::write(s, asio::buffer(bytes));
  if (!then_close) std::this_thread::sleep_for(300ms);
}

Status receive_one(const std::vector<std::byte>& raw, bool then_close) {
  std::promise<Status> got;
  {
    OneShotServer server([&](ControlChannel& c) {
      auto f = c.receive(Clock::now() + 5s);
      got.set_value(f ? Status::ok() : f.error());
    });
    send_raw(server.port(), raw, then_close);
  }
  return got.get_future().get();
}

std::vector<std::byte> header_bytes(FrameType t, std::uint32_t length) {
  const auto h = frame_header(t, length);
  return {h.begin(), h.end()};
}

TEST(Control, FramesThatBreakTheRulesAreProtocolErrors) {
  auto unknown = header_bytes(FrameType::feedback, 0);
  unknown[5] = std::byte{200};
  Status s = receive_one(unknown, false);
  EXPECT_EQ(s.code(), Errc::protocol_error);
  EXPECT_NE(s.message().find("unknown type 200"), std::string::npos) << s.message();

  s = receive_one(header_bytes(FrameType::stream_info, 5000), false);  // limit 4096
  EXPECT_EQ(s.code(), Errc::protocol_error);
  EXPECT_NE(s.message().find("over the 4096-byte limit"), std::string::npos) << s.message();

  auto truncated = header_bytes(FrameType::stream_info, 100);
  truncated.resize(truncated.size() + 10);
  s = receive_one(truncated, true);
  EXPECT_EQ(s.code(), Errc::protocol_error);
  EXPECT_NE(s.message().find("truncated frame"), std::string::npos) << s.message();

  s = receive_one({std::byte{1}, std::byte{0}, std::byte{0}}, true);  // inside a header
  EXPECT_EQ(s.code(), Errc::protocol_error) << s.to_string();

  s = receive_one({}, true);  // a clean close between frames
  EXPECT_EQ(s.code(), Errc::disconnected) << s.to_string();
}

TEST(Control, LoopbackPeersAreOnTheSameHostAndAClosedPeerIsSeenWithoutBlocking) {
  auto [a, b] = testing::control_pair();
  EXPECT_TRUE(a->same_host());
  EXPECT_TRUE(b->same_host());
  EXPECT_TRUE(a->check_open().is_ok());
  EXPECT_FALSE(a->readable());
  // A frame waiting to be read is a live peer.
  ASSERT_TRUE(b->send(FrameType::close, {}, Clock::now() + 1s).is_ok());
  for (int i = 0; i < 200 && !a->readable(); ++i)
    std::this_thread::sleep_for(5ms);
  EXPECT_TRUE(a->readable());
  EXPECT_TRUE(a->check_open().is_ok());
  ASSERT_TRUE(a->receive(Clock::now() + 1s).has_value());
  b->close();
  Status s = Status::ok();
  for (int i = 0; i < 200 && s.is_ok(); ++i) {
    s = a->check_open();
    if (s.is_ok()) std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(s.code(), Errc::disconnected) << s.to_string();
}

TEST(Control, SameHostPeersGetErrorModeNoneUnlessTheEnvironmentSaysOtherwise) {
  auto [a, b] = testing::control_pair();
  ::unsetenv("KVSTREAM_UCX_ERR_MODE");
  EXPECT_EQ(endpoint_error_mode(*a).value(), ErrorMode::none);
  ::setenv("KVSTREAM_UCX_ERR_MODE", "peer", 1);
  EXPECT_EQ(endpoint_error_mode(*a).value(), ErrorMode::peer);
  ::setenv("KVSTREAM_UCX_ERR_MODE", "sometimes", 1);
  const auto bad = endpoint_error_mode(*a);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("'sometimes'"), std::string::npos);
  ::unsetenv("KVSTREAM_UCX_ERR_MODE");
}

}  // namespace
}  // namespace kvstream::transport
