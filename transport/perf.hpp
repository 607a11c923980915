// The measurement core of `kvstream perf` (a library behind a thin CLI, as UCX's libperf sits
// behind ucx_perftest): raw UCX bandwidth tests between two connected endpoints (tag_bw,
// am_bw), reported the way ucx_perftest reports them. The KV streaming tests are kv_perf.hpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ucx.hpp"

namespace kvstream::transport {

struct PerfParams {
  std::string test = "tag_bw";      // tag_bw, am_bw, kv_stream_bw or kv_lat
  std::uint64_t size = 8;           // bytes per message (kv tests: per chunk, about)
  std::uint64_t iterations = 1000;  // timed messages
  std::uint64_t warmup = 100;       // untimed messages first
  std::uint32_t window = 32;        // messages in flight at most (kv_lat: 1)
  std::uint8_t level = 0;           // kv tests: the codec level of the chunks
  // kv tests: the distinct chunks the stream cycles over. One is ucx_perftest's one buffer per
  // side (the receiver still needs a slot per chunk in flight), so that the efficiency measures
  // the protocol; a whole cache's worth measures memory as well.
  std::uint32_t chunks = 1;
};

// Checks a test name and the numbers (size >= 1, iterations >= 1, window >= 1, level <= 15,
// 1 <= chunks <= 4096).
Status validate(const PerfParams& p);
// kv_stream_bw and kv_lat: a stream session with a receiver that decodes, not raw UCX.
bool is_kv_test(const std::string& test);

// A perf_request frame's payload: the test name (u8 length, then its bytes), size, iterations,
// warmup (u64 each), window (u32), level (u8) and chunks (u32). Decoding checks the lengths and
// validate().
std::vector<std::byte> encode_perf_request(const PerfParams& p);
Expected<PerfParams> decode_perf_request(std::span<const std::byte> payload);

struct PerfResult {
  std::uint64_t iterations = 0;
  double overhead_p50_us = 0;  // median time between two timed events (posts, or landings)
  double overhead_avg_us = 0;  // elapsed / iterations
  double bandwidth_mib_s = 0;  // MB/s as ucx_perftest means it: 2^20 bytes per second
  double message_rate = 0;     // messages per second
  double seconds = 0;          // the timed part
  double mean_size = 0;        // bytes per timed message
};

// The figures of timed events (one time each, the median gap between consecutive ones being the
// p50) moving `bytes` in all, timed from `start` to `end`, or to the last event.
PerfResult summarize(Clock::time_point start, std::span<const Clock::time_point> events,
                     double bytes, Clock::time_point end);
PerfResult summarize(Clock::time_point start, std::span<const Clock::time_point> events,
                     double bytes);

// A receiver's clock: timed from the arrival of the last warm-up message (from its making, with
// no warm-up) to the last message's; messages after the warm-up count with their bytes.
class Arrivals {
 public:
  explicit Arrivals(std::uint64_t warmup) : warmup_(warmup) {}
  void arrived(double bytes);
  std::uint64_t taken() const noexcept { return taken_; }
  PerfResult result() const;

 private:
  std::uint64_t warmup_, taken_ = 0;
  Clock::time_point start_ = Clock::now();
  std::vector<Clock::time_point> timed_;
  double bytes_ = 0;
};

// tag_bw, sending side: warmup + iterations tagged sends of `size` bytes, at most `window` in
// flight, then waits for the receiver's acknowledgement (so the time covers delivery). Timed
// from the first timed send posted.
Expected<PerfResult> run_tag_bw_sender(UcxEndpoint& to_receiver, const PerfParams& p,
                                       Clock::time_point deadline);
// The receiving side: keeps `window` receives posted (all into one buffer, as ucx_perftest),
// then acknowledges on `to_sender`. Timed from the last warm-up message's arrival to the last
// message's (from the first post when there is no warm-up).
Expected<PerfResult> run_tag_bw_receiver(UcxEndpoint& to_sender, const PerfParams& p,
                                         Clock::time_point deadline);

// am_bw: the same over active messages (ucp_am_send_nbx; UCX picks eager or rendezvous by
// size). The receiver's handler copies eager data into its buffer, and takes rendezvous data
// with ucp_am_recv_data_nbx: no receive is posted ahead.
Expected<PerfResult> run_am_bw_sender(UcxEndpoint& to_receiver, const PerfParams& p,
                                      Clock::time_point deadline);
Expected<PerfResult> run_am_bw_receiver(UcxEndpoint& to_sender, const PerfParams& p,
                                        Clock::time_point deadline);

// ucx_perftest's table: the header lines, and the "Final:" row of a result. Latency tests
// (kv_lat) head their first columns "latency" instead of "overhead"; `gigabytes` heads the
// bandwidth GB/s (the caller scales the figures).
std::string perf_table_header(const PerfParams& p, bool gigabytes = false);
std::string perf_table_final(const PerfResult& r);
// `-v`: one CSV line (iterations, overhead p50/avg/overall us, bandwidth avg/overall MB/s,
// message rate avg/overall), as ucx_perftest -v prints it.
std::string perf_csv(const PerfResult& r);

}  // namespace kvstream::transport
