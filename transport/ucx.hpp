// RAII owners of UCX (ucp) handles, and UCX errors as Status naming the call. Every owner is
// move-only; a worker keeps its context alive and an endpoint its worker, so that destruction
// always runs endpoint -> worker -> context (NIXL's ucx_utils.h order). Nothing here starts a
// thread: callers drive progress (UcxWorker::progress) or own a progress thread themselves.
#pragma once

#include <ucp/api/ucp.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kvstream/status.hpp"

namespace kvstream::transport {

using Clock = std::chrono::steady_clock;

Status ucx_status(ucs_status_t s, const char* call);

// Which memory a UCX context can register and move (ucp_context_query). A UCX built without
// CUDA support (Debian's) moves host memory only: a receive slot in device memory would fail at
// the first transfer, not at start-up, so callers ask before they place slots.
struct MemoryTypes {
  bool host = false, cuda = false, cuda_managed = false, rocm = false;
  std::string describe() const;  // "host, cuda", or "none"
};
MemoryTypes memory_types_from_mask(std::uint64_t mask);

// ucp_context_h: features TAG, AM and RMA; the UCX_* environment picks transports and devices.
class UcxContext {
 public:
  static Expected<std::shared_ptr<UcxContext>> create();
  Expected<MemoryTypes> memory_types() const;
  ~UcxContext();
  UcxContext(const UcxContext&) = delete;
  UcxContext& operator=(const UcxContext&) = delete;
  ucp_context_h get() const noexcept { return h_; }

 private:
  UcxContext() = default;
  ucp_context_h h_ = nullptr;
};

// ucp_worker_h, single-threaded: only the thread that owns it may call it.
class UcxWorker {
 public:
  static Expected<std::shared_ptr<UcxWorker>> create(std::shared_ptr<UcxContext> context);
  ~UcxWorker();
  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;
  ucp_worker_h get() const noexcept { return h_; }
  const std::shared_ptr<UcxContext>& context() const noexcept { return context_; }

  // The worker's address, to send to a peer over the control plane.
  Expected<std::vector<std::byte>> address() const;
  // One round of progress; true when it did something.
  bool progress() noexcept { return ucp_worker_progress(h_) != 0; }

  // How a wait spends the time when a round of progress finds nothing to do: `backoff` yields,
  // then sleeps up to 100 us (control traffic, tests); `busy` keeps polling (the data path, as
  // ucx_perftest does).
  enum class Poll { backoff, busy };

  // Progresses until `request` (a ucp_*_nbx return value) completes or `deadline` passes. A
  // request still pending at the deadline is cancelled, then waited for, so that UCX never
  // writes into a buffer the caller has taken back; the result is then Errc::timeout naming
  // `what`. Consumes the request.
  Status wait(ucs_status_ptr_t request, Clock::time_point deadline, const char* what,
              Poll poll = Poll::backoff);

 private:
  UcxWorker() = default;
  std::shared_ptr<UcxContext> context_;
  ucp_worker_h h_ = nullptr;
};

// A context with one worker: what each thread that talks UCX needs.
struct UcxThread {
  std::shared_ptr<UcxContext> context;
  std::shared_ptr<UcxWorker> worker;
};
Expected<UcxThread> open_ucx_thread();

// How an endpoint learns that its peer failed. `peer` (UCP_ERR_HANDLING_MODE_PEER): UCX notices
// (keepalive on network transports) and fails the endpoint's requests. UCX 1.13 offers no
// shared-memory transport under PEER, so a peer on the same host would be reached over TCP at a
// fraction of the speed: `none` keeps shared memory, and the owner must watch the peer another way
// (the data link's liveness probe on the control connection) and abort() the endpoint.
enum class ErrorMode { peer, none };

// ucp_ep_h to a peer's worker address: a peer that dies or stops answering fails the endpoint's
// requests (Errc::disconnected) instead of hanging them.
class UcxEndpoint {
 public:
  static Expected<std::unique_ptr<UcxEndpoint>> connect(std::shared_ptr<UcxWorker> worker,
                                                        std::span<const std::byte> address,
                                                        ErrorMode mode = ErrorMode::peer);
  // Closes with a flush, waiting up to a second; force-closes when the peer is gone.
  ~UcxEndpoint();
  UcxEndpoint(const UcxEndpoint&) = delete;
  UcxEndpoint& operator=(const UcxEndpoint&) = delete;
  ucp_ep_h get() const noexcept { return h_; }
  UcxWorker& worker() const noexcept { return *worker_; }
  // The error UCX reported for the peer, if any (set from UCX's error callback or abort()).
  const Status& failure() const noexcept { return failure_; }
  ErrorMode mode() const noexcept { return mode_; }
  // Completes UCX's wireup of the endpoint (UCX connects its lanes lazily, and the peer's worker
  // must make progress too) by `deadline`; timeout when the peer does not answer by then.
  Status flush(Clock::time_point deadline);
  // Declares the peer failed for `why` and force-closes the endpoint now: UCX completes every
  // request still outstanding on it with an error, so none waits on a dead peer.
  void abort(Status why);

 private:
  UcxEndpoint() = default;
  static void on_error(void* arg, ucp_ep_h ep, ucs_status_t status);
  void close(bool force);
  std::shared_ptr<UcxWorker> worker_;
  ucp_ep_h h_ = nullptr;
  ErrorMode mode_ = ErrorMode::peer;
  Status failure_ = Status::ok();
};

// Memory registered with a context (ucp_mem_map over caller memory), and its packed remote key.
class MemoryRegion {
 public:
  static Expected<std::unique_ptr<MemoryRegion>> map(std::shared_ptr<UcxContext> context,
                                                     void* address, std::size_t length);
  ~MemoryRegion();
  MemoryRegion(const MemoryRegion&) = delete;
  MemoryRegion& operator=(const MemoryRegion&) = delete;
  ucp_mem_h get() const noexcept { return h_; }
  void* address() const noexcept { return address_; }
  std::size_t length() const noexcept { return length_; }
  // The remote key a peer unpacks to reach this region (ucp_rkey_pack).
  Expected<std::vector<std::byte>> packed_key() const;

 private:
  MemoryRegion() = default;
  std::shared_ptr<UcxContext> context_;
  ucp_mem_h h_ = nullptr;
  void* address_ = nullptr;
  std::size_t length_ = 0;
};

// A peer's remote key unpacked on an endpoint; destroy it before that endpoint.
class RemoteKey {
 public:
  static Expected<std::unique_ptr<RemoteKey>> unpack(const UcxEndpoint& ep,
                                                     std::span<const std::byte> packed);
  ~RemoteKey();
  RemoteKey(const RemoteKey&) = delete;
  RemoteKey& operator=(const RemoteKey&) = delete;
  ucp_rkey_h get() const noexcept { return h_; }

 private:
  RemoteKey() = default;
  ucp_rkey_h h_ = nullptr;
};

}  // namespace kvstream::transport
