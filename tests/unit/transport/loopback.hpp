// Two connected control channels over loopback TCP, for tests of what runs on top of them.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <memory>
#include <thread>
#include <utility>

#include "control.hpp"

namespace kvstream::transport::testing {

inline std::pair<std::unique_ptr<ControlChannel>, std::unique_ptr<ControlChannel>> control_pair() {
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  std::unique_ptr<ControlChannel> accepted;
  std::thread t([&] {
    auto channel_io = std::make_unique<asio::io_context>();
    auto s = acceptor.accept(*channel_io);
    accepted = std::make_unique<ControlChannel>(std::move(channel_io), std::move(s));
  });
  auto connected = ControlChannel::connect("127.0.0.1", acceptor.local_endpoint().port(),
                                           Clock::now() + std::chrono::seconds(5));
  t.join();
  return {std::move(accepted), std::move(*connected)};
}

}  // namespace kvstream::transport::testing
