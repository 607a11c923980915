#include "cli/adaptive_cli.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <optional>
#include <thread>

#include "cli/common.hpp"
#include "endpoints.hpp"
#include "runner/runner.hpp"

namespace kvstream::cli {

namespace {

std::string ms(double seconds) {
  return std::isfinite(seconds) ? fmt::format("{:.3f}", seconds * 1e3) : "null";
}

std::string gbit(double bytes_per_s) {
  return fmt::format("{:.4f}", bytes_per_s * 8 / 1e9);
}

// Sleeps out the rest of `least` since `since`.
void pace(std::chrono::steady_clock::time_point since, double least) {
  const auto until = since + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                 std::chrono::duration<double>(least));
  std::this_thread::sleep_until(until);
}

}  // namespace

Expected<std::unique_ptr<scheduler::Policy>> make_policy(std::string_view name) {
  if (name == "planner") return scheduler::planner_policy();
  if (name == "cachegen") return scheduler::cachegen_policy();
  if (name == "recompute") return scheduler::recompute_policy();
  if (name.size() > 1 && name[0] == 'L') {
    std::uint32_t level = 0;
    const auto [end, ec] = std::from_chars(name.data() + 1, name.data() + name.size(), level);
    if (ec == std::errc() && end == name.data() + name.size())
      return scheduler::fixed_policy(level, std::string(name));
  }
  return Status(Errc::invalid_argument,
                fmt::format("policy '{}': want planner, cachegen, recompute or L<level>", name));
}

Expected<std::vector<double>> parse_losses(std::string_view text) {
  KVS_ASSIGN_OR_RETURN(std::vector<double> out, parse_numbers(text, "level loss"));
  for (double v : out) {
    if (v < 0) return Status(Errc::invalid_argument, fmt::format("level loss {} is below 0", v));
  }
  return out;
}

std::string Engine::describe() const {
  if (kind == "runner") {
    return tokens_per_s > 0
               ? fmt::format("reference runner, slowed to at most {} tokens/s", tokens_per_s)
               : std::string("reference runner");
  }
  if (kind == "standin") return fmt::format("stand-in: {} tokens/s, writes no KV", tokens_per_s);
  return "none";
}

Expected<decltype(transport::AdaptiveOptions::recompute)> runner_engine(const runner::Model& model,
                                                                        const KvView& dst,
                                                                        double tokens_per_s) {
  const KvLayout own = model.kv_layout(dst.layout().tokens, dst.layout().dtype);
  if (!own.same_shape(dst.layout())) {
    return Status(Errc::invalid_argument,
                  fmt::format("the model's KV ({} layers x {} heads x {}) is not the stream's "
                              "({} x {} x {}): it cannot recompute its chunks",
                              own.layers, own.kv_heads, own.head_dim, dst.layout().layers,
                              dst.layout().kv_heads, dst.layout().head_dim));
  }
  auto runner = std::make_shared<runner::Runner>(model);
  return decltype(transport::AdaptiveOptions::recompute)(
      [runner, dst, tokens_per_s](std::uint32_t, std::uint32_t begin,
                                  std::span<const std::int32_t> tokens) -> Status {
        const auto t0 = std::chrono::steady_clock::now();
        KVS_RETURN_IF_ERROR(runner::recompute_kv(*runner, dst, begin, tokens));
        if (tokens_per_s > 0) pace(t0, static_cast<double>(tokens.size()) / tokens_per_s);
        return Status::ok();
      });
}

decltype(transport::AdaptiveOptions::recompute) standin_engine(double tokens_per_s) {
  return [tokens_per_s](std::uint32_t, std::uint32_t, std::span<const std::int32_t> tokens) {
    pace(std::chrono::steady_clock::now(), static_cast<double>(tokens.size()) / tokens_per_s);
    return Status::ok();
  };
}

std::string describe_chunk(const transport::ChunkReport& c, std::uint32_t chunks) {
  return fmt::format(
      "chunk {}/{}: {}{}{}, {} bytes; decided {} ms, landed {} ms, ready {} ms; estimate {} "
      "Gbit/s (plan with {})",
      c.chunk + 1, chunks, to_string(c.choice),
      c.revoked_recompute ? " (its recompute would have been late)" : "",
      c.upgraded_from ? fmt::format(" (fetched at L{} first)", *c.upgraded_from) : "", c.bytes,
      ms(c.decided), ms(c.landed), ms(c.ready), gbit(c.estimate), gbit(c.estimate_low));
}

std::string report_json(const transport::AdaptiveReport& r, std::string_view context,
                        double deadline_s, const Engine& engine) {
  std::string out = fmt::format(
      "{{\"context\": {}, \"policy\": {}, \"deadline_ms\": {}, \"met\": {}, \"load_ms\": {}, "
      "\"bytes\": {}, \"expected_loss\": {:.6g}, \"engine\": {{\"kind\": {}, \"tokens_per_s\": "
      "{}}}, \"decode_gbps\": [",
      json_string(context), json_string(r.policy), ms(deadline_s), r.met, ms(r.load_s), r.bytes,
      r.expected_loss, json_string(engine.kind), engine.tokens_per_s);
  for (std::size_t l = 0; l < r.decode_bytes_per_s.size(); ++l)
    out += fmt::format("{}{:.4g}", l ? ", " : "", r.decode_bytes_per_s[l] / 1e9);
  out += "], \"chunks\": [";
  for (std::size_t i = 0; i < r.chunks.size(); ++i) {
    const transport::ChunkReport& c = r.chunks[i];
    out += fmt::format(
        "{}{{\"chunk\": {}, \"choice\": {}, \"level\": {}, \"bytes\": {}, \"decided_ms\": {}, "
        "\"landed_ms\": {}, \"ready_ms\": {}, \"estimate_gbps\": {}, \"estimate_low_gbps\": {}, "
        "\"predicted_finish_ms\": {}, \"revoked_recompute\": {}, \"upgraded_from\": {}}}",
        i ? ", " : "", c.chunk, json_string(to_string(c.choice)),
        c.choice.fetched() ? std::to_string(c.choice.level) : "null", c.bytes, ms(c.decided),
        ms(c.landed), ms(c.ready), gbit(c.estimate), gbit(c.estimate_low), ms(c.predicted_finish),
        c.revoked_recompute, c.upgraded_from ? std::to_string(*c.upgraded_from) : "null");
  }
  return out + "]}\n";
}

}  // namespace kvstream::cli

namespace kvstream::cli {

namespace {

// The runner's own prefill rate on this machine, over up to 64 of the context's tokens.
Expected<double> measure_runner(const runner::Model& model, std::span<const std::int32_t> tokens,
                                const KvLayout& layout) {
  const auto n = static_cast<std::uint32_t>(std::min<std::size_t>(tokens.size(), 64));
  KvLayout probe = layout;
  probe.tokens = n;
  KVS_ASSIGN_OR_RETURN(KvBuffer kv, KvBuffer::create(probe));
  runner::Runner r(model);
  const auto t0 = std::chrono::steady_clock::now();
  KVS_RETURN_IF_ERROR(runner::recompute_kv(r, kv.view(), 0, tokens.first(n)));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s > 0 ? n / s : 1e9;
}

}  // namespace

int run_adaptive_fetch(std::string_view command, const AdaptiveArgs& a) {
  using namespace std::chrono_literals;
  using transport::Clock;
  auto policy = make_policy(a.policy);
  if (!policy) return report_failure(command, policy.error());
  std::vector<double> losses;
  if (!a.losses.empty()) {
    auto parsed = parse_losses(a.losses);
    if (!parsed) return report_failure(command, parsed.error());
    losses = std::move(*parsed);
  }
  std::vector<double> decode_gbps;
  if (!a.decode_gbps.empty()) {
    auto parsed = parse_numbers(a.decode_gbps, "decode speed");
    if (!parsed) return report_failure(command, parsed.error());
    for (double v : *parsed) {
      if (!(v > 0)) {
        return report_failure(
            command, Status(Errc::invalid_argument,
                            fmt::format("--decode-gbps: decode speed {} is not positive", v)));
      }
    }
    decode_gbps = std::move(*parsed);
  }
  if (!a.model_path.empty() && a.standin) {
    return report_failure(
        command, Status(Errc::invalid_argument, "--model and --standin-engine: choose one engine"));
  }
  if (a.standin && !(a.recompute_tps > 0)) {
    return report_failure(command,
                          Status(Errc::invalid_argument, "--standin-engine needs --recompute-tps"));
  }
  if (a.recompute_tps > 0 && a.model_path.empty() && !a.standin) {
    return report_failure(command,
                          Status(Errc::invalid_argument,
                                 "--recompute-tps needs an engine: --model or --standin-engine"));
  }
  std::optional<runner::Model> model;
  if (!a.model_path.empty()) {
    auto loaded = runner::Model::load(a.model_path);
    if (!loaded) return report_failure(command, loaded.error());
    model = std::move(*loaded);
  }
  auto secret = load_secret(a.secret_file);
  if (!secret) return report_failure(command, secret.error());
  auto connection =
      transport::connect_stream(a.server.first, a.server.second, *secret, Clock::now() + 10s);
  if (!connection) return report_failure(command, connection.error());
  transport::StreamReceiver receiver = (*connection)->receiver();
  auto info = receiver.open(a.context, Clock::now() + 10s);
  if (!info) return report_failure(command, info.error());
  std::vector<std::byte> buffer(info->layout.total_bytes());
  auto kv = KvView::contiguous(buffer.data(), buffer.size(), info->layout);
  if (!kv) return report_failure(command, kv.error());

  transport::AdaptiveOptions o;
  o.deadline_s = a.deadline_ms / 1e3;
  o.level_loss = losses;
  o.policy = policy->get();
  o.seed_bytes_per_s = a.initial_gbps * 1e9 / 8;
  if (decode_gbps.size() == 1) {
    o.decode_bytes_per_s = decode_gbps[0] * 1e9;
  } else if (!decode_gbps.empty()) {
    if (decode_gbps.size() != info->levels) {
      return report_failure(command, Status(Errc::invalid_argument,
                                            fmt::format("--decode-gbps: {} speeds for a stream "
                                                        "of {} levels (give one, or one per level)",
                                                        decode_gbps.size(), info->levels)));
    }
    for (double g : decode_gbps)
      o.level_decode_bytes_per_s.push_back(g * 1e9);
  }
  Engine engine;
  if (model) {
    auto run = runner_engine(*model, *kv, a.recompute_tps);
    if (!run) return report_failure(command, run.error());
    o.recompute = std::move(*run);
    engine.kind = "runner";
    engine.tokens_per_s = a.recompute_tps;
    o.recompute_tokens_per_s = a.recompute_tps;
    if (!(o.recompute_tokens_per_s > 0)) {
      auto measured = measure_runner(*model, info->tokens, info->layout);
      if (!measured) return report_failure(command, measured.error());
      o.recompute_tokens_per_s = *measured;
    }
  } else if (a.standin) {
    o.recompute = standin_engine(a.recompute_tps);
    engine.kind = "standin";
    engine.tokens_per_s = a.recompute_tps;
    o.recompute_tokens_per_s = a.recompute_tps;
  }
  transport::StreamReceiver::FetchOptions f;
  f.window = static_cast<std::uint32_t>(a.window);
  f.backlog = static_cast<std::uint32_t>(a.backlog);
  f.chunk_timeout = std::chrono::milliseconds(a.timeout_ms);
  f.progress_thread = a.progress_thread;
  f.decode_threads = static_cast<unsigned>(a.decode_threads);
  if (a.no_decode) {
    // Landed chunks are already checked to be the ones asked for; nothing else is done.
    f.consume = [](std::size_t, std::span<const std::byte>) { return Status::ok(); };
  }
  transport::AdaptiveReport report;
  // The deadline counts from here; harnesses that shape the link in time key on this line.
  fmt::print(stderr, "kvstream fetch: streaming {}: {} chunks, deadline {} ms\n", a.context,
             info->chunk_count, a.deadline_ms);
  std::fflush(stderr);
  const Status s = transport::fetch_adaptive(receiver, *info, *kv, f, o, report);
  receiver.close(Clock::now() + 1s);
  for (const transport::ChunkReport& c : report.chunks)
    if (c.decided > 0 || c.bytes > 0 || c.ready > 0)
      fmt::print(stderr, "kvstream fetch: {}\n", describe_chunk(c, info->chunk_count));
  if (!a.json_path.empty()) {
    const std::string json = report_json(report, a.context, o.deadline_s, engine);
    if (Status w = write_file_atomically(a.json_path, std::as_bytes(std::span(json))); !w.is_ok()) {
      return report_failure(command, w);
    }
  }
  if (!s.is_ok()) return report_failure(command, s);
  if (Status w = write_file_atomically(a.out_path, buffer); !w.is_ok())
    return report_failure(command, w);
  std::size_t recomputed = 0;
  for (const transport::ChunkReport& c : report.chunks)
    recomputed += c.choice.recompute();
  fmt::print(
      "fetched {} by {}: {} chunks ({} recomputed by the engine: {}), {} bytes in {:.1f} ms; "
      "deadline {:.1f} ms {}; expected loss {:.4g}; wrote {}{}\n",
      a.context, report.policy, info->chunk_count, recomputed, engine.describe(), report.bytes,
      report.load_s * 1e3, a.deadline_ms, report.met ? "met" : "MISSED", report.expected_loss,
      a.out_path,
      a.no_decode                                  ? " (not decoded: zeros)"
      : engine.kind == "standin" && recomputed > 0 ? " (the stand-in's chunks are zeros)"
                                                   : "");
  return kExitOk;
}

}  // namespace kvstream::cli
