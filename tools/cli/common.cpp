#include "cli/common.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "runner/scoring.hpp"

namespace kvstream::cli {

std::optional<int> parse_or_exit(ArgParser& parser, std::span<const std::string_view> args) {
  const Status s = parser.parse(args);
  if (!s.is_ok()) {
    fmt::print(stderr, "{}: error: {} (see --help)\n", parser.command(), s.message());
    return kExitUsage;
  }
  if (parser.help_requested()) {
    fmt::print("{}", parser.usage());
    return kExitOk;
  }
  return std::nullopt;
}

int report_failure(std::string_view command, const Status& status) {
  fmt::print(stderr, "{}: error: {}\n", command, status.message());
  return kExitFailure;
}

int dispatch(std::string_view command, std::span<const Subcommand> subcommands,
             std::span<const std::string_view> args) {
  const auto usage = [&](std::FILE* to) {
    fmt::print(to, "usage: {} <command> [options]\n\ncommands:\n", command);
    for (const Subcommand& s : subcommands)
      fmt::print(to, "  {:<10} {}\n", s.name, s.summary);
    fmt::print(to, "\n'{} <command> --help' describes a command.\n", command);
  };
  if (args.empty()) {
    usage(stderr);
    return kExitUsage;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    usage(stdout);
    return kExitOk;
  }
  for (const Subcommand& s : subcommands) {
    if (args[0] == s.name) return s.run(args.subspan(1));
  }
  fmt::print(stderr, "{}: error: unknown command '{}' (see {} --help)\n", command, args[0],
             command);
  return kExitUsage;
}

Expected<ModelAndContexts> load_model_and_contexts(const std::string& model_path,
                                                   const std::string& tokens_path) {
  KVS_ASSIGN_OR_RETURN(runner::Model model, runner::Model::load(model_path));
  KVS_ASSIGN_OR_RETURN(auto contexts, runner::read_token_file(tokens_path));
  return ModelAndContexts{std::move(model), std::move(contexts)};
}

std::span<const std::vector<std::int32_t>> first_contexts(
    const std::vector<std::vector<std::int32_t>>& contexts, std::int64_t limit) {
  std::span<const std::vector<std::int32_t>> all = contexts;
  return limit > 0 && static_cast<std::size_t>(limit) < all.size()
             ? all.first(static_cast<std::size_t>(limit))
             : all;
}

Expected<double> parse_number(std::string_view text, std::string_view what) {
  double v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) {
    return Status(Errc::invalid_argument, fmt::format("{} '{}' is not a number", what, text));
  }
  return v;
}

Expected<std::vector<double>> parse_numbers(std::string_view text, std::string_view what) {
  return parse_list<double>(text, what,
                            [what](std::string_view item) { return parse_number(item, what); });
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    switch (ch) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned char>(ch));
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

Progress::Progress(std::string label, std::size_t total)
    : label_(std::move(label)), total_(total) {}

void Progress::advance() {
  const std::size_t done = ++done_;
  const auto now = Clock::now();
  std::lock_guard lock(mu_);
  if (now - start_ < std::chrono::seconds(2) || now - last_print_ < std::chrono::seconds(1)) {
    return;
  }
  last_print_ = now;
  printed_ = true;
  fmt::print(stderr, "{}: {}/{} ({:.0f} s)\n", label_, done, total_,
             std::chrono::duration<double>(now - start_).count());
}

void Progress::finish() {
  std::lock_guard lock(mu_);
  if (printed_) {
    fmt::print(stderr, "{}: {}/{} done in {:.1f} s\n", label_, done_.load(), total_,
               std::chrono::duration<double>(Clock::now() - start_).count());
  }
}

Expected<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(Errc::not_found, fmt::format("no '{}'", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Status write_file_atomically(const std::string& path, std::span<const std::byte> bytes) {
  const std::string tmp = fmt::format("{}.tmp.{}", path, ::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return Status(Errc::io_error, fmt::format("cannot write '{}'", tmp));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return Status(Errc::io_error, fmt::format("cannot rename to '{}'", path));
  }
  return Status::ok();
}

Expected<transport::Secret> load_secret(const std::string& secret_file) {
  return secret_file.empty() ? transport::Secret::from_env("KVSTREAM_SECRET")
                             : transport::Secret::from_file(secret_file);
}

}  // namespace kvstream::cli
