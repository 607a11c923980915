// Both ends of a store-mode stream over real networks: StreamServer accepts receivers on a TCP
// port, authenticates them, pairs UCX workers and serves each in a thread of its own;
// connect_stream does the receiver's half. Each connection owns its UCX context, worker and
// endpoint, used by its one thread.
#pragma once

#include <atomic>
#include <filesystem>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "session.hpp"

namespace kvstream::transport {

struct ServerOptions {
  std::filesystem::path dir;            // the context archives (<id>.kva), unless `source`
  std::shared_ptr<ChunkSource> source;  // push mode, or any other source of streams
  std::string host = "0.0.0.0";
  std::uint16_t port = 0;  // 0: any free port (see StreamServer::port)
  std::chrono::milliseconds handshake{10000};
  std::chrono::milliseconds idle{60000};  // a session silent this long is closed
  double rate_bits_per_second = 0;        // > 0: pace each session's chunks to this rate
  // Free chunk buffers kept for the next chunks and sessions, in bytes (see buffer_pool.hpp).
  std::size_t keep_buffer_bytes = std::size_t{512} << 20;
  ControlLog log;  // refusals, failures and ends of sessions
};

class StreamServer {
 public:
  // Listens now; serves from another thread until stop() or destruction.
  static Expected<std::unique_ptr<StreamServer>> start(ServerOptions options, Secret secret);
  ~StreamServer();
  std::uint16_t port() const noexcept { return port_; }
  // Stops accepting and waits for the sessions in progress to end (each within its idle time).
  void stop();

  struct Impl;

 private:
  StreamServer() = default;
  std::unique_ptr<Impl> impl_;
  std::uint16_t port_ = 0;
};

// A receiver's connection: control channel and data link to one server, authenticated. The data
// link watches the control connection while it waits: a sender that closes it, or sends an error
// frame, ends the wait with that status.
struct StreamConnection {
  std::unique_ptr<ControlChannel> control;
  std::shared_ptr<UcxContext> context;
  std::shared_ptr<UcxWorker> worker;
  std::unique_ptr<DataLink> data;
  StreamReceiver receiver() { return StreamReceiver(*control, *data); }
  ~StreamConnection();  // data link (endpoint) before worker before context
};

Expected<std::unique_ptr<StreamConnection>> connect_stream(const std::string& host,
                                                           std::uint16_t port, const Secret& secret,
                                                           Clock::time_point deadline);

// The error mode for an endpoint to the peer of `channel`: $KVSTREAM_UCX_ERR_MODE (`peer` or
// `none`) when set, else `none` for a peer on this host, so that UCX may use shared memory, and
// `peer` across hosts. Both ends decide alike.
Expected<ErrorMode> endpoint_error_mode(const ControlChannel& channel);

// The data link's liveness probes (data_link.hpp) on a session's control connection. The
// sender's: the receiver has gone once it closed the connection (frames it sent meanwhile wait
// for the session loop). The receiver's: while chunks flow a sender says nothing on the control
// connection unless it fails, so a pending frame is read at once, an error frame becoming its
// status.
Liveness sender_liveness(ControlChannel& channel);
Liveness receiver_liveness(ControlChannel& channel);

// Pairs two UCX workers over an authenticated control channel: each side sends its worker's
// address in a worker_address frame and connects an endpoint to the other's. The frame also
// carries the error mode its side wants (endpoint_error_mode()); both ends use PEER when either
// wants it, so that an override on one side only still gives matching endpoints. The side with
// `sends_first` sends before it receives (the client), the other receives first. An error frame
// from the peer becomes its status; any other frame is a protocol error.
Expected<std::unique_ptr<UcxEndpoint>> pair_workers(ControlChannel& channel,
                                                    const std::shared_ptr<UcxWorker>& worker,
                                                    bool sends_first, Clock::time_point deadline);

// "host:port" (or "[v6]:port") split; errors name the text.
Expected<std::pair<std::string, std::uint16_t>> parse_host_port(std::string_view text);

}  // namespace kvstream::transport
