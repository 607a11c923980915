// Control channels over Boost.Asio with per-operation deadlines, and the handshake.
#include "control.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <cstring>

namespace kvstream::transport {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

std::string endpoint_name(const tcp::socket& s) {
  boost::system::error_code ec;
  const auto ep = s.remote_endpoint(ec);
  return ec ? std::string("unknown peer")
            : fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

Status io_status(const boost::system::error_code& ec, const char* what) {
  if (ec == asio::error::eof || ec == asio::error::connection_reset ||
      ec == asio::error::broken_pipe || ec == asio::error::connection_aborted) {
    return Status(Errc::disconnected, fmt::format("{}: peer closed the connection", what));
  }
  return Status(Errc::io_error, fmt::format("{}: {}", what, ec.message()));
}

}  // namespace

ControlChannel::ControlChannel(std::unique_ptr<asio::io_context> io, tcp::socket socket,
                               std::uint32_t max_payload)
    : io_(std::move(io)),
      socket_(std::move(socket)),
      max_payload_(max_payload),
      peer_(endpoint_name(socket_)) {
  boost::system::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);  // small frames, request/response
  const auto local = socket_.local_endpoint(ec);
  const auto remote = socket_.remote_endpoint(ec);
  same_host_ = !ec && (remote.address().is_loopback() || remote.address() == local.address());
}

bool ControlChannel::readable() {
  if (!socket_.is_open()) return true;
  pollfd p{socket_.native_handle(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

Status ControlChannel::check_open() {
  if (!socket_.is_open())
    return Status(Errc::disconnected, fmt::format("{}: connection closed", peer_));
  if (!readable()) return Status::ok();
  char byte = 0;
  const ssize_t n = ::recv(socket_.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))) {
    return Status::ok();
  }
  return Status(Errc::disconnected, fmt::format("{}: peer closed the connection", peer_));
}

ControlChannel::~ControlChannel() {
  close();
}

Expected<std::unique_ptr<ControlChannel>> ControlChannel::connect(const std::string& host,
                                                                  std::uint16_t port,
                                                                  Clock::time_point deadline,
                                                                  std::uint32_t max_payload) {
  auto io = std::make_unique<asio::io_context>();
  boost::system::error_code ec;
  tcp::resolver resolver(*io);
  const auto endpoints = resolver.resolve(host, std::to_string(port), ec);
  if (ec) return Status(Errc::not_found, fmt::format("resolve {}: {}", host, ec.message()));
  tcp::socket socket(*io);
  bool done = false;
  asio::async_connect(socket, endpoints, [&](const boost::system::error_code& e, const auto&) {
    ec = e;
    done = true;
  });
  io->restart();
  io->run_until(deadline);
  if (!done) {
    socket.close(ec);
    io->restart();
    io->run();
    return Status(Errc::timeout, fmt::format("connect to {}:{}: deadline passed", host, port));
  }
  if (ec) {
    return Status(ec == asio::error::connection_refused ? Errc::disconnected : Errc::io_error,
                  fmt::format("connect to {}:{}: {}", host, port, ec.message()));
  }
  return std::make_unique<ControlChannel>(std::move(io), std::move(socket), max_payload);
}

Status ControlChannel::run_until(const bool& done, Clock::time_point deadline, const char* what) {
  io_->restart();
  io_->run_until(deadline);
  if (done) return Status::ok();
  // Closing aborts the operation; its handler still runs, so finish it before returning.
  close();
  io_->restart();
  io_->run();
  return Status(Errc::timeout, fmt::format("{} {}: deadline passed", what, peer_));
}

// Both directions first try the system call that the reactor would end up making, without
// blocking: control frames are small and usually fit the socket buffer (or are already there),
// and on a virtual machine the reactor's extra system calls cost more than the transfer. What is
// left goes through Asio with the deadline.

Status ControlChannel::send(FrameType type, std::span<const std::byte> payload,
                            Clock::time_point deadline) {
  if (!socket_.is_open()) return Status(Errc::disconnected, "send on a closed channel");
  if (payload.size() > max_payload_) {
    return Status(Errc::invalid_argument,
                  fmt::format("{} frame of {} bytes, over the {}-byte limit", frame_type_name(type),
                              payload.size(), max_payload_));
  }
  auto header = frame_header(type, static_cast<std::uint32_t>(payload.size()));
  const std::size_t total = header.size() + payload.size();
  iovec iov[2] = {{header.data(), header.size()},
                  {const_cast<std::byte*>(payload.data()), payload.size()}};
  msghdr m{};
  m.msg_iov = iov;
  m.msg_iovlen = payload.empty() ? 1 : 2;
  const ssize_t n = ::sendmsg(socket_.native_handle(), &m, MSG_DONTWAIT | MSG_NOSIGNAL);
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    const boost::system::error_code ec(errno, asio::error::get_system_category());
    close();
    return io_status(ec, "send");
  }
  const std::size_t sent = n > 0 ? static_cast<std::size_t>(n) : 0;
  if (sent == total) return Status::ok();
  // The rest, which the socket buffer did not take at once.
  std::vector<std::byte> rest(total);
  std::memcpy(rest.data(), header.data(), header.size());
  if (!payload.empty()) std::memcpy(rest.data() + header.size(), payload.data(), payload.size());
  bool done = false;
  boost::system::error_code ec;
  asio::async_write(socket_, asio::buffer(rest.data() + sent, total - sent),
                    [&](const boost::system::error_code& e, std::size_t) {
                      ec = e;
                      done = true;
                    });
  KVS_RETURN_IF_ERROR(run_until(done, deadline, "send to"));
  if (ec) {
    close();
    return io_status(ec, "send");
  }
  return Status::ok();
}

Status ControlChannel::read_exact(std::span<std::byte> into, std::size_t& got,
                                  Clock::time_point deadline) {
  got = 0;
  const ssize_t n = ::recv(socket_.native_handle(), into.data(), into.size(), MSG_DONTWAIT);
  if (n == 0 && !into.empty()) return io_status(asio::error::eof, "receive");
  if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
    return io_status(boost::system::error_code(errno, asio::error::get_system_category()),
                     "receive");
  }
  got = n > 0 ? static_cast<std::size_t>(n) : 0;
  if (got == into.size()) return Status::ok();
  bool done = false;
  boost::system::error_code ec;
  std::size_t more = 0;
  asio::async_read(socket_, asio::buffer(into.data() + got, into.size() - got),
                   [&](const boost::system::error_code& e, std::size_t k) {
                     ec = e;
                     more = k;
                     done = true;
                   });
  KVS_RETURN_IF_ERROR(run_until(done, deadline, "receive from"));
  got += more;
  return ec ? io_status(ec, "receive") : Status::ok();
}

Expected<Frame> ControlChannel::receive(Clock::time_point deadline) {
  if (!socket_.is_open()) return Status(Errc::disconnected, "receive on a closed channel");
  std::array<std::byte, kFrameHeaderSize> header{};
  std::size_t got = 0;
  // A peer that closes inside a frame has cut it short; between frames, it has left.
  const auto cut = [&](const Status& s, bool inside) -> Status {
    close();
    if (s.code() == Errc::timeout) return s;
    if (s.code() == Errc::disconnected && inside) {
      return Status(Errc::protocol_error, fmt::format("truncated frame from {}", peer_));
    }
    return s;
  };
  if (Status s = read_exact(header, got, deadline); !s.is_ok()) return cut(s, got > 0);
  auto h = parse_frame_header(header, max_payload_);
  if (!h) {
    fail(h.error());
    return Status(h.error().code(), fmt::format("{} from {}", h.error().message(), peer_));
  }
  Frame f{h->type, std::vector<std::byte>(h->length)};
  if (Status s = read_exact(f.payload, got, deadline); !s.is_ok()) return cut(s, true);
  return f;
}

void ControlChannel::fail(const Status& why) {
  if (socket_.is_open()) {
    (void)send(FrameType::error, error_payload(why), Clock::now() + std::chrono::milliseconds(200));
  }
  close();
}

void ControlChannel::close() noexcept {
  boost::system::error_code ec;
  if (socket_.is_open()) {
    socket_.shutdown(tcp::socket::shutdown_both, ec);
    socket_.close(ec);
  }
}

std::vector<std::byte> error_payload(const Status& s) {
  std::vector<std::byte> out(1 + s.message().size());
  out[0] = static_cast<std::byte>(s.code());
  std::memcpy(out.data() + 1, s.message().data(), s.message().size());
  return out;
}

Status status_from_error_payload(std::span<const std::byte> payload) {
  if (payload.empty() || static_cast<std::uint8_t>(payload[0]) == 0 ||
      static_cast<std::uint8_t>(payload[0]) > static_cast<std::uint8_t>(Errc::internal)) {
    return Status(Errc::protocol_error, "malformed error frame");
  }
  return Status(static_cast<Errc>(payload[0]),
                "peer: " + std::string(reinterpret_cast<const char*>(payload.data()) + 1,
                                       payload.size() - 1));
}

namespace {

// The next frame, which must be `want`: an error frame becomes its status, another type a
// protocol error.
Expected<Frame> expect(ControlChannel& channel, FrameType want, Clock::time_point deadline) {
  KVS_ASSIGN_OR_RETURN(Frame f, channel.receive(deadline));
  if (f.type == want) return f;
  if (f.type == FrameType::error) {
    channel.close();
    return status_from_error_payload(f.payload);
  }
  const Status s(Errc::protocol_error, fmt::format("expected a {} frame, got {}",
                                                   frame_type_name(want), frame_type_name(f.type)));
  channel.fail(s);
  return s;
}

}  // namespace

Status authenticate_client(ControlChannel& channel, const Secret& secret,
                           Clock::time_point deadline, const ControlLog& log) {
  KVS_ASSIGN_OR_RETURN(const Nonce server, make_nonce());
  const std::uint32_t authenticated_max = channel.max_payload();
  channel.set_max_payload(std::min(authenticated_max, kHandshakeMaxPayload));
  const auto refuse = [&](const Status& why) {
    if (log) log(fmt::format("refused {}: {}", channel.peer(), why.message()));
    return why;
  };
  Status s = channel.send(FrameType::hello, server, deadline);
  if (!s.is_ok()) return refuse(s);
  auto auth = expect(channel, FrameType::auth, deadline);
  if (!auth) return refuse(auth.error());
  if (auth->payload.size() != kNonceSize + kMacSize) {
    const Status bad(Errc::protocol_error,
                     fmt::format("auth frame of {} bytes", auth->payload.size()));
    channel.fail(bad);
    return refuse(bad);
  }
  Nonce client{};
  std::memcpy(client.data(), auth->payload.data(), kNonceSize);
  if (!same_mac(std::span(auth->payload).subspan(kNonceSize), client_mac(secret, server, client))) {
    // Nothing about the secret or the server in the answer.
    const Status denied(Errc::auth_failed, "authentication failed");
    channel.fail(denied);
    return refuse(Status(Errc::auth_failed, "wrong secret"));
  }
  const Mac proof = server_mac(secret, server, client);
  KVS_RETURN_IF_ERROR(channel.send(FrameType::auth_ok, proof, deadline));
  channel.set_max_payload(authenticated_max);
  return Status::ok();
}

Status authenticate_to_server(ControlChannel& channel, const Secret& secret,
                              Clock::time_point deadline) {
  KVS_ASSIGN_OR_RETURN(const Frame hello, expect(channel, FrameType::hello, deadline));
  if (hello.payload.size() != kNonceSize) {
    const Status bad(Errc::protocol_error,
                     fmt::format("hello frame of {} bytes", hello.payload.size()));
    channel.fail(bad);
    return bad;
  }
  Nonce server{};
  std::memcpy(server.data(), hello.payload.data(), kNonceSize);
  KVS_ASSIGN_OR_RETURN(const Nonce client, make_nonce());
  const Mac mac = client_mac(secret, server, client);
  std::array<std::byte, kNonceSize + kMacSize> answer{};
  std::memcpy(answer.data(), client.data(), kNonceSize);
  std::memcpy(answer.data() + kNonceSize, mac.data(), kMacSize);
  KVS_RETURN_IF_ERROR(channel.send(FrameType::auth, answer, deadline));
  KVS_ASSIGN_OR_RETURN(const Frame ok, expect(channel, FrameType::auth_ok, deadline));
  if (!same_mac(ok.payload, server_mac(secret, server, client))) {
    const Status bad(Errc::auth_failed, "the server does not know the secret");
    channel.fail(bad);
    return bad;
  }
  return Status::ok();
}

}  // namespace kvstream::transport
