// `kvstream perf`: a ucx_perftest look-alike. Without a host it is the server: it waits for one
// client on -p PORT, checks its secret, and runs its side of the test; with a host it is the
// client: it sends the test's parameters, runs its side and prints ucx_perftest's table. In
// tag_bw and am_bw the client sends; in kv_stream_bw and kv_lat the server streams a model-shaped
// KV cache and the client fetches and decodes it, and also prints the efficiency against tag_bw
// over the same endpoints. Worker addresses travel over the authenticated control plane.
#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <charconv>
#include <cmath>
#include <cstring>
#include <optional>

#include "cli/common.hpp"
#include "control.hpp"
#include "endpoints.hpp"
#include "kv_perf.hpp"
#include "perf.hpp"
#include "runner/model.hpp"
#include "runner/model_shaped.hpp"
#include "slot_placement.hpp"
#if KVSTREAM_HAVE_CUDA
#include "kvstream/gpu_decoder.hpp"
#endif

namespace kvstream::cli {

namespace {

using namespace std::chrono_literals;
using namespace kvstream::transport;
namespace asio = boost::asio;

constexpr bool kHaveCuda = KVSTREAM_HAVE_CUDA != 0;

constexpr std::string_view kUsage =
    "usage: kvstream perf [HOST] [options]\n"
    "  without HOST: serve one test, then exit; with HOST: run the test against its server\n"
    "  -t TEST     test to run: tag_bw (UCP tag match bandwidth), am_bw (active message\n"
    "              bandwidth), kv_stream_bw (KV chunks streamed and decoded, with the\n"
    "              efficiency against tag_bw), kv_lat (one chunk at a time, latency)\n"
    "  -s SIZE     message size in bytes (8); kv tests: chunk size, about\n"
    "  -n ITERS    timed iterations (1000)\n"
    "  -w ITERS    warm-up iterations (100)\n"
    "  -O COUNT    sends in flight at most (32)\n"
    "  -m TYPE     memory type: host; cuda (kv tests, CUDA builds): decode on the GPU\n"
    "  --level L   kv tests: codec level of the chunks (0)\n"
    "  --chunks N  kv tests: distinct chunks streamed in turn (1, as ucx_perftest's one\n"
    "              buffer; more measures memory too)\n"
    "  --no-decode kv tests: check each chunk's header but do not decode it\n"
    "  --progress-thread  kv tests: a thread drives UCX while this one decodes\n"
    "  --decode-threads N  kv tests: threads that decode each chunk on the CPU (1)\n"
    "  --timeline  kv tests: when each chunk landed and was decoded, and whether decoding\n"
    "              overlapped the transfer (the tail after the last landing)\n"
    "  --model F   kv tests, server: the checkpoint whose KV fills the cache\n"
    "              ($KVSTREAM_MODELS/stories260K.bin)\n"
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
  KvPerfOptions kv;
  bool cuda = false;      // kv tests: decode on the GPU into device memory
  bool timeline = false;  // kv tests: print each chunk's landing and readiness
  std::string model;
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
    } else if (a == "--no-decode") {
      o.kv.decode = false;
    } else if (a == "--timeline") {
      o.timeline = true;
    } else if (a == "--progress-thread") {
      o.kv.progress_thread = true;
    } else if (a == "--model") {
      KVS_ASSIGN_OR_RETURN(const auto v, value());
      o.model = std::string(v);
    } else if (a == "-t") {
      KVS_ASSIGN_OR_RETURN(const auto v, value());
      o.params.test = std::string(v);
    } else if (a == "-s" || a == "-n" || a == "-w" || a == "-O" || a == "-p" || a == "--level" ||
               a == "--chunks" || a == "--timeout" || a == "--decode-threads") {
      KVS_ASSIGN_OR_RETURN(const auto v, value());
      const std::uint64_t max = a == "-p"                 ? 65535
                                : a == "-O"               ? 1u << 20
                                : a == "--level"          ? kMaxLevel
                                : a == "--chunks"         ? 4096
                                : a == "--decode-threads" ? 256
                                                          : std::uint64_t{1} << 40;
      KVS_ASSIGN_OR_RETURN(const std::uint64_t n, number(a, v, max));
      if (a == "-s") o.params.size = n;
      if (a == "-n") o.params.iterations = n;
      if (a == "-w") o.params.warmup = n;
      if (a == "-O") o.params.window = static_cast<std::uint32_t>(n);
      if (a == "-p") o.port = static_cast<std::uint16_t>(n);
      if (a == "--level") o.params.level = static_cast<std::uint8_t>(n);
      if (a == "--chunks") o.params.chunks = static_cast<std::uint32_t>(n);
      if (a == "--timeout") o.timeout_s = static_cast<std::int64_t>(n);
      if (a == "--decode-threads")
        o.kv.decode_threads = std::max<unsigned>(1, static_cast<unsigned>(n));
    } else if (a == "-m") {
      KVS_ASSIGN_OR_RETURN(const auto v, value());
      if (v != "host" && (v != "cuda" || !kHaveCuda)) {
        return Status(Errc::invalid_argument,
                      fmt::format("-m '{}': this build moves host memory only{}", v,
                                  kHaveCuda ? " (and -m cuda for kv tests)" : ""));
      }
      o.cuda = v == "cuda";
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
  if (o.cuda && !is_kv_test(o.params.test)) {
    return Status(Errc::invalid_argument,
                  fmt::format("-m cuda: {} moves host memory only; kv_stream_bw and kv_lat decode "
                              "into GPU memory",
                              o.params.test));
  }
  return o;
}

// The server's stream for the kv tests: a cache of a large model's shape (32 layers, 8 KV heads,
// head_dim 128, fp16) filled with `model`'s real KV, p.chunks chunks of about p.size bytes at
// p.level, encoded once at levels 0..p.level.
Expected<std::shared_ptr<EncodedSource>> perf_stream(const PerfParams& p, const std::string& path) {
  KVS_ASSIGN_OR_RETURN(const auto model,
                       runner::Model::load(path.empty() ? runner::models_dir() / "stories260K.bin"
                                                        : std::filesystem::path(path)));
  KvLayout shape{32, 8, 128, DType::f16, 512};
  KVS_ASSIGN_OR_RETURN(const KvBuffer sampled, runner::model_shaped_kv(model, shape, 8, 100));
  KVS_ASSIGN_OR_RETURN(const std::uint32_t chunk,
                       chunk_tokens_for(sampled.view(), p.size, p.level));
  // The stream's tokens repeat the sampled ones, as model_shaped_kv itself tiles them (and its
  // contexts' prefixes are the shorter contexts it would sample): no second sampling.
  shape.tokens = chunk * p.chunks;
  KVS_ASSIGN_OR_RETURN(KvBuffer kv, KvBuffer::create(shape));
  for (std::uint32_t t = 0; t < shape.tokens; t += sampled.layout().tokens) {
    KVS_RETURN_IF_ERROR(copy_tokens(sampled.view(), 0, kv.view(), t,
                                    std::min(sampled.layout().tokens, shape.tokens - t)));
  }
  PushSource::Context c;
  c.kv = kv.view();
  c.tokens.assign(shape.tokens, 1);  // a perf stream is never recomputed
  c.chunk_tokens = chunk;
  c.max_level = p.level;
  auto source = std::make_shared<EncodedSource>();
  KVS_RETURN_IF_ERROR(source->add(kPerfContext, c));
  return source;
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
  std::shared_ptr<EncodedSource> source;
  if (is_kv_test(params->test)) {
    auto built = perf_stream(*params, o.model);
    if (!built) {
      channel.fail(built.error());
      return built.error();
    }
    source = std::move(*built);
  }
  KVS_ASSIGN_OR_RETURN(UcxThread ucx, open_ucx_thread());
  KVS_ASSIGN_OR_RETURN(auto ep, pair_workers(channel, ucx.worker, false, deadline));
  if (source) {
    UcxDataLink link(std::move(ep), sender_liveness(channel));
    return serve_kv_perf(channel, link, *source, *params, deadline);
  }
  if (params->test == "am_bw") return run_am_bw_receiver(*ep, *params, deadline).status();
  return run_tag_bw_receiver(*ep, *params, deadline).status();
}

void print_result(const Options& o, const PerfParams& shown, PerfResult r) {
  if (o.gigabytes) r.bandwidth_mib_s *= double(1 << 20) / 1e9;
  if (o.csv) {
    fmt::print("{}", perf_csv(r));
    return;
  }
  if (!o.final_only) fmt::print("{}", perf_table_header(shown, o.gigabytes));
  fmt::print("{}", perf_table_final(r));
}

#if KVSTREAM_HAVE_CUDA
// -m cuda: chunks decoded by a ring of GpuDecoders (one CUDA stream each) into a device cache
// of the context's shape, each handed over as it lands.
class GpuSink final : public KvPerfSink {
 public:
  Status open(const KvLayout& context) override {
    KVS_ASSIGN_OR_RETURN(GpuDecodeRing ring, GpuDecodeRing::create(0, kDepth));
    KVS_ASSIGN_OR_RETURN(DeviceKvBuffer cache, DeviceKvBuffer::create(context, 0));
    ring_.emplace(std::move(ring));
    cache_.emplace(std::move(cache));
    return Status::ok();
  }
  Status take(std::size_t want, std::span<const std::byte> chunk, const Ready& ready) override {
    return ring_->submit(want, chunk, cache_->view(), nullptr, forward(ready));
  }
  Status finish(const Ready& ready) override { return ring_->drain(forward(ready)); }

 private:
  static GpuDecodeRing::Ready forward(const Ready& ready) {
    return [&ready](std::size_t want, const DecodeTimes& t) {
      ready(want, t.staging_ms + t.kernel_ms);
    };
  }
  // Three chunks on the device at once: one slow decode does not hold up the next two.
  static constexpr std::size_t kDepth = 3;
  std::optional<GpuDecodeRing> ring_;
  std::optional<DeviceKvBuffer> cache_;
};
#endif

// Each chunk's landing, readiness and decode, then what they say about overlap.
void print_timeline(std::span<const ChunkTimes> timeline) {
  const auto ms = [](double v) {
    return std::isnan(v) ? std::string("-") : fmt::format("{:.3f}", v);
  };
  fmt::print("{:>6} {:>12} {:>12} {:>12}\n", "chunk", "landed_ms", "ready_ms", "decode_ms");
  for (std::size_t i = 0; i < timeline.size(); ++i) {
    const ChunkTimes& c = timeline[i];
    fmt::print("{:>6} {:>12} {:>12} {:>12}\n", i, ms(c.landed_ms), ms(c.ready_ms), ms(c.decode_ms));
  }
  const TimelineSummary t = summarize_timeline(timeline);
  if (std::isnan(t.tail_ms) || std::isnan(t.max_decode_ms)) {
    fmt::print("load {} ms (host decode: each chunk decodes as it lands)\n", ms(t.load_ms));
    return;
  }
  fmt::print(
      "transfer {} ms, load {} ms: {} ms after the last landing; one chunk's decode {} ms "
      "(median), {} ms (largest): overlap {}\n",
      ms(t.transfer_ms), ms(t.load_ms), ms(t.tail_ms), ms(t.median_decode_ms), ms(t.max_decode_ms),
      t.overlaps() ? "works" : "falls short");
}

Status client(const Options& o, const Secret& secret) {
  const auto deadline = Clock::now() + std::chrono::seconds(o.timeout_s);
#if KVSTREAM_HAVE_CUDA
  if (o.cuda) KVS_RETURN_IF_ERROR(gpu_device_count().status());  // before the server works
#endif
  KVS_ASSIGN_OR_RETURN(auto channel, ControlChannel::connect(o.host, o.port, Clock::now() + 10s));
  KVS_RETURN_IF_ERROR(authenticate_to_server(*channel, secret, Clock::now() + 10s));
  KVS_ASSIGN_OR_RETURN(UcxThread ucx, open_ucx_thread());
  if (o.cuda) {
    KVS_ASSIGN_OR_RETURN(const MemoryTypes types, ucx.context->memory_types());
    fmt::print(stderr, "kvstream perf: {}\n",
               choose_slot_placement(true, types, /*device_slots_built=*/false).reason);
  }
  KVS_RETURN_IF_ERROR(
      channel->send(FrameType::perf_request, encode_perf_request(o.params), deadline));
  KVS_ASSIGN_OR_RETURN(auto ep, pair_workers(*channel, ucx.worker, true, deadline));
  if (!is_kv_test(o.params.test)) {
    KVS_ASSIGN_OR_RETURN(const PerfResult r, o.params.test == "am_bw"
                                                 ? run_am_bw_sender(*ep, o.params, deadline)
                                                 : run_tag_bw_sender(*ep, o.params, deadline));
    print_result(o, o.params, r);
    return Status::ok();
  }
  UcxDataLink link(std::move(ep), receiver_liveness(*channel));
  KvPerfOptions kv = o.kv;
#if KVSTREAM_HAVE_CUDA
  GpuSink gpu;
  if (o.cuda) {
    kv.sink = &gpu;
    // Slots in pinned memory: the decoders' copies to the device are DMAs from them.
    kv.slots = [](std::size_t bytes) -> Expected<SlotMemory> {
      KVS_ASSIGN_OR_RETURN(auto memory, allocate_pinned(bytes, 0));
      return SlotMemory{std::move(memory), bytes};
    };
  }
#endif
  KVS_ASSIGN_OR_RETURN(const KvPerfResult r, run_kv_perf(*channel, link, o.params, kv, deadline));
  PerfParams shown = o.params;
  shown.size = static_cast<std::uint64_t>(std::llround(r.kv.mean_size));
  print_result(o, shown, r.kv);
  const double baseline = r.baseline.bandwidth_mib_s * (o.gigabytes ? double(1 << 20) / 1e9 : 1.0);
  if (o.csv) {
    fmt::print("efficiency,{:.4f},{:.2f}\n", r.efficiency(), baseline);
  } else {
    fmt::print("Efficiency: {:.1f}% of tag_bw over the same endpoints at {} bytes ({:.2f} {}/s)\n",
               100 * r.efficiency(), static_cast<std::uint64_t>(std::llround(r.baseline.mean_size)),
               baseline, o.gigabytes ? "GB" : "MB");
  }
  if (o.timeline) print_timeline(r.timeline);
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
