// Store-mode sessions: stream_info and chunk requests on the control channel, chunks on the
// data link.
#include "session.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>
#include <limits>
#include <thread>

#include "byte_io.hpp"
#include "kvstream/codec.hpp"

namespace kvstream::transport {

namespace {

Status bad(std::string what) {
  return Status(Errc::protocol_error, std::move(what));
}

}  // namespace

std::vector<std::byte> encode_stream_info(const StreamInfo& s) {
  std::vector<std::byte> out;
  codec::ByteWriter w(out);
  w.put(s.stream);
  w.put(s.exact_sizes ? 0u : 1u);  // flags: bit 0, sizes are bounds
  codec::put_layout(w, s.layout);
  w.put(s.chunk_tokens);
  w.put(s.chunk_count);
  w.put(s.levels);
  for (std::uint32_t v : s.sizes)
    w.put(v);
  for (std::int32_t t : s.tokens)
    w.put(t);
  return out;
}

Expected<StreamInfo> decode_stream_info(std::span<const std::byte> payload) {
  codec::ByteReader r(payload);
  StreamInfo s;
  std::uint32_t dtype = 0, flags = 0;
  if (!r.get(s.stream) || !r.get(flags) || !codec::get_layout(r, s.layout, dtype) ||
      !r.get(s.chunk_tokens) || !r.get(s.chunk_count) || !r.get(s.levels)) {
    return bad("stream_info: truncated");
  }
  if (dtype > 2) return bad(fmt::format("stream_info: dtype {}", dtype));
  if (flags > 1) return bad(fmt::format("stream_info: flags {:x}", flags));
  s.exact_sizes = flags == 0;
  KVS_RETURN_IF_ERROR(s.layout.validate().with_context("stream_info"));
  if (s.chunk_tokens == 0 || s.levels == 0 || s.levels > 16 ||
      s.chunk_count != (s.layout.tokens + s.chunk_tokens - 1) / s.chunk_tokens) {
    return bad(fmt::format("stream_info: {} chunks of {} tokens at {} levels for {} tokens",
                           s.chunk_count, s.chunk_tokens, s.levels, s.layout.tokens));
  }
  const std::size_t want =
      r.position() + std::size_t{s.chunk_count} * s.levels * 4 + std::size_t{s.layout.tokens} * 4;
  if (payload.size() != want) {
    return bad(fmt::format("stream_info: {} bytes where its counts need {}", payload.size(), want));
  }
  s.sizes.resize(std::size_t{s.chunk_count} * s.levels);
  // No encoder writes more than chunk_size_bound: a larger size is a lie that would only make
  // the receiver allocate.
  const std::uint64_t limit = chunk_size_bound(s.layout, s.chunk_tokens);
  for (auto& v : s.sizes) {
    r.get(v);
    if (v == 0 || v > limit) {
      return bad(
          fmt::format("stream_info: a chunk of {} bytes (its shape allows 1..{})", v, limit));
    }
  }
  s.tokens.resize(s.layout.tokens);
  for (auto& t : s.tokens)
    r.get(t);
  return s;
}

Status check_context_id(std::string_view id) {
  const bool ok =
      !id.empty() && id.size() <= 128 && id[0] != '.' &&
      std::all_of(id.begin(), id.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
      });
  if (ok) return Status::ok();
  return Status(Errc::invalid_argument,
                fmt::format("context id '{}': 1..128 of [A-Za-z0-9._-], not starting with '.'",
                            id.substr(0, 64)));
}

Status serve_session(ControlChannel& control, DataLink& data, ChunkSource& source,
                     std::chrono::milliseconds idle, BufferPool& buffers) {
  std::vector<std::unique_ptr<SourceStream>> streams;  // stream id = index
  // The buffers of the sends in flight, oldest first (empty where the source holds the bytes).
  // They go back to `buffers` as their sends complete, and when the session ends; those of
  // sends a stranded link still holds are freed, never handed to another session.
  std::deque<std::vector<std::byte>> scratch;
  struct GiveBack {
    BufferPool& pool;
    std::deque<std::vector<std::byte>>& scratch;
    DataLink& link;
    ~GiveBack() {
      // Sends complete oldest first.
      const std::size_t done = scratch.size() - std::min(scratch.size(), link.sends_in_flight());
      for (std::size_t i = 0; i < done; ++i)
        pool.give(std::move(scratch[i]));
    }
  } give_back{buffers, scratch, data};
  // However the session ends, no send may outlive its buffer (this runs before GiveBack).
  struct Abandon {
    DataLink& link;
    ~Abandon() {
      if (link.sends_in_flight() > 0) {
        link.abandon_sends(Status(Errc::disconnected, "the session ended"));
      }
    }
  } abandon{data};
  const auto release_sent = [&] {
    while (scratch.size() > data.sends_in_flight()) {
      buffers.give(std::move(scratch.front()));
      scratch.pop_front();
    }
  };
  for (;;) {
    // While chunks are on their way the next frame is taken only once it is there, so that the
    // sends keep moving; a receiver that is gone closes the connection, which reads as a frame.
    // The connection is looked at every 20 us, not every round: system calls are dear on
    // virtual machines, and the sends need the core.
    const auto quiet_since = Clock::now();
    auto look_at = quiet_since;
    for (;;) {
      if (data.sends_in_flight() == 0) break;
      const auto now = Clock::now();
      if (now >= look_at) {
        if (control.readable()) break;
        look_at = now + std::chrono::microseconds(20);
        if (now - quiet_since > idle) {
          return Status(Errc::timeout, "chunk send: the receiver took nothing for the idle time");
        }
      }
      KVS_RETURN_IF_ERROR(data.progress_sends());
      release_sent();
    }
    release_sent();
    auto f = control.receive(Clock::now() + idle);
    if (!f) return f.error();
    const auto refuse = [&](const Status& s) {
      control.fail(s);
      return s;
    };
    switch (f->type) {
      case FrameType::close:
        KVS_RETURN_IF_ERROR(data.finish_sends(0, Clock::now() + idle));
        control.close();
        return Status::ok();
      case FrameType::open_stream: {
        const std::string id(reinterpret_cast<const char*>(f->payload.data()), f->payload.size());
        if (Status s = check_context_id(id); !s.is_ok()) return refuse(s);
        if (streams.size() >= kMaxStreams) {
          return refuse(bad(fmt::format("more than {} streams in one session", kMaxStreams)));
        }
        auto opened = source.open(id);
        if (!opened) return refuse(opened.error());
        streams.push_back(std::move(*opened));
        StreamInfo info = streams.back()->info();
        info.stream = static_cast<std::uint32_t>(streams.size() - 1);
        KVS_RETURN_IF_ERROR(
            control.send(FrameType::stream_info, encode_stream_info(info), Clock::now() + idle));
        break;
      }
      case FrameType::chunk_request: {
        codec::ByteReader r(f->payload);
        std::uint32_t stream = 0, index = 0, level = 0;
        std::uint64_t tag = 0;
        if (!r.get(stream) || !r.get(index) || !r.get(level) || !r.get(tag) || r.remaining() != 0) {
          return refuse(bad("malformed chunk_request"));
        }
        if (stream >= streams.size()) {
          return refuse(bad(fmt::format("chunk_request for stream {}, which is not open", stream)));
        }
        const StreamInfo& info = streams[stream]->info();
        if (index >= info.chunk_count || level >= info.levels) {
          return refuse(bad(fmt::format("chunk {} at level {}: the stream has {} chunks, {} levels",
                                        index, level, info.chunk_count, info.levels)));
        }
        if (data.sends_in_flight() >= kMaxSendsInFlight) {
          KVS_RETURN_IF_ERROR(data.finish_sends(kMaxSendsInFlight - 1, Clock::now() + idle));
          release_sent();
        }
        // Push mode knows only a bound, and its encoder grows the buffer to what it writes.
        std::vector<std::byte>& buffer =
            scratch.emplace_back(buffers.take(info.exact_sizes ? info.size(index, level) : 0));
        auto bytes = streams[stream]->read(index, level, buffer);
        if (!bytes) return refuse(bytes.error());
        if (buffer.empty() && buffer.capacity() > 0) {
          buffers.give(std::move(buffer));  // the source holds the bytes: no copy was made
          buffer = {};
        }
        KVS_RETURN_IF_ERROR(data.start_send(tag, *bytes));
        break;
      }
      default:
        return refuse(bad(fmt::format("unexpected {} frame", frame_type_name(f->type))));
    }
  }
}

Status serve_session(ControlChannel& control, DataLink& data, ChunkSource& source,
                     std::chrono::milliseconds idle) {
  // The session's own buffers, kept while it lasts.
  BufferPool buffers(std::numeric_limits<std::size_t>::max());
  return serve_session(control, data, source, idle, buffers);
}

Status serve_session(ControlChannel& control, DataLink& data, const std::filesystem::path& dir,
                     std::chrono::milliseconds idle) {
  ArchiveSource source(dir);
  return serve_session(control, data, source, idle);
}

Expected<StreamInfo> StreamReceiver::open(const std::string& context, Clock::time_point deadline) {
  KVS_RETURN_IF_ERROR(check_context_id(context));
  KVS_RETURN_IF_ERROR(
      control_.send(FrameType::open_stream, std::as_bytes(std::span(context)), deadline));
  KVS_ASSIGN_OR_RETURN(const Frame f, control_.receive(deadline));
  if (f.type == FrameType::error) return status_from_error_payload(f.payload);
  if (f.type != FrameType::stream_info) {
    const Status s = bad(fmt::format("expected stream_info, got {}", frame_type_name(f.type)));
    control_.fail(s);
    return s;
  }
  return decode_stream_info(f.payload);
}

void StreamReceiver::close(Clock::time_point deadline) {
  (void)control_.send(FrameType::close, {}, deadline);
  control_.close();
}

}  // namespace kvstream::transport
