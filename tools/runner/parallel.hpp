// Work split across threads by item: the runner's unit of parallelism is a whole context,
// which keeps every forward pass single-threaded and its results independent of thread count.
#pragma once

#include <algorithm>
#include <thread>

#include "kvstream/parallel.hpp"

namespace kvstream::runner {

using kvstream::parallel_for;

inline unsigned default_threads() {
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace kvstream::runner
