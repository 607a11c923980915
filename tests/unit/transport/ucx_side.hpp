// One side of a loopback UCX test: a context and a worker of its own (a worker is
// single-threaded, so each side lives in one thread).
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "ucx.hpp"

namespace kvstream::transport::testing {

struct Side {
  std::shared_ptr<UcxContext> context;
  std::shared_ptr<UcxWorker> worker;
};

inline Side make_side() {
  auto c = UcxContext::create();
  EXPECT_TRUE(c.has_value()) << c.error().to_string();
  auto w = UcxWorker::create(*c);
  EXPECT_TRUE(w.has_value()) << w.error().to_string();
  return {*c, *w};
}

}  // namespace kvstream::transport::testing
