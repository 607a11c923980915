// Streaming sessions over an authenticated control channel and a data link (store mode): the
// receiver opens a stream for a context, learns its chunk count, per-level sizes and tokens,
// then requests chunk i at level l; the sender reads it from the context's archive and sends it
// on the data link, where the receiver has posted a slot for it. The receiver decodes each
// chunk into its KV view as it lands, while the next ones are in flight.
//
// Control messages after authentication (frame.hpp types):
//   open_stream   receiver -> sender  the context id (archive file name without ".kva")
//   stream_info   sender -> receiver  its stream id, layout, chunking, per-(chunk, level)
//                                     sizes, tokens
//   chunk_request receiver -> sender  u32 stream, u32 chunk, u32 level, u64 tag (the data-plane
//                                     tag to send it under: the receiver numbers its requests)
// A session may hold up to kMaxStreams streams open at once.
//   close         receiver -> sender  the end of the session
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "buffer_pool.hpp"
#include "control.hpp"
#include "data_link.hpp"
#include "kvstream/archive.hpp"
#include "kvstream/kv_cache.hpp"
#include "source.hpp"

namespace kvstream::transport {

inline constexpr std::uint32_t kMaxStreams = 64;
// A sender starts each requested chunk's send at once, up to this many in flight (the receiver's
// window bounds them too); the next request then waits for the oldest.
inline constexpr std::size_t kMaxSendsInFlight = 8;

struct StreamInfo {
  std::uint32_t stream = 0;  // the session's id for it
  // Store mode knows every chunk's size; push mode encodes on request and sends upper bounds.
  bool exact_sizes = true;
  KvLayout layout;  // tokens: the context's length
  std::uint32_t chunk_tokens = 0, chunk_count = 0, levels = 0;
  std::vector<std::uint32_t> sizes;  // chunk-major: sizes[chunk * levels + level]
  std::vector<std::int32_t> tokens;
  std::uint32_t size(std::uint32_t chunk, std::uint32_t level) const {
    return sizes[std::size_t{chunk} * levels + level];
  }
};

std::vector<std::byte> encode_stream_info(const StreamInfo& s);
// Checks every field and that the sizes and tokens agree with the counts (protocol_error).
Expected<StreamInfo> decode_stream_info(std::span<const std::byte> payload);

// A context id: 1..128 characters of [A-Za-z0-9._-], not starting with '.'; nothing else can
// name a file outside the served folder.
Status check_context_id(std::string_view id);

// Serves one authenticated receiver from `source` until it closes, breaks the protocol, goes
// silent for `idle`, or its data link fails. A bad request gets an error frame naming it and
// ends this session only. Chunks are read into buffers from `buffers` (a server's sessions share
// one); without it the session keeps its own while it lasts.
Status serve_session(ControlChannel& control, DataLink& data, ChunkSource& source,
                     std::chrono::milliseconds idle, BufferPool& buffers);
Status serve_session(ControlChannel& control, DataLink& data, ChunkSource& source,
                     std::chrono::milliseconds idle);
// The same from the archives in `dir` (store mode).
Status serve_session(ControlChannel& control, DataLink& data, const std::filesystem::path& dir,
                     std::chrono::milliseconds idle);

class WantSource;

// A receive slot's memory: by default a heap buffer; a receiver whose chunks go to a GPU gives
// pinned host memory instead, from which the copy to the device is a DMA (SlotAllocator).
struct SlotMemory {
  std::shared_ptr<std::byte[]> owner;  // frees it
  std::size_t size = 0;
  std::span<std::byte> span() const noexcept { return {owner.get(), size}; }
};
// Returns `bytes` of memory, touched (a fresh page faulted in on a chunk's arrival would be
// charged to that chunk).
using SlotAllocator = std::function<Expected<SlotMemory>(std::size_t bytes)>;
Expected<SlotMemory> heap_slot(std::size_t bytes);

// The receiving side of one session.
class StreamReceiver {
 public:
  StreamReceiver(ControlChannel& control, DataLink& data) : control_(control), data_(data) {}

  Expected<StreamInfo> open(const std::string& context, Clock::time_point deadline);

  struct FetchOptions {
    std::uint32_t level = 0;
    std::uint32_t first_chunk = 0;  // resume from here
    std::uint32_t window = 4;       // chunks asked for and not landed, at most
    // Landed chunks that may wait for the decoder beyond the window. Each receive slot is held
    // from its chunk's request until the chunk is decoded, so with none the link idles while
    // the decoder catches up (when decoding is slower than the link); with a backlog the link
    // asks for the next chunk as soon as one lands, and keeps ahead of the decoder by up to
    // this many chunks: a link that slows down later finds fewer bytes still to carry. Slots:
    // window + backlog.
    std::uint32_t backlog = 0;
    std::uint32_t slot_count() const { return std::max(window, 1u) + backlog; }
    // Each chunk must land within this much of being requested or of the previous landing.
    std::chrono::milliseconds chunk_timeout{5000};
    const CodecProfile* profile = nullptr;  // transform-coded chunks' profile
    // Drive the data link and the control channel from a thread of the fetch's own while this
    // thread decodes, so that decoding overlaps the chunks in flight. UCX wants one thread per
    // worker: that thread makes every call on the link and the channel until the fetch returns.
    bool progress_thread = false;
    // Threads that decode each chunk on the CPU (ChunkDecoder's), this one among them; the
    // progress thread is not. Unused with `consume`.
    unsigned decode_threads = 1;
    // Takes each chunk (already checked to be the one asked for) instead of the CPU decoder,
    // e.g. to hand it to a GPU decoder, or to drop it in a transport measurement; `dst` is then
    // not written. Its error ends the fetch.
    std::function<Status(std::size_t want, std::span<const std::byte> chunk)> consume;
  };
  // Requests chunks first_chunk.. in order, decodes each into `dst` (a view of the context's
  // tokens) as it lands and calls on_chunk(i). Stops at the first error: a dead, stalled or
  // misbehaving sender becomes Errc::disconnected, timeout or protocol_error/corrupt_data,
  // and every chunk reported before it stays valid; fetch again from the first missing one.
  Status fetch(const StreamInfo& info, const KvView& dst, const FetchOptions& options,
               const std::function<void(std::uint32_t chunk)>& on_chunk);

  // One chunk to fetch, at one level.
  struct Want {
    std::uint32_t chunk = 0, level = 0;
  };
  // The general form: fetches `wants` in that order (a chunk may appear more than once, each
  // time at its own level), options.window in flight at most (and options.backlog landed ones
  // waiting to be decoded); options.level and first_chunk are not used. on_landed(i) says
  // wants[i] is decoded in `dst`. Errors as fetch().
  Status fetch_chunks(const StreamInfo& info, const KvView& dst, std::span<const Want> wants,
                      const FetchOptions& options,
                      const std::function<void(std::size_t want)>& on_landed);

  // The most general form: fetch_chunks over wants that `source` gives as slots free up, into
  // slots of `max_size` bytes (at least the largest chunk it will ask for).
  Status fetch_from(const StreamInfo& info, const KvView& dst, WantSource& source,
                    std::uint32_t max_size, const FetchOptions& options,
                    const std::function<void(std::size_t want)>& on_landed);

  // Receive slots are the receiver's, kept from fetch to fetch (allocating and faulting in
  // megabytes is no work for the data path): makes `window` slots of at least `bytes` now, so
  // that the fetches after it allocate nothing. A fetch grows them when it needs more.
  Status reserve_slots(std::uint32_t window, std::size_t bytes);
  // Where slots come from from now on (heap_slot by default); the slots made so far are
  // dropped.
  void set_slot_allocator(SlotAllocator allocate);

  // The data link's own estimate of its goodput for messages of `bytes` (0: it has none).
  double link_estimate(std::size_t bytes) const { return data_.estimated_bytes_per_s(bytes); }

  void close(Clock::time_point deadline);

 private:
  ControlChannel& control_;
  DataLink& data_;
  std::uint64_t next_request_ = 0;  // numbers the session's chunk requests (their tags)
  std::vector<SlotMemory> slots_;
  SlotAllocator allocate_ = heap_slot;
};

// Where a fetch's requests come from: a fixed list, or a policy that decides each chunk as a
// slot frees up. Wants are numbered in the order next() gives them.
class WantSource {
 public:
  virtual ~WantSource() = default;
  // The next chunk to ask for, decided now; or wait (only while a chunk it asked for is in
  // flight: it is asked again after a landing); or done, once there is none left to ask.
  // Called on the thread that drives the link.
  struct Next {
    enum class Kind { want, wait, done } kind = Kind::done;
    StreamReceiver::Want want;
  };
  virtual Next next() = 0;
  // Want `i`, asked at `asked`, landed (checked) with `bytes` bytes at `at`; on the link's thread.
  virtual void landed(std::size_t /*i*/, std::size_t /*bytes*/, Clock::time_point /*asked*/,
                      Clock::time_point /*at*/) {}
  // Want `i` is decoded; on the thread that decodes.
  virtual void taken(std::size_t /*i*/) {}
};

}  // namespace kvstream::transport
