// Control-plane frame headers.
#include "frame.hpp"

#include <fmt/format.h>

#include <cstring>

namespace kvstream::transport {

std::string_view frame_type_name(FrameType t) noexcept {
  switch (t) {
    case FrameType::hello:
      return "hello";
    case FrameType::auth:
      return "auth";
    case FrameType::auth_ok:
      return "auth_ok";
    case FrameType::error:
      return "error";
    case FrameType::worker_address:
      return "worker_address";
    case FrameType::open_stream:
      return "open_stream";
    case FrameType::stream_info:
      return "stream_info";
    case FrameType::chunk_request:
      return "chunk_request";
    case FrameType::feedback:
      return "feedback";
    case FrameType::close:
      return "close";
    case FrameType::perf_request:
      return "perf_request";
  }
  return "unknown";
}

Expected<FrameHeader> parse_frame_header(std::span<const std::byte, kFrameHeaderSize> header,
                                         std::uint32_t max_payload) {
  std::uint32_t length;
  std::uint16_t reserved;
  std::memcpy(&length, header.data(), 4);
  const auto version = static_cast<std::uint8_t>(header[4]);
  const auto type = static_cast<std::uint8_t>(header[5]);
  std::memcpy(&reserved, header.data() + 6, 2);
  const auto bad = [](std::string what) { return Status(Errc::protocol_error, "frame: " + what); };
  if (version != kFrameVersion) {
    return bad(fmt::format("version {} (this side speaks {})", version, kFrameVersion));
  }
  if (type == 0 || type > kLastFrameType) return bad(fmt::format("unknown type {}", type));
  if (reserved != 0) return bad("reserved bits set");
  if (length > max_payload) {
    return bad(fmt::format("{} frame of {} bytes, over the {}-byte limit",
                           frame_type_name(static_cast<FrameType>(type)), length, max_payload));
  }
  return FrameHeader{length, static_cast<FrameType>(type)};
}

std::array<std::byte, kFrameHeaderSize> frame_header(FrameType type, std::uint32_t length) {
  std::array<std::byte, kFrameHeaderSize> h{};
  std::memcpy(h.data(), &length, 4);
  h[4] = static_cast<std::byte>(kFrameVersion);
  h[5] = static_cast<std::byte>(type);
  return h;
}

}  // namespace kvstream::transport
