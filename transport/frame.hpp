// Control-plane frames (TCP): an 8-byte header, then the payload. Every frame is length-
// prefixed and versioned, and a receiver refuses one larger than its limit before reading it.
//
//   offset 0  u32  payload length (little-endian)
//   offset 4  u8   version (1)
//   offset 5  u8   type (FrameType)
//   offset 6  u16  reserved, 0
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "kvstream/status.hpp"

namespace kvstream::transport {

inline constexpr std::uint8_t kFrameVersion = 1;
inline constexpr std::size_t kFrameHeaderSize = 8;
inline constexpr std::uint32_t kDefaultMaxPayload = 4u << 20;

enum class FrameType : std::uint8_t {
  hello = 1,           // server -> client: the challenge (server nonce)
  auth = 2,            // client -> server: client nonce and the client's MAC
  auth_ok = 3,         // server -> client: the server's MAC (the server knows the secret too)
  error = 4,           // either way: an Errc and a message, then the sender closes
  worker_address = 5,  // either way: a UCX worker address
  open_stream = 6,
  stream_info = 7,
  chunk_request = 8,
  feedback = 9,
  close = 10,
  perf_request = 11,  // client -> server: `kvstream perf` parameters
};
inline constexpr std::uint8_t kLastFrameType = 11;

std::string_view frame_type_name(FrameType t) noexcept;

struct FrameHeader {
  std::uint32_t length = 0;
  FrameType type = FrameType::error;
};

// Validates a received header: version, known type, reserved bits, and length against
// `max_payload`. Every failure is Errc::protocol_error naming what was wrong.
Expected<FrameHeader> parse_frame_header(std::span<const std::byte, kFrameHeaderSize> header,
                                         std::uint32_t max_payload);

// The header of a frame of `type` with `length` payload bytes.
std::array<std::byte, kFrameHeaderSize> frame_header(FrameType type, std::uint32_t length);

struct Frame {
  FrameType type = FrameType::error;
  std::vector<std::byte> payload;
};

}  // namespace kvstream::transport
