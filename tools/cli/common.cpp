#include "cli/common.hpp"

#include <fmt/format.h>

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

}  // namespace kvstream::cli
