// UCX, in-memory and fault-injecting data links.
#include "data_link.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace kvstream::transport {

// ---- UCX ----

UcxDataLink::UcxDataLink(std::unique_ptr<UcxEndpoint> endpoint, Liveness liveness)
    : endpoint_(std::move(endpoint)), liveness_(std::move(liveness)) {}

void UcxDataLink::probe(Clock::time_point now) {
  if (!liveness_ || now < next_probe_ || !endpoint_->failure().is_ok()) return;
  next_probe_ = now + std::chrono::milliseconds(10);
  if (Status alive = liveness_(); !alive.is_ok()) endpoint_->abort(std::move(alive));
}

UcxDataLink::~UcxDataLink() {
  // The caller finished or abandoned its sends (data_link.hpp); what is left completed in place.
  abandon_sends(Status(Errc::disconnected, "the data link is closed"));
  cancel_receives();
}

double UcxDataLink::estimated_bytes_per_s(std::size_t bytes) const {
  if (bytes == 0 || stranded_) return 0;
  ucp_ep_evaluate_perf_param_t param{};
  param.field_mask = UCP_EP_PERF_PARAM_FIELD_MESSAGE_SIZE;
  param.message_size = bytes;
  ucp_ep_evaluate_perf_attr_t attr{};
  attr.field_mask = UCP_EP_PERF_ATTR_FIELD_ESTIMATED_TIME;
  if (ucp_ep_evaluate_perf(endpoint_->get(), &param, &attr) != UCS_OK || !(attr.estimated_time > 0))
    return 0;
  return static_cast<double>(bytes) / attr.estimated_time;
}

void UcxDataLink::cancel_receives() {
  for (Posted& p : posted_) {
    if (p.request == nullptr) continue;
    if (stranded_) {
      // The worker is not driven any more (data_link.hpp), so UCX writes into no slot: a
      // receive that cancelling does not complete at once is left to UCX.
      ucp_request_cancel(endpoint_->worker().get(), p.request);
      if (ucp_request_check_status(p.request) != UCS_INPROGRESS) ucp_request_free(p.request);
      continue;
    }
    // Cancelled, then waited for: a cancelled receive still completes (with UCS_ERR_CANCELED)
    // before UCX lets go of its slot.
    (void)endpoint_->worker().wait(p.request, Clock::now(), "cancelled receive");
  }
  posted_.clear();
}

Status UcxDataLink::start_send(std::uint64_t tag, std::span<const std::byte> bytes) {
  if (!endpoint_->failure().is_ok()) return endpoint_->failure();
  KVS_RETURN_IF_ERROR(send_failure_);
  ucp_request_param_t p{};
  const ucs_status_ptr_t r =
      ucp_tag_send_nbx(endpoint_->get(), bytes.data(), bytes.size(), tag, &p);
  if (UCS_PTR_IS_ERR(r)) return ucx_status(UCS_PTR_STATUS(r), "chunk send");
  sends_.push_back(r);  // null too: completion is counted oldest first
  return Status::ok();
}

void UcxDataLink::reap() {
  while (!sends_.empty()) {
    const ucs_status_ptr_t r = sends_.front();
    ucs_status_t s = UCS_OK;
    if (r != nullptr) {
      s = ucp_request_check_status(r);
      if (s == UCS_INPROGRESS) return;
      ucp_request_free(r);
    }
    sends_.pop_front();
    if (s != UCS_OK && send_failure_.is_ok()) send_failure_ = ucx_status(s, "chunk send");
  }
}

Status UcxDataLink::after_abort() {
  reap();
  if (!sends_.empty()) stranded_ = true;
  return endpoint_->failure();
}

Status UcxDataLink::progress_sends() {
  if (stranded_ || !endpoint_->failure().is_ok()) return after_abort();
  // While the worker has work (a TCP transport moves a large message a socket buffer at a
  // time), keep at it before the caller looks elsewhere.
  int round = 0;
  while (round < 64 && endpoint_->worker().progress())
    ++round;
  // With none, the bytes are the kernel's to move, and a sender that keeps the core spinning
  // can starve what moves them (the softirq thread, we take it, on a veth or a busy machine).
  // On 2 cores shared with the receiver, without this a fifth to a third of the fetches had
  // their first chunk land 10-27 ms late.
  if (round == 0) std::this_thread::yield();
  reap();
  probe(Clock::now());
  if (!endpoint_->failure().is_ok()) return after_abort();
  return send_failure_;
}

Status UcxDataLink::finish_sends(std::size_t keep, Clock::time_point deadline) {
  if (stranded_) return endpoint_->failure();
  UcxWorker& w = endpoint_->worker();
  for (;;) {
    reap();
    if (!endpoint_->failure().is_ok()) return after_abort();
    if (sends_.size() <= keep) return send_failure_;
    // The deadline holds even while the worker is busy with other traffic.
    const bool busy = w.progress();
    const auto now = Clock::now();
    if (now >= deadline) {
      endpoint_->abort(Status(Errc::timeout, "chunk send: deadline passed"));
      continue;
    }
    if (busy) continue;
    probe(now);
    std::this_thread::yield();
  }
}

void UcxDataLink::abandon_sends(const Status& why) {
  if (sends_.empty() || stranded_) return;
  endpoint_->abort(why);
  (void)after_abort();
}

Status UcxDataLink::post_receive(std::uint64_t tag, std::span<std::byte> slot) {
  if (stranded_) return endpoint_->failure();
  Posted& p = posted_.emplace_back();
  p.tag = tag;
  p.capacity = slot.size();
  ucp_request_param_t param{};
  param.op_attr_mask = UCP_OP_ATTR_FIELD_RECV_INFO;
  param.recv_info.tag_info = &p.info;
  p.request = ucp_tag_recv_nbx(endpoint_->worker().get(), slot.data(), slot.size(), tag,
                               ~ucp_tag_t{0}, &param);
  if (UCS_PTR_IS_ERR(p.request)) {
    const ucs_status_t s = UCS_PTR_STATUS(p.request);
    posted_.pop_back();
    return ucx_status(s, "ucp_tag_recv_nbx");
  }
  return Status::ok();
}

Expected<Completion> UcxDataLink::wait_any(Clock::time_point deadline) {
  if (stranded_) return endpoint_->failure();
  if (posted_.empty()) return Status(Errc::invalid_argument, "wait_any with no receive posted");
  UcxWorker& w = endpoint_->worker();
  for (;;) {
    for (auto it = posted_.begin(); it != posted_.end(); ++it) {
      ucs_status_t s = UCS_OK;
      if (it->request != nullptr) {
        s = ucp_tag_recv_request_test(it->request, &it->info);
        if (s == UCS_INPROGRESS) continue;
        ucp_request_free(it->request);
      }
      const Completion c{it->tag, it->info.length};
      const std::size_t capacity = it->capacity;
      posted_.erase(it);
      if (s == UCS_ERR_MESSAGE_TRUNCATED || c.length > capacity) {
        return Status(
            Errc::protocol_error,
            fmt::format("message for tag {:x} is larger than its {}-byte slot", c.tag, capacity));
      }
      if (s != UCS_OK) return ucx_status(s, "chunk receive");
      return c;
    }
    if (!endpoint_->failure().is_ok()) return endpoint_->failure();
    // The deadline holds even while the worker is busy with other traffic.
    const bool busy = w.progress();
    const auto now = Clock::now();
    if (now >= deadline) return Status(Errc::timeout, "chunk receive: deadline passed");
    if (busy) continue;
    probe(now);
    std::this_thread::yield();
  }
}

// ---- in memory ----

struct FakeDataLink::Shared {
  std::mutex mu;
  std::condition_variable cv;
  bool closed[2] = {false, false};
  struct Message {
    std::uint64_t tag;
    std::vector<std::byte> bytes;
  };
  std::deque<Message> inbox[2];  // messages for side i
  struct Slot {
    std::uint64_t tag;
    std::span<std::byte> slot;
  };
  std::deque<Slot> slots[2];  // receives side i posted
};

std::pair<std::unique_ptr<FakeDataLink>, std::unique_ptr<FakeDataLink>> FakeDataLink::pair() {
  auto shared = std::make_shared<Shared>();
  return {std::unique_ptr<FakeDataLink>(new FakeDataLink(shared, 0)),
          std::unique_ptr<FakeDataLink>(new FakeDataLink(shared, 1))};
}

FakeDataLink::~FakeDataLink() {
  std::lock_guard lock(shared_->mu);
  shared_->closed[side_] = true;
  shared_->cv.notify_all();
}

Status FakeDataLink::start_send(std::uint64_t tag, std::span<const std::byte> bytes) {
  std::lock_guard lock(shared_->mu);
  if (shared_->closed[1 - side_]) return Status(Errc::disconnected, "fake link: peer closed");
  shared_->inbox[1 - side_].push_back({tag, {bytes.begin(), bytes.end()}});
  shared_->cv.notify_all();
  return Status::ok();
}

Status FakeDataLink::post_receive(std::uint64_t tag, std::span<std::byte> slot) {
  std::lock_guard lock(shared_->mu);
  shared_->slots[side_].push_back({tag, slot});
  return Status::ok();
}

Expected<Completion> FakeDataLink::wait_any(Clock::time_point deadline) {
  std::unique_lock lock(shared_->mu);
  auto& inbox = shared_->inbox[side_];
  auto& slots = shared_->slots[side_];
  if (slots.empty()) return Status(Errc::invalid_argument, "wait_any with no receive posted");
  for (;;) {
    for (auto m = inbox.begin(); m != inbox.end(); ++m) {
      for (auto s = slots.begin(); s != slots.end(); ++s) {
        if (s->tag != m->tag) continue;
        const Completion c{m->tag, m->bytes.size()};
        const std::size_t capacity = s->slot.size();
        if (c.length <= capacity) std::memcpy(s->slot.data(), m->bytes.data(), c.length);
        slots.erase(s);
        inbox.erase(m);
        if (c.length > capacity) {
          return Status(
              Errc::protocol_error,
              fmt::format("message for tag {:x} is larger than its {}-byte slot", c.tag, capacity));
        }
        return c;
      }
    }
    if (shared_->closed[1 - side_]) return Status(Errc::disconnected, "fake link: peer closed");
    if (shared_->cv.wait_until(lock, deadline) == std::cv_status::timeout) {
      return Status(Errc::timeout, "chunk receive: deadline passed");
    }
  }
}

void FakeDataLink::cancel_receives() {
  std::lock_guard lock(shared_->mu);
  shared_->slots[side_].clear();
}

// ---- faults ----

Status FaultyLink::start_send(std::uint64_t tag, std::span<const std::byte> bytes) {
  if (dead_ || (faults_.fail_after_sends >= 0 && sends_ >= faults_.fail_after_sends)) {
    dead_ = true;
    return Status(Errc::disconnected, "injected: peer died");
  }
  if (faults_.delay.count() > 0) std::this_thread::sleep_for(faults_.delay);
  // Copies sent earlier are let go once nothing is in flight.
  if (inner_->sends_in_flight() == 0) corrupted_.clear();
  if (sends_++ == faults_.corrupt_send && !bytes.empty()) {
    auto& copy = corrupted_.emplace_back(bytes.begin(), bytes.end());
    copy[copy.size() / 2] ^= std::byte{0x40};
    return inner_->start_send(tag, copy);
  }
  return inner_->start_send(tag, bytes);
}

Expected<Completion> FaultyLink::wait_any(Clock::time_point deadline) {
  if (dead_) return Status(Errc::disconnected, "injected: peer died");
  return inner_->wait_any(deadline);
}

// ---- pacing ----

Status PacedLink::start_send(std::uint64_t tag, std::span<const std::byte> bytes) {
  const auto now = Clock::now();
  if (next_ > now) std::this_thread::sleep_until(next_);
  const auto start = std::max(now, next_);
  next_ = start + std::chrono::duration_cast<Clock::duration>(
                      std::chrono::duration<double>(static_cast<double>(bytes.size()) * 8 / rate_));
  return inner_->start_send(tag, bytes);
}

Expected<double> parse_rate(std::string_view text) {
  std::string t(text);
  for (char& c : t)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  double scale = 0;
  for (const auto& [unit, s] :
       {std::pair{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1.0}}) {
    if (t.size() > std::strlen(unit) && t.ends_with(unit)) {
      scale = s;
      t.resize(t.size() - std::strlen(unit));
      break;
    }
  }
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (scale == 0 || t.empty() || end != t.c_str() + t.size() || !(v > 0) || v * scale > 1e15) {
    return Status(Errc::invalid_argument,
                  fmt::format("rate '{}': a positive number with bit, kbit, mbit or gbit", text));
  }
  return v * scale;
}

}  // namespace kvstream::transport
