// Two network namespaces joined by a veth pair, both ends' egress shaped with tc tbf: a
// symmetric link of a given rate on one machine. Everything it made is removed by its destructor,
// and by the next create() if a process that made one died without removing it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "kvstream/status.hpp"

namespace kvstream::cli {

class ShapedLink {
 public:
  // Needs root (CAP_NET_ADMIN) and iproute2; errors say which step failed.
  static Expected<std::unique_ptr<ShapedLink>> create();
  ~ShapedLink();
  ShapedLink(const ShapedLink&) = delete;
  ShapedLink& operator=(const ShapedLink&) = delete;

  // Both directions at `gbit_per_s` from now on.
  Status set_rate(double gbit_per_s);

  // argv prefixes that run a command inside each namespace.
  std::vector<std::string> in_server(std::vector<std::string> argv) const;
  std::vector<std::string> in_client(std::vector<std::string> argv) const;
  const std::string& server_address() const { return server_ip_; }

 private:
  ShapedLink() = default;
  std::string server_ns_, client_ns_, server_dev_, server_ip_;
  bool shaped_ = false;
};

}  // namespace kvstream::cli
