// tag_bw between two endpoints, and ucx_perftest's output layout.
#include "perf.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <deque>
#include <span>
#include <vector>

#include "byte_io.hpp"

namespace kvstream::transport {

namespace {

constexpr ucp_tag_t kDataTag = 0x6b76730000000001ull, kAckTag = 0x6b76730000000002ull;

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

}  // namespace

Status validate(const PerfParams& p) {
  if (p.test != "tag_bw") {
    return Status(Errc::invalid_argument, fmt::format("test '{}': this build runs tag_bw", p.test));
  }
  if (p.size == 0 || p.iterations == 0 || p.window == 0) {
    return Status(Errc::invalid_argument, "size, iterations and window must be at least 1");
  }
  return Status::ok();
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
  return out;
}

Expected<PerfParams> decode_perf_request(std::span<const std::byte> payload) {
  codec::ByteReader r(payload);
  PerfParams p;
  std::uint8_t length = 0;
  std::span<const std::byte> name;
  if (!r.get(length) || !r.get_bytes(length, name) || !r.get(p.size) || !r.get(p.iterations) ||
      !r.get(p.warmup) || !r.get(p.window) || r.remaining() != 0) {
    return Status(Errc::protocol_error, "malformed perf_request frame");
  }
  p.test.assign(reinterpret_cast<const char*>(name.data()), name.size());
  KVS_RETURN_IF_ERROR(validate(p));
  return p;
}

Expected<PerfResult> run_tag_bw_sender(UcxEndpoint& ep, const PerfParams& p,
                                       Clock::time_point deadline) {
  KVS_RETURN_IF_ERROR(validate(p));
  UcxWorker& w = ep.worker();
  std::vector<std::byte> buffer(p.size, std::byte{0x5a});
  KVS_ASSIGN_OR_RETURN(auto region, MemoryRegion::map(w.context(), buffer.data(), buffer.size()));
  std::deque<ucs_status_ptr_t> inflight;
  std::vector<double> gaps;
  gaps.reserve(p.iterations);
  ucp_request_param_t param{};
  Clock::time_point start{}, last{};
  Status failed = Status::ok();
  for (std::uint64_t i = 0; i < p.warmup + p.iterations && failed.is_ok(); ++i) {
    if (inflight.size() >= p.window) failed = retire(w, inflight, deadline, "tag_bw send");
    const auto now = Clock::now();
    if (i == p.warmup) {
      start = now;
    } else if (i > p.warmup) {
      gaps.push_back(std::chrono::duration<double, std::micro>(now - last).count());
    }
    last = now;
    ucs_status_ptr_t r = ucp_tag_send_nbx(ep.get(), buffer.data(), buffer.size(), kDataTag, &param);
    if (UCS_PTR_IS_ERR(r))
      failed = ucx_status(UCS_PTR_STATUS(r), "ucp_tag_send_nbx");
    else
      inflight.push_back(r);
  }
  const Status drained = drain(w, inflight, deadline, "tag_bw send");
  KVS_RETURN_IF_ERROR(failed);
  KVS_RETURN_IF_ERROR(drained);
  if (!ep.failure().is_ok()) return ep.failure();
  std::uint64_t ack = 0;
  KVS_RETURN_IF_ERROR(
      w.wait(ucp_tag_recv_nbx(w.get(), &ack, sizeof ack, kAckTag, ~ucp_tag_t{0}, &param), deadline,
             "tag_bw acknowledgement"));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (ack != p.warmup + p.iterations) {
    return Status(Errc::protocol_error,
                  fmt::format("receiver took {} messages of {}", ack, p.warmup + p.iterations));
  }
  PerfResult res;
  res.iterations = p.iterations;
  res.seconds = seconds;
  if (!gaps.empty()) {
    auto mid = gaps.begin() + static_cast<std::ptrdiff_t>(gaps.size() / 2);
    std::nth_element(gaps.begin(), mid, gaps.end());
    res.overhead_p50_us = *mid;
  }
  res.overhead_avg_us = seconds * 1e6 / static_cast<double>(p.iterations);
  res.bandwidth_mib_s =
      static_cast<double>(p.size) * static_cast<double>(p.iterations) / seconds / (1 << 20);
  res.message_rate = static_cast<double>(p.iterations) / seconds;
  return res;
}

Status run_tag_bw_receiver(UcxEndpoint& ep, const PerfParams& p, Clock::time_point deadline) {
  KVS_RETURN_IF_ERROR(validate(p));
  UcxWorker& w = ep.worker();
  // Every receive lands in the same buffer, as in ucx_perftest: the test measures transfer.
  std::vector<std::byte> buffer(p.size);
  KVS_ASSIGN_OR_RETURN(auto region, MemoryRegion::map(w.context(), buffer.data(), buffer.size()));
  std::deque<ucs_status_ptr_t> posted;
  ucp_request_param_t param{};
  Status failed = Status::ok();
  std::uint64_t taken = 0;
  for (std::uint64_t i = 0; i < p.warmup + p.iterations && failed.is_ok(); ++i) {
    if (posted.size() >= p.window) {
      failed = retire(w, posted, deadline, "tag_bw receive");
      taken += failed.is_ok() ? 1 : 0;
    }
    ucs_status_ptr_t r =
        ucp_tag_recv_nbx(w.get(), buffer.data(), buffer.size(), kDataTag, ~ucp_tag_t{0}, &param);
    if (UCS_PTR_IS_ERR(r))
      failed = ucx_status(UCS_PTR_STATUS(r), "ucp_tag_recv_nbx");
    else
      posted.push_back(r);
  }
  while (!posted.empty()) {
    const Status s = retire(w, posted, deadline, "tag_bw receive");
    if (s.is_ok())
      ++taken;
    else if (failed.is_ok())
      failed = s;
  }
  KVS_RETURN_IF_ERROR(failed);
  return w.wait(ucp_tag_send_nbx(ep.get(), &taken, sizeof taken, kAckTag, &param), deadline,
                "tag_bw acknowledgement");
}

std::string perf_table_header(const PerfParams& p) {
  const std::string rule =
      "+--------------+--------------+------------------------------+---------------------+"
      "-----------------------+\n";
  return rule +
         fmt::format("| {:<104} |\n| {:<104} |\n| {:<104} |\n", "API:          protocol layer",
                     "Test:         tag match bandwidth (" + p.test + ")",
                     fmt::format("Message size: {}", p.size)) +
         rule +
         "|              |              |       overhead (usec)        |   bandwidth (MB/s)  |"
         "  message rate (msg/s) |\n" +
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
