// Child processes for the cluster benchmarks: spawned without a shell (argv as given), stdout to
// a file, stderr to a file or read line by line; killed and reaped by the owner's destructor.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "kvstream/status.hpp"

namespace kvstream::cli {

class Child {
 public:
  // `stderr_lines`, if given, is called (on the caller's thread, from wait()) with each line of
  // the child's stderr, which is also appended to `stderr_path` when that is not empty.
  static Expected<Child> spawn(const std::vector<std::string>& argv, const std::string& stdout_path,
                               const std::string& stderr_path,
                               std::function<void(const std::string&)> stderr_lines = {});
  Child(Child&& o) noexcept;
  Child& operator=(Child&&) = delete;
  Child(const Child&) = delete;
  ~Child();  // SIGTERM, then SIGKILL after a second, if still running

  pid_t pid() const { return pid_; }
  // Waits (reading stderr lines meanwhile) until it exits or `timeout` passes (then it is
  // killed: Errc::timeout). Returns its exit code (128 + signal when killed by one).
  Expected<int> wait(std::chrono::milliseconds timeout);
  // Reads the stderr lines available now, without waiting; false once the child closed it.
  bool pump();
  void terminate();

 private:
  Child() = default;
  // Reads stderr once, waiting up to `wait_ms` for it; false at its end.
  bool read_lines(int wait_ms);
  void deliver(const std::string& line);
  pid_t pid_ = -1;
  int err_fd_ = -1;
  std::string err_path_, partial_;
  std::function<void(const std::string&)> lines_;
};

// Runs argv to completion; its stderr goes into the error when it fails.
Status run_command(const std::vector<std::string>& argv);
// The same, returning what it wrote to stdout.
Expected<std::string> command_output(const std::vector<std::string>& argv);

}  // namespace kvstream::cli
