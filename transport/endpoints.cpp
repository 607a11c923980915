// The TCP accept loop, per-connection session threads, and the receiver's connect.
#include "endpoints.hpp"

#include <fmt/format.h>

#include <boost/asio/ip/tcp.hpp>
#include <charconv>
#include <cstdlib>

namespace kvstream::transport {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// A worker_address frame: the error mode its sender wants (u8: 0 none, 1 peer), then the
// address. Both ends must use the same mode (UCX fails requests between a PEER endpoint and a
// NONE one), so each says what it wants and both take PEER if either asks for it.
std::vector<std::byte> address_payload(ErrorMode mode, std::span<const std::byte> address) {
  std::vector<std::byte> out{
      std::byte{mode == ErrorMode::peer ? std::uint8_t{1} : std::uint8_t{0}}};
  out.insert(out.end(), address.begin(), address.end());
  return out;
}

// Receives the peer's worker address and error mode, or its error.
Expected<std::pair<ErrorMode, std::vector<std::byte>>> receive_address(ControlChannel& c,
                                                                       Clock::time_point deadline) {
  KVS_ASSIGN_OR_RETURN(Frame f, c.receive(deadline));
  if (f.type == FrameType::error) return status_from_error_payload(f.payload);
  if (f.type != FrameType::worker_address || f.payload.size() < 2 ||
      std::to_integer<std::uint8_t>(f.payload[0]) > 1) {
    const Status s(Errc::protocol_error,
                   fmt::format("expected a worker address, got {}", frame_type_name(f.type)));
    c.fail(s);
    return s;
  }
  const ErrorMode mode = f.payload[0] == std::byte{1} ? ErrorMode::peer : ErrorMode::none;
  f.payload.erase(f.payload.begin());
  return std::pair{mode, std::move(f.payload)};
}

}  // namespace

Liveness sender_liveness(ControlChannel& c) {
  return [&c] { return c.check_open(); };
}

Liveness receiver_liveness(ControlChannel& c) {
  return [&c]() -> Status {
    if (!c.readable()) return Status::ok();
    KVS_ASSIGN_OR_RETURN(const Frame f, c.receive(Clock::now() + std::chrono::milliseconds(500)));
    if (f.type == FrameType::error) return status_from_error_payload(f.payload);
    const Status s(Errc::protocol_error,
                   fmt::format("unexpected {} frame while chunks flow", frame_type_name(f.type)));
    c.fail(s);
    return s;
  };
}

Expected<ErrorMode> endpoint_error_mode(const ControlChannel& channel) {
  const char* forced = std::getenv("KVSTREAM_UCX_ERR_MODE");
  if (forced == nullptr || *forced == '\0') {
    return channel.same_host() ? ErrorMode::none : ErrorMode::peer;
  }
  const std::string_view v(forced);
  if (v == "peer") return ErrorMode::peer;
  if (v == "none") return ErrorMode::none;
  return Status(Errc::invalid_argument,
                fmt::format("KVSTREAM_UCX_ERR_MODE='{}': expected peer or none", v));
}

Expected<std::unique_ptr<UcxEndpoint>> pair_workers(ControlChannel& channel,
                                                    const std::shared_ptr<UcxWorker>& worker,
                                                    bool sends_first, Clock::time_point deadline) {
  KVS_ASSIGN_OR_RETURN(const ErrorMode wanted, endpoint_error_mode(channel));
  KVS_ASSIGN_OR_RETURN(const auto own, worker->address());
  const auto payload = address_payload(wanted, own);
  if (sends_first) KVS_RETURN_IF_ERROR(channel.send(FrameType::worker_address, payload, deadline));
  KVS_ASSIGN_OR_RETURN(const auto peer, receive_address(channel, deadline));
  if (!sends_first) KVS_RETURN_IF_ERROR(channel.send(FrameType::worker_address, payload, deadline));
  const ErrorMode mode = wanted == ErrorMode::peer || peer.first == ErrorMode::peer
                             ? ErrorMode::peer
                             : ErrorMode::none;
  KVS_ASSIGN_OR_RETURN(auto ep, UcxEndpoint::connect(worker, peer.second, mode));
  // Both sides wire the endpoint up now, so that the first chunk does not pay for it: over TCP
  // that was 7 ms of small messages, each waiting for the other side's worker to be progressed.
  KVS_RETURN_IF_ERROR(ep->flush(deadline));
  return ep;
}

struct StreamServer::Impl {
  ServerOptions options;
  Secret secret;
  std::shared_ptr<ChunkSource> source;
  std::unique_ptr<BufferPool> buffers;  // made with the options' limit
  asio::io_context io;
  tcp::acceptor acceptor{io};
  std::thread accept_thread;
  std::mutex mu;
  struct Session {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  std::list<Session> sessions;
  std::atomic<bool> stopping{false};

  void log(const std::string& line) const {
    if (options.log) options.log(line);
  }

  void serve_connection(std::unique_ptr<ControlChannel> channel) {
    const std::string peer = channel->peer();
    // The handshake logs its own refusals.
    if (!authenticate_client(*channel, secret, Clock::now() + options.handshake, options.log)
             .is_ok()) {
      return;
    }
    const Status s = [&]() -> Status {
      KVS_ASSIGN_OR_RETURN(UcxThread ucx, open_ucx_thread());
      KVS_ASSIGN_OR_RETURN(
          auto ep, pair_workers(*channel, ucx.worker, false, Clock::now() + options.handshake));
      std::unique_ptr<DataLink> link =
          std::make_unique<UcxDataLink>(std::move(ep), sender_liveness(*channel));
      if (options.rate_bits_per_second > 0) {
        link = std::make_unique<PacedLink>(std::move(link), options.rate_bits_per_second);
      }
      return serve_session(*channel, *link, *source, options.idle, *buffers);
    }();
    log(s.is_ok() ? fmt::format("{}: session ended", peer)
                  : fmt::format("{}: session failed: {}", peer, s.to_string()));
  }

  void accept_loop() {
    while (!stopping) {
      auto channel_io = std::make_unique<asio::io_context>();
      boost::system::error_code ec;
      tcp::socket socket = acceptor.accept(*channel_io, ec);
      if (ec) {
        if (!stopping) log(fmt::format("accept: {}", ec.message()));
        if (stopping || ec == asio::error::bad_descriptor) return;
        continue;
      }
      auto channel = std::make_unique<ControlChannel>(std::move(channel_io), std::move(socket));
      std::lock_guard lock(mu);
      // Threads of sessions that ended are joined here, so a long-running server keeps none.
      sessions.remove_if([](Session& s) {
        if (!*s.done) return false;
        s.thread.join();
        return true;
      });
      auto done = std::make_shared<std::atomic<bool>>(false);
      sessions.push_back({std::thread([this, c = std::move(channel), done]() mutable {
                            serve_connection(std::move(c));
                            *done = true;
                          }),
                          done});
    }
  }
};

Expected<std::unique_ptr<StreamServer>> StreamServer::start(ServerOptions options, Secret secret) {
  std::unique_ptr<StreamServer> server(new StreamServer());
  server->impl_ = std::make_unique<Impl>();
  Impl& m = *server->impl_;
  m.options = std::move(options);
  m.secret = std::move(secret);
  m.source = m.options.source ? m.options.source : std::make_shared<ArchiveSource>(m.options.dir);
  m.buffers = std::make_unique<BufferPool>(m.options.keep_buffer_bytes);
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(m.options.host, ec);
  if (ec) {
    return Status(Errc::invalid_argument,
                  fmt::format("listen address '{}': {}", m.options.host, ec.message()));
  }
  const tcp::endpoint ep(address, m.options.port);
  m.acceptor.open(ep.protocol(), ec);
  if (!ec) m.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) m.acceptor.bind(ep, ec);
  if (!ec) m.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status(Errc::io_error,
                  fmt::format("listen on {}:{}: {}", m.options.host, m.options.port, ec.message()));
  }
  server->port_ = m.acceptor.local_endpoint().port();
  m.accept_thread = std::thread([&m] { m.accept_loop(); });
  return server;
}

void StreamServer::stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  boost::system::error_code ec;
  // Shutting the listening socket down wakes the blocked accept.
  ::shutdown(impl_->acceptor.native_handle(), SHUT_RDWR);
  impl_->accept_thread.join();
  impl_->acceptor.close(ec);
  std::lock_guard lock(impl_->mu);
  for (auto& s : impl_->sessions)
    s.thread.join();
}

StreamServer::~StreamServer() {
  stop();
}

StreamConnection::~StreamConnection() {
  data.reset();
  worker.reset();
  context.reset();
}

Expected<std::unique_ptr<StreamConnection>> connect_stream(const std::string& host,
                                                           std::uint16_t port, const Secret& secret,
                                                           Clock::time_point deadline) {
  auto c = std::make_unique<StreamConnection>();
  KVS_ASSIGN_OR_RETURN(c->control, ControlChannel::connect(host, port, deadline));
  KVS_RETURN_IF_ERROR(authenticate_to_server(*c->control, secret, deadline));
  KVS_ASSIGN_OR_RETURN(UcxThread ucx, open_ucx_thread());
  c->context = ucx.context;
  c->worker = ucx.worker;
  KVS_ASSIGN_OR_RETURN(auto ep, pair_workers(*c->control, c->worker, true, deadline));
  c->data = std::make_unique<UcxDataLink>(std::move(ep), receiver_liveness(*c->control));
  return c;
}

Expected<std::pair<std::string, std::uint16_t>> parse_host_port(std::string_view text) {
  const auto colon = text.rfind(':');
  const auto bad = Status(Errc::invalid_argument, fmt::format("'{}': expected HOST:PORT", text));
  if (colon == std::string_view::npos || colon == 0) return bad;
  std::string_view host = text.substr(0, colon), port_text = text.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535) return bad;
  return std::pair{std::string(host), static_cast<std::uint16_t>(port)};
}

}  // namespace kvstream::transport
