// kvstream: the command-line front end. Each subcommand is a thin layer over the libraries.
#include <fmt/format.h>

#include <span>
#include <string_view>
#include <vector>

#include "cli/common.hpp"

namespace {

struct Command {
  std::string_view name;
  std::string_view summary;
  int (*run)(std::span<const std::string_view>);
};

constexpr Command kCommands[] = {
    {"demo", "sample a real context with the reference model and show its KV cache and quality",
     kvstream::cli::run_demo},
    {"model", "reference model runner: info, generate contexts, score perplexity",
     kvstream::cli::run_model},
};

void print_usage(std::FILE* to) {
  fmt::print(to, "usage: kvstream <command> [options]\n\ncommands:\n");
  for (const Command& c : kCommands)
    fmt::print(to, "  {:<8} {}\n", c.name, c.summary);
  fmt::print(to, "\n'kvstream <command> --help' describes a command.\n");
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  if (args.empty()) {
    print_usage(stderr);
    return kvstream::cli::kExitUsage;
  }
  if (args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_usage(stdout);
    return kvstream::cli::kExitOk;
  }
  for (const Command& c : kCommands) {
    if (args[0] == c.name) return c.run(std::span(args).subspan(1));
  }
  fmt::print(stderr, "kvstream: error: unknown command '{}' (see kvstream --help)\n", args[0]);
  return kvstream::cli::kExitUsage;
}
