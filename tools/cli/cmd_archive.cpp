// `kvstream codec encode|decode|inspect`: context archives from the command line.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <optional>

#include "cli/common.hpp"
#include "kvstream/archive.hpp"
#include "runner/model.hpp"
#include "runner/runner.hpp"
#include "runner/scoring.hpp"

namespace kvstream::cli {

int codec_encode(std::span<const std::string_view> args) {
  std::string model_path, tokens_path, out_path, profile_path;
  DType dtype = DType::f16;
  std::int64_t index = 0, length = 0, chunk = 256, max_level = 5;
  bool verbatim = false;
  ArgParser p("kvstream codec encode",
              "Builds the KV cache of one context with the reference model and writes a context\n"
              "archive: its tokens and every chunk at levels 0..--max-level.");
  p.option("--model", "PATH", "llama2.c checkpoint", &model_path, true)
      .option("--tokens", "FILE", "contexts, one per line", &tokens_path, true)
      .option("--out", "FILE", "archive to write (atomically)", &out_path, true)
      .option("--context", "I", "which context of the file (0-based)", &index, 0, INT64_MAX)
      .option("--length", "N", "tokens of the context to keep (0: all)", &length, 0, 1 << 20)
      .option("--chunk", "T", "tokens per chunk", &chunk, 1, 65536)
      .option("--max-level", "L", "highest level stored", &max_level, 0, kMaxLevel)
      .option("--profile", "FILE", "codec profile (default: built-in rule)", &profile_path)
      .option("--dtype", "T", "dtype of the KV cache: f32, f16 or bf16", &dtype)
      .flag("--verbatim-level0",
            "store level 0 as the values themselves (a copy to decode, about 15% larger than "
            "entropy coded): for receivers whose link is faster than their decoder",
            &verbatim);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  auto inputs = load_model_and_contexts(model_path, tokens_path);
  if (!inputs) return report_failure(p.command(), inputs.error());
  const runner::Model& model = inputs->model;
  const auto& contexts = inputs->contexts;
  if (static_cast<std::size_t>(index) >= contexts.size()) {
    return report_failure(
        p.command(), Status(Errc::out_of_range, fmt::format("--context {}: '{}' holds {}", index,
                                                            tokens_path, contexts.size())));
  }
  std::span<const std::int32_t> tokens = contexts[static_cast<std::size_t>(index)];
  if (length > 0 && static_cast<std::size_t>(length) < tokens.size()) {
    tokens = tokens.first(static_cast<std::size_t>(length));
  }
  std::optional<CodecProfile> profile;
  if (!profile_path.empty()) {
    auto loaded = CodecProfile::load(profile_path);
    if (!loaded) return report_failure(p.command(), loaded.error());
    profile = std::move(*loaded);
  }
  auto kv = KvBuffer::create(model.kv_layout(static_cast<std::uint32_t>(tokens.size()), dtype));
  if (!kv) return report_failure(p.command(), kv.error());
  runner::Runner runner(model);
  if (Status s = runner::capture_kv(runner, tokens, kv->view()); !s.is_ok()) {
    return report_failure(p.command(), s);
  }
  ArchiveOptions o;
  o.chunk_tokens = static_cast<std::uint32_t>(chunk);
  o.max_level = static_cast<std::uint8_t>(max_level);
  o.profile = profile ? &*profile : nullptr;
  o.verbatim_level0 = verbatim;
  if (Status s = write_archive(out_path, kv->view(), tokens, o); !s.is_ok()) {
    return report_failure(p.command(), s);
  }
  fmt::print("wrote {}: {} tokens, {} chunks of {}, levels 0..{}\n", out_path, tokens.size(),
             (tokens.size() + chunk - 1) / chunk, chunk, max_level);
  return kExitOk;
}

int codec_inspect(std::span<const std::string_view> args) {
  std::string archive_path;
  bool json = false;
  ArgParser p("kvstream codec inspect", "Describes a context archive: layout and sizes per level.");
  p.option("--archive", "FILE", "context archive", &archive_path, true)
      .flag("--json", "print one JSON object", &json);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  auto r = ArchiveReader::open(archive_path);
  if (!r) return report_failure(p.command(), r.error());
  const ArchiveInfo& info = r->info();
  const KvLayout& l = info.layout;
  std::vector<std::string> levels;
  std::vector<std::byte> chunk;
  for (std::uint32_t level = 0; level < info.levels; ++level) {
    std::uint64_t bytes = 0;
    for (std::uint32_t i = 0; i < info.chunk_count; ++i)
      bytes += r->chunk_size(i, level);
    const double bpv = 8.0 * static_cast<double>(bytes) / static_cast<double>(l.total_values());
    // Transform-coded levels decode only with their profile: say which transform they need.
    if (Status s = r->read_chunk(0, level, chunk); !s.is_ok()) {
      return report_failure(p.command(), s);
    }
    const auto chunk_info = read_chunk_info(chunk);
    if (!chunk_info) return report_failure(p.command(), chunk_info.error());
    const std::string id =
        chunk_info->transformed ? fmt::format("{:08x}", chunk_info->transform_id) : "";
    levels.push_back(
        json ? fmt::format("{{\"level\": {}, \"bytes\": {}, \"bits_per_value\": {:.4f}, "
                           "\"transform\": {}}}",
                           level, bytes, bpv, id.empty() ? "null" : json_string(id))
             : fmt::format("  level {:<2} {:>12} bytes  {:7.3f} bits/value{}", level, bytes, bpv,
                           id.empty() ? "" : "  transform " + id));
  }
  if (json) {
    fmt::print(
        "{{\"archive\": {}, \"layers\": {}, \"kv_heads\": {}, \"head_dim\": {}, "
        "\"dtype\": \"{}\", \"tokens\": {}, \"chunk_tokens\": {}, \"chunks\": {}, "
        "\"levels\": [{}]}}\n",
        json_string(archive_path), l.layers, l.kv_heads, l.head_dim, dtype_name(l.dtype), l.tokens,
        info.chunk_tokens, info.chunk_count, fmt::join(levels, ", "));
  } else {
    fmt::print("{}: {} layers x {} KV heads x {} head_dim, {}, {} tokens in {} chunks of {}\n",
               archive_path, l.layers, l.kv_heads, l.head_dim, dtype_name(l.dtype), l.tokens,
               info.chunk_count, info.chunk_tokens);
    fmt::print("{} ({} bytes as {})\n", fmt::join(levels, "\n"), l.total_bytes(),
               dtype_name(l.dtype));
  }
  return kExitOk;
}

int codec_decode(std::span<const std::string_view> args) {
  std::string archive_path, out_path, profile_path;
  std::optional<DType> dtype;
  std::int64_t level = 0, threads = 1;
  ArgParser p("kvstream codec decode",
              "Decodes every chunk of a context archive at one level and writes the KV cache as\n"
              "raw values laid out [layer][K|V][token][head][dim] (atomically).");
  p.option("--archive", "FILE", "context archive", &archive_path, true)
      .option("--out", "FILE", "raw KV file to write", &out_path, true)
      .option("--level", "L", "level to decode", &level, 0, kMaxLevel)
      .option("--profile", "FILE",
              "the profile the archive was encoded with (needed when it holds a transform)",
              &profile_path)
      .option("--dtype", "T", "dtype written (default: the archive's)", &dtype)
      .option("--threads", "N", "threads that decode each chunk", &threads, 1, 256);
  if (auto rc = parse_or_exit(p, args)) return *rc;
  std::optional<CodecProfile> profile;
  if (!profile_path.empty()) {
    auto loaded = CodecProfile::load(profile_path);
    if (!loaded) return report_failure(p.command(), loaded.error());
    profile = std::move(*loaded);
  }
  auto r = ArchiveReader::open(archive_path);
  if (!r) return report_failure(p.command(), r.error());
  KvLayout layout = r->info().layout;
  if (dtype) layout.dtype = *dtype;
  auto kv = KvBuffer::create(layout);
  if (!kv) return report_failure(p.command(), kv.error());
  std::vector<std::byte> chunk;
  ChunkDecoder decoder(static_cast<unsigned>(threads));
  for (std::uint32_t i = 0; i < r->info().chunk_count; ++i) {
    Status s = r->read_chunk(i, static_cast<std::uint32_t>(level), chunk);
    if (s.is_ok()) s = decoder.decode(chunk, kv->view(), profile ? &*profile : nullptr);
    if (!s.is_ok()) return report_failure(p.command(), s);
  }
  if (Status s = write_file_atomically(out_path, kv->bytes()); !s.is_ok()) {
    return report_failure(p.command(), s);
  }
  fmt::print("wrote {}: {} tokens at level {}, {} bytes of {}\n", out_path, layout.tokens, level,
             layout.total_bytes(), dtype_name(layout.dtype));
  return kExitOk;
}

}  // namespace kvstream::cli
