// `kvstream perf`: a ucx_perftest look-alike. Without a host it is the server: it waits for one
// client on -p PORT, checks its secret, and runs the receiving side; with a host it is the
// client: it sends the test's parameters, runs the sending side and prints ucx_perftest's table.
// Worker addresses travel over the authenticated control plane.
#include <fmt/format.h>

#include <boost/asio/ip/tcp.hpp>
#include <charconv>
#include <cstring>

#include "cli/common.hpp"
#include "control.hpp"
#include "endpoints.hpp"
#include "perf.hpp"

namespace kvstream::cli {

namespace {

using namespace std::chrono_literals;
using namespace kvstream::transport;
namespace asio = boost::asio;

constexpr std::string_view kUsage =
    "usage: kvstream perf [HOST] [options]\n"
    "  without HOST: serve one test, then exit; with HOST: run the test against its server\n"
    "  -t TEST     test to run: tag_bw (UCP tag match bandwidth)\n"
    "  -s SIZE     message size in bytes (8)\n"
    "  -n ITERS    timed iterations (1000)\n"
    "  -w ITERS    warm-up iterations (100)\n"
    "  -O COUNT    sends in flight at most (32)\n"
    "  -m TYPE     memory type: host\n"
    "  -p PORT     control port (13337)\n"
    "  -f          print only the final numbers\n"
    "  -v          print CSV\n"
    "  --unit U    bandwidth in MB/s (MiB/s, as ucx_perftest) or GB/s (10^9 bytes/s)\n"
    "  --secret-file F   the shared secret (else $KVSTREAM_SECRET); never on the command line\n"
    "  --timeout S       seconds the whole test may take (60)\n";

struct Options {
  std::string host;
  PerfParams params;
  std::uint16_t port = 13337;
  bool final_only = false, csv = false, gigabytes = false;
  std::string secret_file;
  std::int64_t timeout_s = 60;
};

Expected<std::uint64_t> number(std::string_view flag, std::string_view text, std::uint64_t max) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v > max) {
    return Status(Errc::invalid_argument,
                  fmt::format("{} '{}': not a number up to {}", flag, text, max));
  }
  return v;
}

Expected<Options> parse(std::span<const std::string_view> args, bool& help) {
  Options o;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view a = args[i];
    const auto value = [&]() -> Expected<std::string_view> {
      if (i + 1 >= args.size()) {
        return Status(Errc::invalid_argument, fmt::format("{} needs a value", a));
      }
      return args[++i];
    };
    if (a == "--help" || a == "-h") {
      help = true;
      return o;
    } else if (a == "-f") {
      o.final_only = true;
    } else if (a == "-v") {
      o.csv = true;
    } else if (a == "-t") {
      KVS_ASSIGN_OR_RETURN(const auto v, value());
      o.params.test = std::string(v);
    } else if (a == "-s" || a == "-n" || a == "-w" || a == "-O" || a == "-p" || a == "--timeout") {
      KVS_ASSIGN_OR_RETURN(const auto v, value());
      const std::uint64_t max = a == "-p" ? 65535 : a == "-O" ? 1u << 20 : std::uint64_t{1} << 40;
      KVS_ASSIGN_OR_RETURN(const std::uint64_t n, number(a, v, max));
      if (a == "-s") o.params.size = n;
      if (a == "-n") o.params.iterations = n;
      if (a == "-w") o.params.warmup = n;
      if (a == "-O") o.params.window = static_cast<std::uint32_t>(n);
      if (a == "-p") o.port = static_cast<std::uint16_t>(n);
      if (a == "--timeout") o.timeout_s = static_cast<std::int64_t>(n);
    } else if (a == "-m") {
      KVS_ASSIGN_OR_RETURN(const auto v, value());
      if (v != "host") {
        return Status(Errc::invalid_argument,
                      fmt::format("-m '{}': this build moves host memory only", v));
      }
    } else if (a == "--unit") {
      KVS_ASSIGN_OR_RETURN(const auto v, value());
      if (v != "MB" && v != "GB") {
        return Status(Errc::invalid_argument, fmt::format("--unit '{}': MB or GB", v));
      }
      o.gigabytes = v == "GB";
    } else if (a == "--secret-file") {
      KVS_ASSIGN_OR_RETURN(const auto v, value());
      o.secret_file = std::string(v);
    } else if (!a.empty() && a[0] != '-' && o.host.empty()) {
      o.host = std::string(a);
    } else {
      return Status(Errc::invalid_argument, fmt::format("unknown option '{}'", a));
    }
  }
  KVS_RETURN_IF_ERROR(validate(o.params));
  return o;
}

Status serve(const Options& o, const Secret& secret) {
  const auto deadline = Clock::now() + std::chrono::seconds(o.timeout_s);
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::tcp::v4(), o.port});
  fmt::print(stderr, "Waiting for connection on port {}...\n", acceptor.local_endpoint().port());
  auto channel_io = std::make_unique<asio::io_context>();
  asio::ip::tcp::socket socket = acceptor.accept(*channel_io);
  ControlChannel channel(std::move(channel_io), std::move(socket));
  fmt::print(stderr, "Accepted connection from {}\n", channel.peer());
  KVS_RETURN_IF_ERROR(authenticate_client(
      channel, secret, Clock::now() + 10s,
      [](const std::string& line) { fmt::print(stderr, "kvstream perf: {}\n", line); }));
  KVS_ASSIGN_OR_RETURN(const Frame request, channel.receive(deadline));
  if (request.type != FrameType::perf_request) {
    const Status s(Errc::protocol_error,
                   fmt::format("expected perf_request, got {}", frame_type_name(request.type)));
    channel.fail(s);
    return s;
  }
  auto params = decode_perf_request(request.payload);
  if (!params) {
    channel.fail(params.error());
    return params.error();
  }
  KVS_ASSIGN_OR_RETURN(UcxThread ucx, open_ucx_thread());
  KVS_ASSIGN_OR_RETURN(auto ep, pair_workers(channel, ucx.worker, false, deadline));
  return run_tag_bw_receiver(*ep, *params, deadline);
}

Status client(const Options& o, const Secret& secret) {
  const auto deadline = Clock::now() + std::chrono::seconds(o.timeout_s);
  KVS_ASSIGN_OR_RETURN(auto channel, ControlChannel::connect(o.host, o.port, Clock::now() + 10s));
  KVS_RETURN_IF_ERROR(authenticate_to_server(*channel, secret, Clock::now() + 10s));
  KVS_ASSIGN_OR_RETURN(UcxThread ucx, open_ucx_thread());
  KVS_RETURN_IF_ERROR(
      channel->send(FrameType::perf_request, encode_perf_request(o.params), deadline));
  KVS_ASSIGN_OR_RETURN(auto ep, pair_workers(*channel, ucx.worker, true, deadline));
  KVS_ASSIGN_OR_RETURN(PerfResult r, run_tag_bw_sender(*ep, o.params, deadline));
  if (o.gigabytes) r.bandwidth_mib_s *= double(1 << 20) / 1e9;
  if (o.csv) {
    fmt::print("{}", perf_csv(r));
  } else {
    if (!o.final_only) {
      std::string header = perf_table_header(o.params);
      if (o.gigabytes) {
        header.replace(header.find("bandwidth (MB/s)"), 16, "bandwidth (GB/s)");
      }
      fmt::print("{}", header);
    }
    fmt::print("{}", perf_table_final(r));
  }
  return Status::ok();
}

}  // namespace

int run_perf(std::span<const std::string_view> args) {
  bool help = false;
  auto o = parse(args, help);
  if (help) {
    fmt::print("{}", kUsage);
    return kExitOk;
  }
  if (!o) {
    fmt::print(stderr, "kvstream perf: error: {}\n", o.error().message());
    return kExitUsage;
  }
  auto secret = load_secret(o->secret_file);
  if (!secret) return report_failure("kvstream perf", secret.error());
  const Status s = o->host.empty() ? serve(*o, *secret) : client(*o, *secret);
  return s.is_ok() ? kExitOk : report_failure("kvstream perf", s);
}

}  // namespace kvstream::cli
