// Work split across threads by item, for work whose items are independent: a chunk's substreams
// and layers when it decodes on several cores, a runner's contexts.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "kvstream/status.hpp"

namespace kvstream {

namespace detail {

// Items handed out in order to the workers of one call; the failure of the lowest-numbered
// failing item is kept. Items are handed out in order, so every item below a failing one has
// run: the error is the one a single thread would return.
struct ItemQueue {
  std::size_t count;
  std::atomic<std::size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::size_t first_bad;
  Status first_error;
  explicit ItemQueue(std::size_t n) : count(n), first_bad(n) {}
  template <typename Fn>
  void work(unsigned worker, Fn& fn) {
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
  }
};

}  // namespace detail

// Calls fn(worker, item) for every item in [0, count) on up to `threads` threads started for
// the call, the caller's among them (each worker index runs on one thread, so per-worker state
// needs no lock). Stops handing out items after the first failure and returns the failure of
// the lowest-numbered failing item, the one a single thread would return.
template <typename Fn>
Status parallel_for(std::size_t count, unsigned threads, Fn&& fn) {
  threads = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(count)));
  detail::ItemQueue q(count);
  std::vector<std::jthread> pool;
  for (unsigned w = 1; w < threads; ++w)
    pool.emplace_back([&q, &fn, w] { q.work(w, fn); });
  q.work(0, fn);
  pool.clear();  // joins
  return std::move(q.first_error);
}

// parallel_for on threads kept from call to call: starting a thread costs about 100 us on the
// 2-core development VM, more than decoding a small chunk. `threads` - 1 workers wait for
// work; the caller is the other. Calls must not overlap.
class WorkerPool {
 public:
  explicit WorkerPool(unsigned threads) : threads_(std::max(1u, threads)) {
    for (unsigned w = 1; w < threads_; ++w)
      workers_.emplace_back([this, w] { serve(w); });
  }
  ~WorkerPool() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    wake_.notify_all();
    workers_.clear();  // joins
  }
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  unsigned threads() const noexcept { return threads_; }

  // parallel_for(count, threads(), fn) without starting threads.
  template <typename Fn>
  Status run(std::size_t count, Fn&& fn) {
    detail::ItemQueue q(count);
    if (threads_ == 1 || count <= 1) {
      q.work(0, fn);
      return std::move(q.first_error);
    }
    const std::function<void(unsigned)> job = [&q, &fn](unsigned w) { q.work(w, fn); };
    {
      std::lock_guard lock(mu_);
      job_ = &job;
      finished_ = 0;
      ++generation_;
    }
    wake_.notify_all();
    job(0);
    std::unique_lock lock(mu_);
    done_.wait(lock, [&] { return finished_ == threads_ - 1; });
    job_ = nullptr;
    return std::move(q.first_error);
  }

 private:
  void serve(unsigned worker) {
    std::uint64_t seen = 0;
    std::unique_lock lock(mu_);
    for (;;) {
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      const std::function<void(unsigned)>* job = job_;
      lock.unlock();
      (*job)(worker);
      lock.lock();
      if (++finished_ == threads_ - 1) done_.notify_one();
    }
  }

  unsigned threads_;
  std::mutex mu_;
  std::condition_variable wake_, done_;
  const std::function<void(unsigned)>* job_ = nullptr;
  std::uint64_t generation_ = 0;
  unsigned finished_ = 0;
  bool stop_ = false;
  std::vector<std::jthread> workers_;  // last: joined before the members they use go
};

}  // namespace kvstream
