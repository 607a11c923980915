#include "cli/child_process.hpp"

#include "cli/common.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

namespace kvstream::cli {

Expected<Child> Child::spawn(const std::vector<std::string>& argv, const std::string& stdout_path,
                             const std::string& stderr_path,
                             std::function<void(const std::string&)> stderr_lines) {
  if (argv.empty()) return Status(Errc::invalid_argument, "spawn: no command");
  int err[2];
  if (::pipe2(err, O_CLOEXEC) != 0)
    return Status(Errc::io_error, fmt::format("pipe: {}", std::strerror(errno)));
  std::vector<char*> args;
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(err[0]);
    ::close(err[1]);
    return Status(Errc::io_error, fmt::format("fork: {}", std::strerror(errno)));
  }
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
    const int out = ::open(stdout_path.empty() ? "/dev/null" : stdout_path.c_str(),
                           O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out >= 0) ::dup2(out, 1);
    ::dup2(err[1], 2);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(err[1]);
  Child c;
  c.pid_ = pid;
  c.err_fd_ = err[0];
  c.err_path_ = stderr_path;
  c.lines_ = std::move(stderr_lines);
  return c;
}

Child::Child(Child&& o) noexcept
    : pid_(o.pid_),
      err_fd_(o.err_fd_),
      err_path_(std::move(o.err_path_)),
      partial_(std::move(o.partial_)),
      lines_(std::move(o.lines_)) {
  o.pid_ = -1;
  o.err_fd_ = -1;
}

Child::~Child() {
  terminate();
  if (err_fd_ >= 0) ::close(err_fd_);
}

void Child::terminate() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  for (int i = 0; i < 100; ++i) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  pid_ = -1;
}

bool Child::read_lines(int wait_ms) {
  if (err_fd_ < 0) return false;
  pollfd p{err_fd_, POLLIN, 0};
  if (::poll(&p, 1, wait_ms) <= 0) return true;
  char buf[4096];
  const ssize_t n = ::read(err_fd_, buf, sizeof buf);
  if (n <= 0) {
    ::close(err_fd_);  // end of file: the child closed stderr
    err_fd_ = -1;
    if (!partial_.empty()) deliver(partial_);
    partial_.clear();
    return false;
  }
  partial_.append(buf, static_cast<std::size_t>(n));
  for (std::size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
    const std::string line = partial_.substr(0, nl);
    partial_.erase(0, nl + 1);
    deliver(line);
  }
  return true;
}

void Child::deliver(const std::string& line) {
  if (!err_path_.empty()) std::ofstream(err_path_, std::ios::app) << line << '\n';
  if (lines_) lines_(line);
}

bool Child::pump() {
  while (err_fd_ >= 0) {
    pollfd p{err_fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return true;
    read_lines(0);
  }
  return false;
}

Expected<int> Child::wait(std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (err_fd_ >= 0) {
      read_lines(5);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    int status = 0;
    const pid_t got = ::waitpid(pid_, &status, WNOHANG);
    if (got == pid_) {
      pid_ = -1;
      pump();  // what it wrote before it exited
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    if (std::chrono::steady_clock::now() > until) {
      terminate();
      return Status(Errc::timeout, fmt::format("a child process ran past {} ms", timeout.count()));
    }
  }
}

namespace {

Status run(const std::vector<std::string>& argv, const std::string& stdout_path) {
  std::string said;
  auto child =
      Child::spawn(argv, stdout_path, "", [&](const std::string& line) { said += line + " "; });
  if (!child) return child.error();
  KVS_ASSIGN_OR_RETURN(const int rc, child->wait(std::chrono::seconds(20)));
  if (rc == 0) return Status::ok();
  std::string cmd;
  for (const std::string& a : argv)
    cmd += (cmd.empty() ? "" : " ") + a;
  return Status(Errc::io_error, fmt::format("'{}' exited with {}: {}", cmd, rc, said));
}

}  // namespace

Status run_command(const std::vector<std::string>& argv) {
  return run(argv, "");
}

Expected<std::string> command_output(const std::vector<std::string>& argv) {
  char path[] = "/tmp/kvstream-out-XXXXXX";
  const int fd = ::mkstemp(path);
  if (fd < 0) return Status(Errc::io_error, fmt::format("mkstemp: {}", std::strerror(errno)));
  ::close(fd);
  const Status s = run(argv, path);
  auto out = read_file(path);
  ::unlink(path);
  if (!s.is_ok()) return s;
  return out;
}

}  // namespace kvstream::cli
