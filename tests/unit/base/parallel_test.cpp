// parallel_for and WorkerPool: every item runs once, per-worker indices stay below the thread
// count, and the error is the lowest-numbered failing item's, as one thread would return it.
#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "kvstream/parallel.hpp"

namespace kvstream {
namespace {

TEST(WorkerPool, RunsEveryItemOnceCallAfterCall) {
  WorkerPool pool(3);
  std::vector<std::atomic<int>> runs(1000);
  std::atomic<bool> worker_in_range{true};
  for (int call = 0; call < 200; ++call) {
    const Status s = pool.run(runs.size(), [&](unsigned worker, std::size_t i) {
      worker_in_range = worker_in_range && worker < 3;
      ++runs[i];
      return Status::ok();
    });
    ASSERT_TRUE(s.is_ok());
  }
  for (const auto& r : runs)
    EXPECT_EQ(r.load(), 200);
  EXPECT_TRUE(worker_in_range);
}

TEST(WorkerPool, ReturnsTheLowestFailingItemLikeOneThread) {
  const auto fn = [](unsigned, std::size_t i) {
    return i == 37 || i == 600 || i == 601 ? Status(Errc::corrupt_data, "item " + std::to_string(i))
                                           : Status::ok();
  };
  WorkerPool pool(4);
  for (int call = 0; call < 50; ++call) {
    EXPECT_EQ(pool.run(1000, fn).message(), "item 37");
    EXPECT_EQ(parallel_for(1000, 4, fn).message(), "item 37");
  }
  EXPECT_EQ(parallel_for(1000, 1, fn).message(), "item 37");
}

TEST(WorkerPool, OneThreadRunsOnTheCaller) {
  WorkerPool pool(1);
  const auto caller = std::this_thread::get_id();
  bool here = true;
  ASSERT_TRUE(pool.run(10,
                       [&](unsigned worker, std::size_t) {
                         here = here && worker == 0 && std::this_thread::get_id() == caller;
                         return Status::ok();
                       })
                  .is_ok());
  EXPECT_TRUE(here);
  EXPECT_TRUE(pool.run(0, [](unsigned, std::size_t) { return Status::ok(); }).is_ok());
}

}  // namespace
}  // namespace kvstream
