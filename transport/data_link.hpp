// The data plane as sessions see it: tagged byte messages from a sender into receive slots the
// receiver posted. UcxDataLink moves them over UCX; FakeDataLink in memory (tests); FaultyLink
// wraps either and injects failures (tests). Sessions are written against this interface only,
// so that every session test runs on the one fake and the one fault injector.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "ucx.hpp"

namespace kvstream::transport {

struct Completion {
  std::uint64_t tag = 0;
  std::size_t length = 0;  // bytes that landed in the slot
};

class DataLink {
 public:
  virtual ~DataLink() = default;
  // Starts sending `bytes` under `tag`. The buffer must stay valid until the send is complete:
  // sends count as complete oldest first, so once sends_in_flight() is n, every send but the
  // newest n is. Before the caller frees a buffer still in flight it must finish_sends() or
  // abandon_sends().
  virtual Status start_send(std::uint64_t tag, std::span<const std::byte> bytes) = 0;
  // Drives the sends in flight without waiting for them; the first failure of any of them.
  virtual Status progress_sends() = 0;
  // Waits until at most `keep` sends are in flight, or fails by `deadline`.
  virtual Status finish_sends(std::size_t keep, Clock::time_point deadline) = 0;
  virtual std::size_t sends_in_flight() const = 0;
  // Gives the sends in flight up for `why` (a peer gone or stalled); afterwards nothing reads
  // their buffers, and the link is failed.
  virtual void abandon_sends(const Status& why) = 0;
  // Sends `bytes` under `tag`; returns once the buffer may be reused, or fails by `deadline`.
  Status send(std::uint64_t tag, std::span<const std::byte> bytes, Clock::time_point deadline) {
    KVS_RETURN_IF_ERROR(start_send(tag, bytes));
    return finish_sends(0, deadline);
  }
  // Posts a receive of at most slot.size() bytes for `tag`; the slot must stay valid until the
  // receive completes or the link is destroyed.
  virtual Status post_receive(std::uint64_t tag, std::span<std::byte> slot) = 0;
  // The next completed receive (any order), or an error: Errc::timeout at the deadline,
  // Errc::disconnected when the peer is gone, protocol_error for a message larger than its slot.
  virtual Expected<Completion> wait_any(Clock::time_point deadline) = 0;
  // Withdraws every posted receive that has not completed: afterwards nothing writes into their
  // slots, so the caller may free them.
  virtual void cancel_receives() = 0;
  // The link's own estimate of its goodput for messages of `bytes`, before any has gone; 0 when
  // it has none.
  virtual double estimated_bytes_per_s(std::size_t /*bytes*/) const { return 0; }
};

// Whether the peer is still there, asked without blocking (e.g. ControlChannel::check_open);
// not ok ends the wait it was asked in.
using Liveness = std::function<Status()>;

// Tagged messages over a UCX endpoint. Not thread-safe: the worker's thread. While a send or
// wait_any waits, `liveness` (if any) is asked every 10 ms: an endpoint in ErrorMode::none
// learns of a dead peer only that way. A failed probe, a finish_sends past its deadline or
// abandon_sends aborts the endpoint. In ErrorMode::peer the forced close completes every send;
// in ErrorMode::none UCX keeps them (it tracks no sends to take back), so the link is stranded:
// it never drives the worker again, and nothing in this process reads those buffers.
class UcxDataLink final : public DataLink {
 public:
  explicit UcxDataLink(std::unique_ptr<UcxEndpoint> endpoint, Liveness liveness = {});
  ~UcxDataLink() override;
  Status start_send(std::uint64_t tag, std::span<const std::byte> bytes) override;
  Status progress_sends() override;
  Status finish_sends(std::size_t keep, Clock::time_point deadline) override;
  std::size_t sends_in_flight() const override { return sends_.size(); }
  void abandon_sends(const Status& why) override;
  Status post_receive(std::uint64_t tag, std::span<std::byte> slot) override;
  Expected<Completion> wait_any(Clock::time_point deadline) override;
  void cancel_receives() override;
  // UCX's (ucp_ep_evaluate_perf): from the transports' nominal bandwidth and latency.
  double estimated_bytes_per_s(std::size_t bytes) const override;
  // For raw UCX measurements over the same endpoint (kv_perf's baseline).
  UcxEndpoint& endpoint() noexcept { return *endpoint_; }

 private:
  struct Posted {
    std::uint64_t tag;
    std::size_t capacity;
    ucs_status_ptr_t request;  // null once completed in place
    ucp_tag_recv_info_t info;
  };
  // Asks the probe when it is due; a dead peer aborts the endpoint.
  void probe(Clock::time_point now);
  // Drops the complete sends at the front; keeps the first failure.
  void reap();
  // After an abort: sends UCX still holds strand the link (see the class comment).
  Status after_abort();
  std::unique_ptr<UcxEndpoint> endpoint_;
  Liveness liveness_;
  Clock::time_point next_probe_{};
  bool stranded_ = false;  // a send UCX would not give back: the worker is not driven again
  std::deque<ucs_status_ptr_t> sends_;  // oldest first; null: completed when posted
  Status send_failure_ = Status::ok();
  std::deque<Posted> posted_;
};

// Two FakeDataLinks made together deliver to each other in memory. Thread-safe.
class FakeDataLink final : public DataLink {
 public:
  static std::pair<std::unique_ptr<FakeDataLink>, std::unique_ptr<FakeDataLink>> pair();
  ~FakeDataLink() override;  // the peer then sees Errc::disconnected
  // Sends complete at once: the message is copied to the peer's inbox.
  Status start_send(std::uint64_t tag, std::span<const std::byte> bytes) override;
  Status progress_sends() override { return Status::ok(); }
  Status finish_sends(std::size_t, Clock::time_point) override { return Status::ok(); }
  std::size_t sends_in_flight() const override { return 0; }
  void abandon_sends(const Status&) override {}
  Status post_receive(std::uint64_t tag, std::span<std::byte> slot) override;
  Expected<Completion> wait_any(Clock::time_point deadline) override;
  void cancel_receives() override;

  struct Shared;

 private:
  FakeDataLink(std::shared_ptr<Shared> shared, int side)
      : shared_(std::move(shared)), side_(side) {}
  std::shared_ptr<Shared> shared_;
  int side_;
};

// A decorator's base: forwards everything to the link it wraps.
class ForwardingLink : public DataLink {
 public:
  explicit ForwardingLink(std::unique_ptr<DataLink> inner) : inner_(std::move(inner)) {}
  Status start_send(std::uint64_t tag, std::span<const std::byte> bytes) override {
    return inner_->start_send(tag, bytes);
  }
  Status progress_sends() override { return inner_->progress_sends(); }
  Status finish_sends(std::size_t keep, Clock::time_point deadline) override {
    return inner_->finish_sends(keep, deadline);
  }
  std::size_t sends_in_flight() const override { return inner_->sends_in_flight(); }
  void abandon_sends(const Status& why) override { inner_->abandon_sends(why); }
  Status post_receive(std::uint64_t tag, std::span<std::byte> slot) override {
    return inner_->post_receive(tag, slot);
  }
  Expected<Completion> wait_any(Clock::time_point deadline) override {
    return inner_->wait_any(deadline);
  }
  void cancel_receives() override { inner_->cancel_receives(); }
  double estimated_bytes_per_s(std::size_t bytes) const override {
    return inner_->estimated_bytes_per_s(bytes);
  }

 protected:
  std::unique_ptr<DataLink> inner_;
};

// Wraps a link and breaks it on purpose: after `fail_after_sends` sends every send and wait
// fails as a dead peer would (Errc::disconnected); `corrupt_send` flips a byte of that send
// (0-based); `delay` holds every send back.
struct Faults {
  std::int64_t fail_after_sends = -1;  // -1: never
  std::int64_t corrupt_send = -1;      // -1: none
  std::chrono::milliseconds delay{0};
};

class FaultyLink final : public ForwardingLink {
 public:
  FaultyLink(std::unique_ptr<DataLink> inner, Faults faults)
      : ForwardingLink(std::move(inner)), faults_(faults) {}
  Status start_send(std::uint64_t tag, std::span<const std::byte> bytes) override;
  Expected<Completion> wait_any(Clock::time_point deadline) override;

 private:
  Faults faults_;
  std::deque<std::vector<std::byte>> corrupted_;  // copies sent in place of the caller's bytes
  std::int64_t sends_ = 0;
  bool dead_ = false;
};

// Paces the sends of another link to an average of `bits_per_second`, a message at a time (a
// sender-side pacer, so that a slow link can be emulated without root). Not thread-safe.
class PacedLink final : public ForwardingLink {
 public:
  PacedLink(std::unique_ptr<DataLink> inner, double bits_per_second)
      : ForwardingLink(std::move(inner)), rate_(bits_per_second) {}
  // Sleeps until the message may start.
  Status start_send(std::uint64_t tag, std::span<const std::byte> bytes) override;

 private:
  double rate_;
  Clock::time_point next_{};  // when the next message may start
};

// A rate such as "2gbit", "500mbit", "64kbit" or "1e9bit" (tc's units, decimal), in bits per
// second; errors name the text.
Expected<double> parse_rate(std::string_view text);

}  // namespace kvstream::transport
