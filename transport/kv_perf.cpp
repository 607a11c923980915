// The KV streaming perf tests over a stream session.
#include "kv_perf.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "session.hpp"

namespace kvstream::transport {

namespace {

constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

// The chunks a kv test cycles over: the first p.chunks full ones (or the one, partial, chunk).
std::uint32_t cycled_chunks(const StreamInfo& info, const PerfParams& p) {
  return std::clamp(info.layout.tokens / info.chunk_tokens, 1u, p.chunks);
}

}  // namespace

Expected<std::uint32_t> chunk_tokens_for(const KvView& kv, std::uint64_t size, std::uint8_t level) {
  const std::uint32_t tokens = kv.layout().tokens;
  if (tokens == 0) return Status(Errc::invalid_argument, "a perf context needs tokens");
  EncodeOptions o;
  o.level = level;
  std::vector<std::byte> chunk;
  // A first guess from a few tokens, then one correction from a chunk of the guessed length
  // (a chunk's tables make its size per token fall with its length).
  std::uint32_t t = std::min(tokens, 16u);
  for (int round = 0; round < 2; ++round) {
    KVS_RETURN_IF_ERROR(encode_chunk(kv, 0, t, o, chunk));
    const double per_token = double(chunk.size()) / t;
    t = std::clamp(static_cast<std::uint32_t>(std::llround(double(size) / per_token)), 1u, tokens);
  }
  return t;
}

Status serve_kv_perf(ControlChannel& control, UcxDataLink& link, ChunkSource& source,
                     const PerfParams& p, Clock::time_point deadline) {
  KVS_RETURN_IF_ERROR(validate(p));
  KVS_ASSIGN_OR_RETURN(auto stream, source.open(kPerfContext));
  const StreamInfo& info = stream->info();
  if (p.level >= info.levels) {
    const Status s(Errc::invalid_argument, fmt::format("level {}: the perf stream has levels 0..{}",
                                                       p.level, info.levels - 1));
    control.fail(s);
    return s;
  }
  const std::uint32_t cycled = cycled_chunks(info, p);
  double bytes = 0;
  for (std::uint32_t c = 0; c < cycled; ++c)
    bytes += info.size(c, p.level);
  PerfParams baseline = p;
  baseline.test = "tag_bw";
  baseline.size = static_cast<std::uint64_t>(std::llround(bytes / cycled));
  KVS_RETURN_IF_ERROR(
      control.send(FrameType::perf_request, encode_perf_request(baseline), deadline));
  KVS_RETURN_IF_ERROR(run_tag_bw_sender(link.endpoint(), baseline, deadline).status());
  const auto idle = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return serve_session(control, link, source, std::max(idle, std::chrono::milliseconds(1)));
}

TimelineSummary summarize_timeline(std::span<const ChunkTimes> timeline) {
  TimelineSummary t{kNan, 0, kNan, kNan, kNan};
  std::vector<double> decode;
  for (const ChunkTimes& c : timeline) {
    t.load_ms = std::max(t.load_ms, c.ready_ms);
    if (!std::isnan(c.landed_ms)) {
      t.transfer_ms =
          std::isnan(t.transfer_ms) ? c.landed_ms : std::max(t.transfer_ms, c.landed_ms);
    }
    if (!std::isnan(c.decode_ms)) decode.push_back(c.decode_ms);
  }
  if (!std::isnan(t.transfer_ms)) t.tail_ms = t.load_ms - t.transfer_ms;
  if (!decode.empty()) {
    t.max_decode_ms = *std::max_element(decode.begin(), decode.end());
    std::nth_element(decode.begin(), decode.begin() + decode.size() / 2, decode.end());
    t.median_decode_ms = decode[decode.size() / 2];
  }
  return t;
}

Expected<KvPerfResult> run_kv_perf(ControlChannel& control, UcxDataLink& link, const PerfParams& p,
                                   const KvPerfOptions& options, Clock::time_point deadline) {
  KVS_RETURN_IF_ERROR(validate(p));
  KvPerfResult result;
  KVS_ASSIGN_OR_RETURN(const Frame announced, control.receive(deadline));
  if (announced.type == FrameType::error) return status_from_error_payload(announced.payload);
  if (announced.type != FrameType::perf_request) {
    const Status s(Errc::protocol_error, fmt::format("expected the baseline's perf_request, got {}",
                                                     frame_type_name(announced.type)));
    control.fail(s);
    return s;
  }
  KVS_ASSIGN_OR_RETURN(const PerfParams baseline, decode_perf_request(announced.payload));
  KVS_ASSIGN_OR_RETURN(result.baseline, run_tag_bw_receiver(link.endpoint(), baseline, deadline));

  StreamReceiver receiver(control, link);
  KVS_ASSIGN_OR_RETURN(const StreamInfo info, receiver.open(kPerfContext, deadline));
  if (p.level >= info.levels) {
    return Status(Errc::protocol_error, fmt::format("the perf stream has no level {}", p.level));
  }
  KVS_ASSIGN_OR_RETURN(KvBuffer cache, KvBuffer::create(info.layout));
  std::vector<StreamReceiver::Want> wants(p.warmup + p.iterations);
  const std::uint32_t cycled = cycled_chunks(info, p);
  for (std::size_t i = 0; i < wants.size(); ++i)
    wants[i] = {static_cast<std::uint32_t>(i % cycled), p.level};
  StreamReceiver::FetchOptions o;
  o.window = p.test == "kv_lat" ? 1 : p.window;
  o.chunk_timeout = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  o.progress_thread = options.progress_thread;
  o.decode_threads = options.decode_threads;
  if (!options.decode) {
    o.consume = [](std::size_t, std::span<const std::byte>) { return Status::ok(); };
  }
  // Slots as a long-lived receiver keeps them: allocating and faulting in a window of fresh
  // megabyte slots would be charged to the first chunk (about 100 ms for 32 MB here).
  std::uint32_t largest = 0;
  for (const StreamReceiver::Want& w : wants)
    largest = std::max(largest, info.size(w.chunk, w.level));
  if (options.slots) receiver.set_slot_allocator(options.slots);
  KVS_RETURN_IF_ERROR(receiver.reserve_slots(o.window, largest));
  Arrivals arrivals(p.warmup);
  result.timeline.assign(wants.size(), ChunkTimes{kNan, kNan, kNan});
  const Clock::time_point start = Clock::now();
  const auto since_start = [&] {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  };
  const auto arrived = [&](std::size_t i, double decode_ms) {
    result.timeline[i].ready_ms = since_start();
    result.timeline[i].decode_ms = decode_ms;
    arrivals.arrived(info.size(wants[i].chunk, wants[i].level));
  };
  KvPerfSink* sink = options.decode ? options.sink : nullptr;
  if (sink != nullptr) {
    KVS_RETURN_IF_ERROR(sink->open(info.layout));
    o.consume = [&](std::size_t i, std::span<const std::byte> chunk) {
      result.timeline[i].landed_ms = since_start();
      return sink->take(i, chunk, arrived);
    };
  }
  Status fetched = receiver.fetch_chunks(info, cache.view(), wants, o, [&](std::size_t i) {
    if (sink == nullptr) arrived(i, kNan);
  });
  if (fetched.is_ok() && sink != nullptr) fetched = sink->finish(arrived);
  receiver.close(Clock::now() + std::chrono::seconds(1));
  KVS_RETURN_IF_ERROR(fetched);
  result.kv = arrivals.result();
  return result;
}

}  // namespace kvstream::transport
