// kv_stream_bw and kv_lat: a real stream session (session.hpp) between a sender serving
// encoded chunks from memory and a receiver that decodes each as it lands, measured as perf.hpp
// measures raw UCX, next to tag_bw measured over the same endpoints, in the same direction, at
// the stream's mean chunk size, in the same run: the efficiency of the whole path.
#pragma once

#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "control.hpp"
#include "data_link.hpp"
#include "perf.hpp"
#include "session.hpp"
#include "source.hpp"

namespace kvstream::transport {

// The context a perf server serves.
inline constexpr const char* kPerfContext = "perf";

// Chunk tokens for chunks of about `size` bytes at `level`, from encoding the first tokens of
// `kv` (at least 1, at most all its tokens).
Expected<std::uint32_t> chunk_tokens_for(const KvView& kv, std::uint64_t size, std::uint8_t level);

// When each chunk of a run landed and was ready, in ms from the first request, and what its
// decode cost once it had landed (a sink's report: host staging plus device time, without any
// wait for a free decoder). Host decode decodes a chunk as it lands, so only its readiness is
// known there (landed_ms and decode_ms NaN).
struct ChunkTimes {
  double landed_ms = 0, ready_ms = 0, decode_ms = 0;
};

// What a timeline says about overlap: the run's transfer (to the last landing) and load (to the
// last readiness) times, the tail between them, and the median and largest decode of one chunk.
// Overlap works when the tail is no more than one chunk's decode (the largest). NaN where the
// landings or decodes are not known.
struct TimelineSummary {
  double transfer_ms = 0, load_ms = 0, tail_ms = 0, median_decode_ms = 0, max_decode_ms = 0;
  bool overlaps() const { return tail_ms <= max_decode_ms; }
};
TimelineSummary summarize_timeline(std::span<const ChunkTimes> timeline);

struct KvPerfResult {
  PerfResult kv;        // the timed chunks, landed and decoded (bytes: as sent)
  PerfResult baseline;  // tag_bw over the same endpoints, sender to receiver, mean chunk size
  std::vector<ChunkTimes> timeline;  // every chunk of the stream, warm-up included
  double efficiency() const {
    return baseline.bandwidth_mib_s > 0 ? kv.bandwidth_mib_s / baseline.bandwidth_mib_s : 0;
  }
};

// The sender: announces the baseline (a perf_request frame: tag_bw at the mean size of the
// first p.chunks full chunks of kPerfContext at p.level), sends it, then serves the stream session
// until the receiver closes it.
Status serve_kv_perf(ControlChannel& control, UcxDataLink& link, ChunkSource& source,
                     const PerfParams& p, Clock::time_point deadline);

// Where the receiver's chunks go instead of the CPU decoder (the CLI's `-m cuda`: GPU decoders
// writing into device memory). A sink may decode asynchronously: a chunk counts as arrived when
// the sink says it is ready, and the run ends once finish() has reported every chunk.
class KvPerfSink {
 public:
  // Want `want` is decoded; its decode cost `decode_ms` once landed (NaN: not measured).
  using Ready = std::function<void(std::size_t want, double decode_ms)>;
  virtual ~KvPerfSink() = default;
  // Once the stream is open: the context's shape.
  virtual Status open(const KvLayout& context) = 0;
  // Takes want `want`'s chunk (its memory is the receiver's again once this returns); calls
  // ready for every want decoded by now, this one or earlier ones.
  virtual Status take(std::size_t want, std::span<const std::byte> chunk, const Ready& ready) = 0;
  // After the last take: reports every want not reported yet, once decoded.
  virtual Status finish(const Ready& ready) = 0;
};

struct KvPerfOptions {
  bool decode = true;            // false: each chunk's header is checked, nothing decoded
  bool progress_thread = false;  // StreamReceiver::FetchOptions::progress_thread
  unsigned decode_threads = 1;   // StreamReceiver::FetchOptions::decode_threads
  KvPerfSink* sink = nullptr;    // not null: takes the chunks (when decode is true)
  SlotAllocator slots;           // the receive slots' memory (empty: the heap)
};

// The receiver: takes the baseline, opens kPerfContext and fetches p.warmup + p.iterations
// chunks cycling over its first p.chunks full chunks at p.level, p.window in flight (kv_lat: one),
// into a cache of the context's shape. Timed from the last warm-up chunk's landing.
Expected<KvPerfResult> run_kv_perf(ControlChannel& control, UcxDataLink& link, const PerfParams& p,
                                   const KvPerfOptions& options, Clock::time_point deadline);

}  // namespace kvstream::transport
