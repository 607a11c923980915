// One side of a loopback UCX test: a context and a worker of its own (a worker is
// single-threaded, so each side lives in one thread).
#pragma once

#include <gtest/gtest.h>

#include <utility>

#include "ucx.hpp"

namespace kvstream::transport::testing {

using Side = UcxThread;

inline Side make_side() {
  auto side = open_ucx_thread();
  EXPECT_TRUE(side.has_value()) << side.error().to_string();
  return std::move(*side);
}

}  // namespace kvstream::transport::testing
