// Control-plane frame headers: round trip, and every rule a received header must keep.
#include <gtest/gtest.h>

#include <cstring>

#include "frame.hpp"

namespace kvstream::transport {
namespace {

TEST(Frame, HeaderRoundTrips) {
  const auto h = frame_header(FrameType::stream_info, 1234);
  const auto got = parse_frame_header(h, 4096);
  ASSERT_TRUE(got.has_value()) << got.error().to_string();
  EXPECT_EQ(got->type, FrameType::stream_info);
  EXPECT_EQ(got->length, 1234u);
}

TEST(Frame, OversizedFrameIsRefusedBeforeItsPayload) {
  const auto h = frame_header(FrameType::worker_address, 4097);
  const auto got = parse_frame_header(h, 4096);
  ASSERT_FALSE(got.has_value());
  EXPECT_EQ(got.error().code(), Errc::protocol_error);
  EXPECT_NE(got.error().message().find("4097 bytes, over the 4096-byte limit"), std::string::npos)
      << got.error().message();
}

TEST(Frame, UnknownTypeVersionAndReservedBitsAreProtocolErrors) {
  auto h = frame_header(FrameType::hello, 0);
  h[5] = std::byte{0};
  EXPECT_NE(parse_frame_header(h, 64).error().message().find("unknown type 0"), std::string::npos);
  h[5] = std::byte{kLastFrameType + 1};
  EXPECT_NE(parse_frame_header(h, 64).error().message().find("unknown type"), std::string::npos);
  h = frame_header(FrameType::hello, 0);
  h[4] = std::byte{2};
  EXPECT_NE(parse_frame_header(h, 64).error().message().find("version 2"), std::string::npos);
  h = frame_header(FrameType::hello, 0);
  h[7] = std::byte{1};
  EXPECT_EQ(parse_frame_header(h, 64).error().code(), Errc::protocol_error);
}

}  // namespace
}  // namespace kvstream::transport
