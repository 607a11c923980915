// The receiving side of a stream: chunk requests on the control channel, receive slots on the
// data link, and each landed chunk checked, then decoded. With FetchOptions::progress_thread a
// thread of the fetch's own drives the link and channel while the caller's thread decodes.
#include <fmt/format.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "byte_io.hpp"
#include "kvstream/codec.hpp"
#include "session.hpp"

namespace kvstream::transport {

namespace {

Status bad(std::string what) {
  return Status(Errc::protocol_error, std::move(what));
}

// A chunk request's data-plane tag: marker, stream, and the request's number in the session
// (40 bits), so that a chunk asked twice lands in the slot of the request it answers.
constexpr std::uint64_t chunk_tag(std::uint32_t stream, std::uint64_t request) {
  return (std::uint64_t{0x4b} << 56) | (std::uint64_t{stream & 0xFFFF} << 40) |
         (request & ((std::uint64_t{1} << 40) - 1));
}

struct Landed {
  std::size_t want;
  std::uint32_t chunk;
  std::uint32_t slot;
  std::size_t length;
};

// A fixed list of wants, in order.
class ListSource final : public WantSource {
 public:
  explicit ListSource(std::span<const StreamReceiver::Want> wants) : wants_(wants) {}
  Next next() override {
    if (next_ == wants_.size()) return {};
    return {Next::Kind::want, wants_[next_++]};
  }

 private:
  std::span<const StreamReceiver::Want> wants_;
  std::size_t next_ = 0;
};

// Requests and landings, on the thread that owns the link and the channel.
class Requester {
 public:
  Requester(ControlChannel& control, DataLink& data, const StreamInfo& info, WantSource& source,
            std::vector<SlotMemory>& slots, std::uint64_t& next_request)
      : control_(control),
        data_(data),
        info_(info),
        source_(source),
        slots_(slots),
        next_request_(next_request) {}
  // However the fetch ends, no receive may outlive the slots it was posted into.
  ~Requester() {
    if (!inflight_.empty()) data_.cancel_receives();
  }

  // True once the source has said there is nothing more to ask.
  bool exhausted() const { return exhausted_; }
  bool waiting() const { return !inflight_.empty(); }
  std::size_t in_flight() const { return inflight_.size(); }

  // Takes the source's next want, if any, posts `slot` for it, then asks for it (so it never
  // arrives unexpected). False when the source has none now (it waits for a landing) or none
  // left.
  Expected<bool> ask(std::uint32_t slot, Clock::time_point deadline) {
    if (exhausted_) return false;
    const WantSource::Next next = source_.next();
    if (next.kind == WantSource::Next::Kind::done) exhausted_ = true;
    if (next.kind != WantSource::Next::Kind::want) return false;
    const StreamReceiver::Want want = next.want;
    if (want.chunk >= info_.chunk_count || want.level >= info_.levels) {
      return Status(Errc::invalid_argument,
                    fmt::format("chunk {} at level {}: the stream has {} chunks, levels 0..{}",
                                want.chunk, want.level, info_.chunk_count, info_.levels - 1));
    }
    const std::uint64_t tag = chunk_tag(info_.stream, next_request_++);
    KVS_RETURN_IF_ERROR(data_.post_receive(tag, slots_[slot].span()));
    inflight_[tag] = {asked_++, want, slot, Clock::now()};
    std::vector<std::byte> request;
    codec::ByteWriter w(request);
    w.put(info_.stream);
    w.put(want.chunk);
    w.put(want.level);
    w.put(tag);
    KVS_RETURN_IF_ERROR(control_.send(FrameType::chunk_request, request, deadline));
    return true;
  }

  // The next chunk to land by `deadline`, checked to be the one asked for.
  Expected<Landed> land(Clock::time_point deadline) {
    KVS_ASSIGN_OR_RETURN(const Completion c, data_.wait_any(deadline));
    const auto it = inflight_.find(c.tag);
    if (it == inflight_.end()) return bad(fmt::format("a chunk for tag {:x} nobody asked", c.tag));
    const InFlight asked = it->second;
    inflight_.erase(it);
    const auto [chunk, level] = asked.want;
    const std::uint32_t said = info_.size(chunk, level);
    if (info_.exact_sizes ? c.length != said : c.length > said) {
      return bad(fmt::format("chunk {} has {} bytes; the stream said {}{}", chunk, c.length,
                             info_.exact_sizes ? "" : "at most ", said));
    }
    // A well-formed chunk of another token range or level would decode without complaint into
    // the wrong place: check that it is the one asked for.
    const auto described = read_chunk_info(slots_[asked.slot].span().first(c.length));
    if (!described) {
      return Status(described.error().code(),
                    fmt::format("chunk {}: {}", chunk, described.error().message()));
    }
    const ChunkInfo& got = *described;
    const std::uint32_t begin = chunk * info_.chunk_tokens;
    if (got.token_begin != begin || got.level != level ||
        got.token_count != std::min(info_.chunk_tokens, info_.layout.tokens - begin)) {
      return bad(fmt::format(
          "asked for chunk {} (tokens from {}) at level {}, got tokens {}..{} at level {}", chunk,
          begin, level, got.token_begin, got.token_begin + got.token_count, got.level));
    }
    source_.landed(asked.index, c.length, asked.at, Clock::now());
    return Landed{asked.index, chunk, asked.slot, c.length};
  }

 private:
  struct InFlight {
    std::size_t index;  // among the wants asked
    StreamReceiver::Want want;
    std::uint32_t slot;
    Clock::time_point at;
  };
  ControlChannel& control_;
  DataLink& data_;
  const StreamInfo& info_;
  WantSource& source_;
  std::vector<SlotMemory>& slots_;
  std::uint64_t& next_request_;
  bool exhausted_ = false;
  std::size_t asked_ = 0;
  std::map<std::uint64_t, InFlight> inflight_;  // by tag
};

// Hands a landed chunk to the consumer or the CPU decoder.
class Taker {
 public:
  Taker(const KvView& dst, const StreamReceiver::FetchOptions& o)
      : dst_(dst), o_(o), decoder_(o.decode_threads) {}
  Status take(const Landed& l, std::span<const std::byte> bytes) {
    const Status s =
        o_.consume ? o_.consume(l.want, bytes) : decoder_.decode(bytes, dst_, o_.profile);
    if (s.is_ok()) return s;
    return Status(s.code(), fmt::format("chunk {}: {}", l.chunk, s.message()));
  }

 private:
  const KvView& dst_;
  const StreamReceiver::FetchOptions& o_;
  ChunkDecoder decoder_;
};

}  // namespace

Status StreamReceiver::fetch(const StreamInfo& info, const KvView& dst, const FetchOptions& o,
                             const std::function<void(std::uint32_t)>& on_chunk) {
  if (o.level >= info.levels) {
    return Status(Errc::invalid_argument,
                  fmt::format("level {}: the stream has levels 0..{}", o.level, info.levels - 1));
  }
  std::vector<Want> wants;
  for (std::uint32_t c = o.first_chunk; c < info.chunk_count; ++c)
    wants.push_back({c, o.level});
  return fetch_chunks(info, dst, wants, o, [&](std::size_t i) {
    if (on_chunk) on_chunk(wants[i].chunk);
  });
}

Status StreamReceiver::fetch_chunks(const StreamInfo& info, const KvView& dst,
                                    std::span<const Want> wants, const FetchOptions& o,
                                    const std::function<void(std::size_t)>& on_landed) {
  if (!dst.layout().same_shape(info.layout) || dst.layout().tokens < info.layout.tokens) {
    return Status(Errc::invalid_argument, "fetch: the destination does not hold the context");
  }
  std::uint32_t max_size = 0;
  for (const Want& w : wants) {
    if (w.chunk >= info.chunk_count || w.level >= info.levels) {
      return Status(Errc::invalid_argument,
                    fmt::format("chunk {} at level {}: the stream has {} chunks, levels 0..{}",
                                w.chunk, w.level, info.chunk_count, info.levels - 1));
    }
    max_size = std::max(max_size, info.size(w.chunk, w.level));
  }
  if (wants.empty()) return Status::ok();
  ListSource source(wants);
  return fetch_from(info, dst, source, max_size, o, on_landed);
}

Expected<SlotMemory> heap_slot(std::size_t bytes) {
  return SlotMemory{std::make_shared<std::byte[]>(bytes), bytes};  // zeroed: faulted in
}

Status StreamReceiver::reserve_slots(std::uint32_t window, std::size_t bytes) {
  if (slots_.size() < window) slots_.resize(window);
  for (SlotMemory& slot : slots_) {
    if (slot.size >= bytes) continue;
    slot = {};  // the old memory goes first: pinned memory is scarce
    KVS_ASSIGN_OR_RETURN(slot, allocate_(bytes));
    if (slot.size < bytes || slot.owner == nullptr) {
      return Status(
          Errc::resource_exhausted,
          fmt::format("a receive slot of {} bytes for a {}-byte chunk", slot.size, bytes));
    }
  }
  return Status::ok();
}

void StreamReceiver::set_slot_allocator(SlotAllocator allocate) {
  allocate_ = std::move(allocate);
  slots_.clear();
}

Status StreamReceiver::fetch_from(const StreamInfo& info, const KvView& dst, WantSource& source,
                                  std::uint32_t max_size, const FetchOptions& o,
                                  const std::function<void(std::size_t)>& on_landed) {
  const std::uint32_t window = std::max(o.window, 1u);
  const std::uint32_t slot_count = o.slot_count();
  KVS_RETURN_IF_ERROR(reserve_slots(slot_count, max_size));
  std::vector<SlotMemory>& slots = slots_;
  std::vector<std::uint32_t> free_slots;
  for (std::uint32_t i = 0; i < slot_count; ++i)
    free_slots.push_back(slot_count - 1 - i);
  Taker taker(dst, o);
  const auto bytes_of = [&](const Landed& l) {
    return std::span<const std::byte>(slots[l.slot].span()).first(l.length);
  };

  if (!o.progress_thread) {
    Requester asker(control_, data_, info, source, slots, next_request_);
    while (!asker.exhausted() || asker.waiting()) {
      while (!free_slots.empty() && asker.in_flight() < window) {
        KVS_ASSIGN_OR_RETURN(const bool asked,
                             asker.ask(free_slots.back(), Clock::now() + o.chunk_timeout));
        if (!asked) break;
        free_slots.pop_back();
      }
      if (!asker.waiting()) continue;
      KVS_ASSIGN_OR_RETURN(const Landed l, asker.land(Clock::now() + o.chunk_timeout));
      KVS_RETURN_IF_ERROR(taker.take(l, bytes_of(l)));
      free_slots.push_back(l.slot);
      source.taken(l.want);
      if (on_landed) on_landed(l.want);
    }
    return Status::ok();
  }

  // The progress thread asks and lands; this thread takes. Slots travel between them through
  // `free_slots` and `landed`, under `mu`.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Landed> landed;
  Status failed = Status::ok();  // the progress thread's
  bool finished = false, stop = false;
  std::thread progress([&] {
    const Status s = [&]() -> Status {
      Requester asker(control_, data_, info, source, slots, next_request_);
      auto last = Clock::now();  // the last request or landing
      // Short waits, so that slots the taker frees are asked for soon.
      constexpr auto kSlice = std::chrono::microseconds(200);
      while (!asker.exhausted() || asker.waiting()) {
        std::vector<std::uint32_t> ready;
        {
          std::unique_lock lock(mu);
          if (stop) return Status::ok();
          // Free slots, as many as the window has room for.
          const std::size_t room = window - asker.in_flight();
          if (!asker.exhausted()) {
            while (ready.size() < room && !free_slots.empty()) {
              ready.push_back(free_slots.back());
              free_slots.pop_back();
            }
          }
          if (ready.empty() && !asker.waiting()) {
            cv.wait_for(lock, kSlice, [&] { return stop || !free_slots.empty(); });
            continue;
          }
        }
        for (std::size_t i = 0; i < ready.size(); ++i) {
          KVS_ASSIGN_OR_RETURN(const bool asked,
                               asker.ask(ready[i], Clock::now() + o.chunk_timeout));
          if (!asked) {
            std::lock_guard lock(mu);
            free_slots.insert(free_slots.end(), ready.begin() + static_cast<std::ptrdiff_t>(i),
                              ready.end());
            break;
          }
          last = Clock::now();
        }
        if (!asker.waiting()) continue;
        const auto now = Clock::now();
        if (now - last > o.chunk_timeout)
          return Status(Errc::timeout, "chunk receive: deadline passed");
        auto l = asker.land(std::min(now + kSlice, last + o.chunk_timeout));
        if (!l) {
          if (l.error().code() == Errc::timeout) continue;  // a slice, not yet the deadline
          return l.error();
        }
        last = Clock::now();
        std::lock_guard lock(mu);
        landed.push_back(*l);
        cv.notify_all();
      }
      return Status::ok();
    }();
    std::lock_guard lock(mu);
    failed = s;
    finished = true;
    cv.notify_all();
  });
  Status result = Status::ok();
  for (;;) {
    Landed l{};
    {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return !landed.empty() || finished; });
      if (landed.empty()) break;  // the progress thread ended: its status says why
      l = landed.front();
      landed.pop_front();
    }
    result = taker.take(l, bytes_of(l));
    if (!result.is_ok()) break;
    {
      std::lock_guard lock(mu);
      free_slots.push_back(l.slot);
      cv.notify_all();
    }
    source.taken(l.want);
    if (on_landed) on_landed(l.want);
  }
  {
    std::lock_guard lock(mu);
    stop = true;
    cv.notify_all();
  }
  progress.join();
  return result.is_ok() ? failed : result;
}

}  // namespace kvstream::transport
