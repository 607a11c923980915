// Work split across threads by item, for work whose items are independent: a chunk's substreams
// and layers when it decodes on several cores, a runner's contexts.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "kvstream/status.hpp"

namespace kvstream {

// Calls fn(worker, item) for every item in [0, count) on up to `threads` threads, the caller's
// among them (each worker index runs on one thread, so per-worker state needs no lock). Stops
// handing out items after the first failure and returns the failure of the lowest-numbered
// failing item. Items are handed out in order, so every item below a failing one has run: the
// error is the one a single thread would return.
template <typename Fn>
Status parallel_for(std::size_t count, unsigned threads, Fn&& fn) {
  threads = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(count)));
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::size_t first_bad = count;
  Status first_error;
  auto work = [&](unsigned worker) {
    for (std::size_t i; !failed.load() && (i = next.fetch_add(1)) < count;) {
      Status s = fn(worker, i);
      if (!s.is_ok()) {
        std::lock_guard lock(mu);
        failed = true;
        if (i < first_bad) {
          first_bad = i;
          first_error = std::move(s);
        }
      }
    }
  };
  std::vector<std::jthread> pool;
  for (unsigned w = 1; w < threads; ++w)
    pool.emplace_back(work, w);
  work(0);
  pool.clear();  // joins
  return first_error;
}

}  // namespace kvstream
