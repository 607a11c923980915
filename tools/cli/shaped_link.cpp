#include "cli/shaped_link.hpp"

#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <thread>
#include <tuple>

#include "cli/child_process.hpp"

namespace kvstream::cli {

namespace {

constexpr const char* kPrefix = "kvs-bench-";

// Namespaces left by a process that is gone (killed before its destructor ran).
void remove_stale() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(kPrefix, 0) != 0) continue;
    const pid_t owner = static_cast<pid_t>(std::atol(name.c_str() + std::strlen(kPrefix)));
    if (owner > 0 && ::kill(owner, 0) != 0 && errno == ESRCH)
      (void)run_command({"ip", "netns", "del", name});
  }
}

}  // namespace

Expected<std::unique_ptr<ShapedLink>> ShapedLink::create() {
  if (::geteuid() != 0) return Status(Errc::unsupported, "network namespaces and tc need root");
  remove_stale();
  std::unique_ptr<ShapedLink> l(new ShapedLink());
  const std::string tag = fmt::format("{}{}", kPrefix, ::getpid());
  l->server_ns_ = tag + "-s";
  l->client_ns_ = tag + "-c";
  l->server_dev_ = "kvs-s";
  l->server_ip_ = "10.77.0.1";
  const auto step = [](const char* what, Status s) {
    return s.is_ok() ? s : Status(s.code(), fmt::format("{}: {}", what, s.message()));
  };
  if (Status s = run_command({"ip", "netns", "add", l->server_ns_}); !s.is_ok()) {
    // Root without CAP_NET_ADMIN (a container), or no iproute2: not a failure of the bench.
    return Status(Errc::unsupported,
                  fmt::format("cannot create a network namespace here: {}", s.message()));
  }
  KVS_RETURN_IF_ERROR(
      step("creating the client namespace", run_command({"ip", "netns", "add", l->client_ns_})));
  KVS_RETURN_IF_ERROR(
      step("creating the veth pair",
           run_command({"ip", "link", "add", l->server_dev_, "netns", l->server_ns_, "type", "veth",
                        "peer", "name", "kvs-c", "netns", l->client_ns_})));
  for (const auto& [ns, dev, ip] :
       {std::tuple{l->server_ns_, l->server_dev_, l->server_ip_ + "/24"},
        std::tuple{l->client_ns_, std::string("kvs-c"), std::string("10.77.0.2/24")}}) {
    KVS_RETURN_IF_ERROR(
        step("addressing the veth", run_command({"ip", "-n", ns, "addr", "add", ip, "dev", dev})));
    KVS_RETURN_IF_ERROR(
        step("raising the veth", run_command({"ip", "-n", ns, "link", "set", dev, "up"})));
    KVS_RETURN_IF_ERROR(
        step("raising loopback", run_command({"ip", "-n", ns, "link", "set", "lo", "up"})));
  }
  // The kernel reports a new veth running up to a second after it is raised (linkwatch), and
  // UCX offers only running devices: wait for both ends.
  for (const auto& [ns, dev] :
       {std::pair{l->server_ns_, l->server_dev_}, std::pair{l->client_ns_, std::string("kvs-c")}}) {
    bool up = false;
    for (int i = 0; i < 100 && !up; ++i) {
      const auto shown = command_output({"ip", "-n", ns, "-o", "link", "show", dev});
      up = shown && shown->find("state UP") != std::string::npos;
      if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    if (!up) return Status(Errc::io_error, fmt::format("{} in {} did not come up", dev, ns));
  }
  return l;
}

ShapedLink::~ShapedLink() {
  // Deleting a namespace deletes its end of the veth, and with it the other end and the qdisc.
  for (const std::string& ns : {server_ns_, client_ns_})
    if (!ns.empty()) (void)run_command({"ip", "netns", "del", ns});
}

Status ShapedLink::set_rate(double gbit_per_s) {
  // Token bucket on both ends' egress (a symmetric link): a burst of 2 ms at the rate (at least
  // 64 KiB, one TSO segment), a queue of 50 ms beyond which packets drop as on a bottleneck.
  const double bits = gbit_per_s * 1e9;
  const auto burst = static_cast<long>(std::max(65536.0, bits / 8 * 0.002));
  for (const auto& [ns, dev] :
       {std::pair{server_ns_, server_dev_}, std::pair{client_ns_, std::string("kvs-c")}}) {
    const Status s =
        run_command({"ip", "netns", "exec", ns, "tc", "qdisc", shaped_ ? "change" : "add", "dev",
                     dev, "root", "tbf", "rate", fmt::format("{}bit", static_cast<long long>(bits)),
                     "burst", std::to_string(burst), "latency", "50ms"});
    if (!s.is_ok()) {
      return Status(s.code(), fmt::format("setting {} Gbit/s on {} with tc: {}", gbit_per_s, dev,
                                          s.message()));
    }
  }
  shaped_ = true;
  return Status::ok();
}

std::vector<std::string> ShapedLink::in_server(std::vector<std::string> argv) const {
  argv.insert(argv.begin(), {"ip", "netns", "exec", server_ns_});
  return argv;
}

std::vector<std::string> ShapedLink::in_client(std::vector<std::string> argv) const {
  argv.insert(argv.begin(), {"ip", "netns", "exec", client_ns_});
  return argv;
}

}  // namespace kvstream::cli
