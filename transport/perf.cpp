// tag_bw and am_bw between two endpoints, and ucx_perftest's output layout.
#include "perf.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <span>
#include <vector>

#include "byte_io.hpp"

namespace kvstream::transport {

namespace {

constexpr ucp_tag_t kDataTag = 0x6b76730000000001ull, kAckTag = 0x6b76730000000002ull;
constexpr unsigned kAmId = 0x6b;

constexpr std::string_view kTests[] = {"tag_bw", "am_bw", "kv_stream_bw", "kv_lat"};

// Waits for the oldest request of `inflight` (nullptr entries completed in place).
Status retire(UcxWorker& w, std::deque<ucs_status_ptr_t>& inflight, Clock::time_point deadline,
              const char* what) {
  const ucs_status_ptr_t r = inflight.front();
  inflight.pop_front();
  return w.wait(r, deadline, what, UcxWorker::Poll::busy);
}

Status drain(UcxWorker& w, std::deque<ucs_status_ptr_t>& inflight, Clock::time_point deadline,
             const char* what) {
  Status first = Status::ok();
  while (!inflight.empty()) {
    Status s = retire(w, inflight, deadline, what);
    if (first.is_ok()) first = s;
  }
  return first;
}

// The sending side of a bandwidth test: `post` sends one message; at most p.window in flight;
// then the receiver's acknowledgement (its count of messages taken). Timed from the first timed
// post to the acknowledgement.
template <typename Post>
Expected<PerfResult> run_sender(UcxEndpoint& ep, const PerfParams& p, Clock::time_point deadline,
                                const char* what, Post post) {
  KVS_RETURN_IF_ERROR(validate(p));
  UcxWorker& w = ep.worker();
  std::vector<std::byte> buffer(p.size, std::byte{0x5a});
  KVS_ASSIGN_OR_RETURN(auto region, MemoryRegion::map(w.context(), buffer.data(), buffer.size()));
  std::deque<ucs_status_ptr_t> inflight;
  std::vector<Clock::time_point> posts;
  posts.reserve(p.iterations);
  Clock::time_point start{};
  Status failed = Status::ok();
  for (std::uint64_t i = 0; i < p.warmup + p.iterations && failed.is_ok(); ++i) {
    if (inflight.size() >= p.window) failed = retire(w, inflight, deadline, what);
    const auto now = Clock::now();
    if (i == p.warmup) start = now;
    if (i >= p.warmup) posts.push_back(now);
    ucs_status_ptr_t r = post(buffer);
    if (UCS_PTR_IS_ERR(r))
      failed = ucx_status(UCS_PTR_STATUS(r), what);
    else
      inflight.push_back(r);
  }
  const Status drained = drain(w, inflight, deadline, what);
  KVS_RETURN_IF_ERROR(failed);
  KVS_RETURN_IF_ERROR(drained);
  if (!ep.failure().is_ok()) return ep.failure();
  std::uint64_t ack = 0;
  ucp_request_param_t param{};
  KVS_RETURN_IF_ERROR(
      w.wait(ucp_tag_recv_nbx(w.get(), &ack, sizeof ack, kAckTag, ~ucp_tag_t{0}, &param), deadline,
             "acknowledgement"));
  if (ack != p.warmup + p.iterations) {
    return Status(Errc::protocol_error,
                  fmt::format("receiver took {} messages of {}", ack, p.warmup + p.iterations));
  }
  // The gaps between posts give the p50; the acknowledgement ends the timed part.
  return summarize(start, posts, double(p.size) * double(p.iterations), Clock::now());
}

Status acknowledge(UcxEndpoint& ep, std::uint64_t taken, Clock::time_point deadline) {
  ucp_request_param_t param{};
  return ep.worker().wait(ucp_tag_send_nbx(ep.get(), &taken, sizeof taken, kAckTag, &param),
                          deadline, "acknowledgement");
}

}  // namespace

Status validate(const PerfParams& p) {
  if (std::find(std::begin(kTests), std::end(kTests), p.test) == std::end(kTests)) {
    return Status(Errc::invalid_argument,
                  fmt::format("test '{}': tag_bw, am_bw, kv_stream_bw or kv_lat", p.test));
  }
  if (p.size == 0 || p.iterations == 0 || p.window == 0) {
    return Status(Errc::invalid_argument, "size, iterations and window must be at least 1");
  }
  if (p.level > 15) return Status(Errc::invalid_argument, "level: 0..15");
  if (p.chunks == 0 || p.chunks > 4096) return Status(Errc::invalid_argument, "chunks: 1..4096");
  return Status::ok();
}

bool is_kv_test(const std::string& test) {
  return test == "kv_stream_bw" || test == "kv_lat";
}

std::vector<std::byte> encode_perf_request(const PerfParams& p) {
  std::vector<std::byte> out;
  codec::ByteWriter w(out);
  w.put(static_cast<std::uint8_t>(p.test.size()));
  w.put_bytes(std::as_bytes(std::span(p.test)));
  w.put(p.size);
  w.put(p.iterations);
  w.put(p.warmup);
  w.put(p.window);
  w.put(p.level);
  w.put(p.chunks);
  return out;
}

Expected<PerfParams> decode_perf_request(std::span<const std::byte> payload) {
  codec::ByteReader r(payload);
  PerfParams p;
  std::uint8_t length = 0;
  std::span<const std::byte> name;
  if (!r.get(length) || !r.get_bytes(length, name) || !r.get(p.size) || !r.get(p.iterations) ||
      !r.get(p.warmup) || !r.get(p.window) || !r.get(p.level) || !r.get(p.chunks) ||
      r.remaining() != 0) {
    return Status(Errc::protocol_error, "malformed perf_request frame");
  }
  p.test.assign(reinterpret_cast<const char*>(name.data()), name.size());
  KVS_RETURN_IF_ERROR(validate(p));
  return p;
}

void Arrivals::arrived(double bytes) {
  const auto now = Clock::now();
  if (++taken_ == warmup_) start_ = now;
  if (taken_ > warmup_) {
    timed_.push_back(now);
    bytes_ += bytes;
  }
}

PerfResult Arrivals::result() const {
  return summarize(start_, timed_, bytes_);
}

PerfResult summarize(Clock::time_point start, std::span<const Clock::time_point> events,
                     double bytes) {
  return summarize(start, events, bytes, events.empty() ? start : events.back());
}

PerfResult summarize(Clock::time_point start, std::span<const Clock::time_point> events,
                     double bytes, Clock::time_point end) {
  PerfResult r;
  r.iterations = events.size();
  if (events.empty()) return r;
  std::vector<double> gaps;
  for (std::size_t i = 1; i < events.size(); ++i)
    gaps.push_back(std::chrono::duration<double, std::micro>(events[i] - events[i - 1]).count());
  if (!gaps.empty()) {
    auto mid = gaps.begin() + static_cast<std::ptrdiff_t>(gaps.size() / 2);
    std::nth_element(gaps.begin(), mid, gaps.end());
    r.overhead_p50_us = *mid;
  }
  r.seconds = std::max(std::chrono::duration<double>(end - start).count(), 1e-9);
  const double n = static_cast<double>(events.size());
  r.overhead_avg_us = r.seconds * 1e6 / n;
  r.bandwidth_mib_s = bytes / r.seconds / (1 << 20);
  r.message_rate = n / r.seconds;
  r.mean_size = bytes / n;
  return r;
}

Expected<PerfResult> run_tag_bw_sender(UcxEndpoint& ep, const PerfParams& p,
                                       Clock::time_point deadline) {
  return run_sender(ep, p, deadline, "tag_bw send", [&](std::vector<std::byte>& buffer) {
    ucp_request_param_t param{};
    return ucp_tag_send_nbx(ep.get(), buffer.data(), buffer.size(), kDataTag, &param);
  });
}

Expected<PerfResult> run_tag_bw_receiver(UcxEndpoint& ep, const PerfParams& p,
                                         Clock::time_point deadline) {
  KVS_RETURN_IF_ERROR(validate(p));
  UcxWorker& w = ep.worker();
  // Every receive lands in the same buffer, as in ucx_perftest: the test measures transfer.
  std::vector<std::byte> buffer(p.size);
  KVS_ASSIGN_OR_RETURN(auto region, MemoryRegion::map(w.context(), buffer.data(), buffer.size()));
  std::deque<ucs_status_ptr_t> posted;
  ucp_request_param_t param{};
  Status failed = Status::ok();
  Arrivals arrivals(p.warmup);
  const auto take_oldest = [&] {
    const Status s = retire(w, posted, deadline, "tag_bw receive");
    if (s.is_ok())
      arrivals.arrived(double(p.size));
    else if (failed.is_ok())
      failed = s;
  };
  for (std::uint64_t i = 0; i < p.warmup + p.iterations && failed.is_ok(); ++i) {
    if (posted.size() >= p.window) take_oldest();
    ucs_status_ptr_t r =
        ucp_tag_recv_nbx(w.get(), buffer.data(), buffer.size(), kDataTag, ~ucp_tag_t{0}, &param);
    if (UCS_PTR_IS_ERR(r))
      failed = ucx_status(UCS_PTR_STATUS(r), "ucp_tag_recv_nbx");
    else
      posted.push_back(r);
  }
  while (!posted.empty())
    take_oldest();
  KVS_RETURN_IF_ERROR(failed);
  KVS_RETURN_IF_ERROR(acknowledge(ep, arrivals.taken(), deadline));
  return arrivals.result();
}

Expected<PerfResult> run_am_bw_sender(UcxEndpoint& ep, const PerfParams& p,
                                      Clock::time_point deadline) {
  return run_sender(ep, p, deadline, "am_bw send", [&](std::vector<std::byte>& buffer) {
    ucp_request_param_t param{};
    return ucp_am_send_nbx(ep.get(), kAmId, nullptr, 0, buffer.data(), buffer.size(), &param);
  });
}

namespace {

// The receiver's active-message handler and the state it counts into.
struct AmReceiver {
  AmReceiver(UcxWorker* w, std::vector<std::byte>* b, Arrivals* a)
      : worker(w), buffer(b), arrivals(a) {}
  UcxWorker* worker;
  std::vector<std::byte>* buffer;
  Arrivals* arrivals;
  Status failed = Status::ok();
  std::uint64_t pending = 0;  // rendezvous receives not yet complete

  static void landed(void* request, ucs_status_t status, std::size_t length, void* self_ptr) {
    auto* self = static_cast<AmReceiver*>(self_ptr);
    --self->pending;
    if (status == UCS_OK)
      self->arrivals->arrived(double(length));
    else if (self->failed.is_ok())
      self->failed = ucx_status(status, "ucp_am_recv_data_nbx");
    ucp_request_free(request);
  }

  static ucs_status_t on_message(void* self_ptr, const void*, std::size_t, void* data,
                                 std::size_t length, const ucp_am_recv_param_t* param) {
    auto* self = static_cast<AmReceiver*>(self_ptr);
    if (length > self->buffer->size()) {
      if (self->failed.is_ok()) {
        self->failed = Status(Errc::protocol_error,
                              fmt::format("an active message of {} bytes for a {}-byte buffer",
                                          length, self->buffer->size()));
      }
      return UCS_OK;
    }
    if ((param->recv_attr & UCP_AM_RECV_ATTR_FLAG_RNDV) == 0) {
      std::memcpy(self->buffer->data(), data, length);  // eager: the data is UCX's until we return
      self->arrivals->arrived(double(length));
      return UCS_OK;
    }
    ucp_request_param_t rp{};
    rp.op_attr_mask = UCP_OP_ATTR_FIELD_CALLBACK | UCP_OP_ATTR_FIELD_USER_DATA;
    rp.cb.recv_am = &AmReceiver::landed;
    rp.user_data = self;
    const ucs_status_ptr_t r =
        ucp_am_recv_data_nbx(self->worker->get(), data, self->buffer->data(), length, &rp);
    if (r == nullptr) {
      self->arrivals->arrived(double(length));
    } else if (UCS_PTR_IS_ERR(r)) {
      if (self->failed.is_ok())
        self->failed = ucx_status(UCS_PTR_STATUS(r), "ucp_am_recv_data_nbx");
    } else {
      ++self->pending;
    }
    return UCS_OK;
  }
};

Status set_am_handler(UcxWorker& w, AmReceiver* receiver) {
  ucp_am_handler_param_t h{};
  h.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                 UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
  h.id = kAmId;
  h.flags = UCP_AM_FLAG_WHOLE_MSG;
  h.cb = receiver != nullptr ? &AmReceiver::on_message : nullptr;
  h.arg = receiver;
  return ucx_status(ucp_worker_set_am_recv_handler(w.get(), &h), "ucp_worker_set_am_recv_handler");
}

}  // namespace

Expected<PerfResult> run_am_bw_receiver(UcxEndpoint& ep, const PerfParams& p,
                                        Clock::time_point deadline) {
  KVS_RETURN_IF_ERROR(validate(p));
  UcxWorker& w = ep.worker();
  // Heap-held: a rendezvous receive still pending after a failure writes into the buffer and
  // calls back into the receiver, so those are let go rather than freed under it.
  auto buffer = std::make_unique<std::vector<std::byte>>(p.size);
  KVS_ASSIGN_OR_RETURN(auto region, MemoryRegion::map(w.context(), buffer->data(), buffer->size()));
  auto arrivals = std::make_unique<Arrivals>(p.warmup);
  auto receiver = std::make_unique<AmReceiver>(&w, buffer.get(), arrivals.get());
  KVS_RETURN_IF_ERROR(set_am_handler(w, receiver.get()));
  const std::uint64_t total = p.warmup + p.iterations;
  Status s = Status::ok();
  while ((arrivals->taken() < total || receiver->pending > 0) && receiver->failed.is_ok()) {
    if (w.progress()) continue;
    if (!ep.failure().is_ok()) {
      s = ep.failure();
      break;
    }
    if (Clock::now() >= deadline) {
      s = Status(Errc::timeout, fmt::format("am_bw receive: {} of {} messages by the deadline",
                                            arrivals->taken(), total));
      break;
    }
  }
  (void)set_am_handler(w, nullptr);
  if (receiver->pending > 0) {
    (void)region.release();
    (void)buffer.release();
    (void)arrivals.release();
    (void)receiver.release();
    return s.is_ok() ? Status(Errc::internal, "am_bw: receives left pending") : s;
  }
  KVS_RETURN_IF_ERROR(s);
  KVS_RETURN_IF_ERROR(receiver->failed);
  KVS_RETURN_IF_ERROR(acknowledge(ep, arrivals->taken(), deadline));
  return arrivals->result();
}

std::string perf_table_header(const PerfParams& p, bool gigabytes) {
  const bool latency = p.test == "kv_lat";
  const std::string what = p.test == "tag_bw"         ? "tag match bandwidth"
                           : p.test == "am_bw"        ? "active message bandwidth"
                           : p.test == "kv_stream_bw" ? "KV chunk streaming bandwidth, decoded"
                                                      : "KV chunk latency, decoded";
  const std::string api = is_kv_test(p.test) ? "kvstream session over UCP" : "protocol layer";
  const std::string rule =
      "+--------------+--------------+------------------------------+---------------------+"
      "-----------------------+\n";
  return rule +
         fmt::format("| {:<104} |\n| {:<104} |\n| {:<104} |\n", "API:          " + api,
                     "Test:         " + what + " (" + p.test + ")",
                     fmt::format("Message size: {}", p.size)) +
         rule +
         fmt::format(
             "|              |              |       {} (usec)        |   bandwidth ({}/s)  |"
             "  message rate (msg/s) |\n",
             latency ? "latency " : "overhead", gigabytes ? "GB" : "MB") +
         "+--------------+--------------+----------+---------+---------+----------+----------+"
         "-----------+-----------+\n" +
         "|    Stage     | # iterations | 50.0%ile | average | overall |  average |  overall |"
         "  average  |  overall  |\n" +
         "+--------------+--------------+----------+---------+---------+----------+----------+"
         "-----------+-----------+\n";
}

std::string perf_table_final(const PerfResult& r) {
  // One timed stage: the averages and the overall figures coincide.
  return fmt::format(
      "Final:{:>22}{:>11.3f}{:>10.3f}{:>10.3f}{:>12.2f}{:>11.2f}{:>12.0f}{:>12.0f}\n", r.iterations,
      r.overhead_p50_us, r.overhead_avg_us, r.overhead_avg_us, r.bandwidth_mib_s, r.bandwidth_mib_s,
      r.message_rate, r.message_rate, r.message_rate);
}

std::string perf_csv(const PerfResult& r) {
  return fmt::format("{},{:.3f},{:.3f},{:.3f},{:.2f},{:.2f},{:.0f},{:.0f}\n", r.iterations,
                     r.overhead_p50_us, r.overhead_avg_us, r.overhead_avg_us, r.bandwidth_mib_s,
                     r.bandwidth_mib_s, r.message_rate, r.message_rate);
}

}  // namespace kvstream::transport
