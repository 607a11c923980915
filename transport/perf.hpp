// The measurement core of `kvstream perf` (a library behind a thin CLI, as UCX's libperf sits
// behind ucx_perftest): raw UCX bandwidth tests between two connected endpoints, reported the
// way ucx_perftest reports them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ucx.hpp"

namespace kvstream::transport {

struct PerfParams {
  std::string test = "tag_bw";      // the tests this build runs: tag_bw
  std::uint64_t size = 8;           // bytes per message
  std::uint64_t iterations = 1000;  // timed messages
  std::uint64_t warmup = 100;       // untimed messages first
  std::uint32_t window = 32;        // sends in flight at most
};

// Checks a test name and the numbers (size >= 1, iterations >= 1, window >= 1).
Status validate(const PerfParams& p);

// A perf_request frame's payload: the test name (u8 length, then its bytes), size, iterations,
// warmup (u64 each) and window (u32). Decoding checks the lengths and validate().
std::vector<std::byte> encode_perf_request(const PerfParams& p);
Expected<PerfParams> decode_perf_request(std::span<const std::byte> payload);

struct PerfResult {
  std::uint64_t iterations = 0;
  double overhead_p50_us = 0;  // median time between two sends being posted
  double overhead_avg_us = 0;  // elapsed / iterations
  double bandwidth_mib_s = 0;  // MB/s as ucx_perftest means it: 2^20 bytes per second
  double message_rate = 0;     // messages per second
  double seconds = 0;          // first timed send posted -> the receiver's acknowledgement
};

// The sending side of tag_bw: warmup + iterations tagged sends of `size` bytes, at most
// `window` in flight, then waits for the receiver's acknowledgement (so the time covers delivery).
Expected<PerfResult> run_tag_bw_sender(UcxEndpoint& to_receiver, const PerfParams& p,
                                       Clock::time_point deadline);
// The receiving side: takes every message, then acknowledges on `to_sender`.
Status run_tag_bw_receiver(UcxEndpoint& to_sender, const PerfParams& p, Clock::time_point deadline);

// ucx_perftest's table: the header lines, and the "Final:" row of a result.
std::string perf_table_header(const PerfParams& p);
std::string perf_table_final(const PerfResult& r);
// `-v`: one CSV line (iterations, overhead p50/avg/overall us, bandwidth avg/overall MB/s,
// message rate avg/overall), as ucx_perftest -v prints it.
std::string perf_csv(const PerfResult& r);

}  // namespace kvstream::transport
