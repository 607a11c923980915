// A control-plane connection: frames over a TCP socket (Boost.Asio), every read and write with a
// deadline, and the authentication handshake of auth.hpp on top.
//
// Thread-safety: a channel is used by one thread at a time; it runs its own io_context, so
// that a wait on one connection never runs another's handlers.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <functional>
#include <memory>
#include <span>
#include <string>

#include "auth.hpp"
#include "frame.hpp"
#include "ucx.hpp"  // Clock

namespace kvstream::transport {

class ControlChannel {
 public:
  // Connects to host:port before `deadline`.
  static Expected<std::unique_ptr<ControlChannel>> connect(
      const std::string& host, std::uint16_t port, Clock::time_point deadline,
      std::uint32_t max_payload = kDefaultMaxPayload);
  // Takes an accepted socket; `io` must be the context the socket was made on, used by this
  // channel alone.
  ControlChannel(std::unique_ptr<boost::asio::io_context> io, boost::asio::ip::tcp::socket socket,
                 std::uint32_t max_payload = kDefaultMaxPayload);
  ~ControlChannel();
  ControlChannel(const ControlChannel&) = delete;
  ControlChannel& operator=(const ControlChannel&) = delete;

  Status send(FrameType type, std::span<const std::byte> payload, Clock::time_point deadline);
  // The next frame. A peer that closes cleanly between frames is Errc::disconnected; one that
  // closes inside a frame, a protocol_error ("truncated frame"); a header that breaks the
  // rules (frame.hpp), a protocol_error before its payload is read; no frame by the deadline,
  // Errc::timeout. After any error the channel is closed.
  Expected<Frame> receive(Clock::time_point deadline);
  // Sends an error frame (best effort, short deadline) and closes.
  void fail(const Status& why);
  void close() noexcept;

  std::string peer() const { return peer_; }
  // Whether the peer runs on this host: it connected over loopback, or from this side's own
  // address. Both ends of a connection agree on it.
  bool same_host() const noexcept { return same_host_; }

  // Without blocking: whether the peer is still there. Errc::disconnected once it has closed or
  // reset the connection and everything it sent before has been read; frames waiting to be read
  // count as alive (see readable()).
  Status check_open();
  // Without blocking: whether bytes of a frame (or the peer's close) wait to be read.
  bool readable();
  // The largest payload receive() accepts: small until a peer has authenticated, so that an
  // unknown client cannot make the server allocate much.
  void set_max_payload(std::uint32_t bytes) noexcept { max_payload_ = bytes; }
  std::uint32_t max_payload() const noexcept { return max_payload_; }

 private:
  // Runs the io_context until `done` or the deadline; on the deadline cancels the operation.
  Status run_until(const bool& done, Clock::time_point deadline, const char* what);
  // Fills `into` (what is there at once, then through Asio by the deadline); `got` counts the
  // bytes read even when it fails. Errors as io_status, or Errc::timeout.
  Status read_exact(std::span<std::byte> into, std::size_t& got, Clock::time_point deadline);

  std::unique_ptr<boost::asio::io_context> io_;
  boost::asio::ip::tcp::socket socket_;
  std::uint32_t max_payload_;
  std::string peer_;
  bool same_host_ = false;
};

// The largest frame a peer may send before it has authenticated (the handshake's are 64 bytes).
inline constexpr std::uint32_t kHandshakeMaxPayload = 1024;

// A server's log of refused and failed connections.
using ControlLog = std::function<void(const std::string&)>;

// The server side of the handshake: hello, then the client's auth checked, with frames limited
// to kHandshakeMaxPayload until it succeeds. A client with a wrong or missing secret gets an
// error frame and the connection closes; `log` says so.
Status authenticate_client(ControlChannel& channel, const Secret& secret,
                           Clock::time_point deadline, const ControlLog& log);
// The client side: answers the server's hello and checks its auth_ok.
Status authenticate_to_server(ControlChannel& channel, const Secret& secret,
                              Clock::time_point deadline);

// An error frame's payload: the Errc as a byte, then the message.
std::vector<std::byte> error_payload(const Status& s);
Status status_from_error_payload(std::span<const std::byte> payload);

}  // namespace kvstream::transport
