// Conventions every kvstream subcommand shares: exit codes, one-line errors, --help, progress.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "auth.hpp"
#include "cli/args.hpp"
#include "kvstream/status.hpp"
#include "runner/model.hpp"

namespace kvstream::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitSkipped = 77;  // a benchmark that cannot run here (ctest's skip code)
inline constexpr int kExitFailure = 1;   // the work failed (bad file, bad data, runtime error)
inline constexpr int kExitUsage = 2;     // the command line was wrong

// Parses `args`; returns an exit code when the command must stop here (help printed: 0,
// bad arguments: one line on stderr, 2), nothing when it should run.
std::optional<int> parse_or_exit(ArgParser& parser, std::span<const std::string_view> args);

// Prints "<command>: error: <message>" on stderr and returns kExitFailure.
int report_failure(std::string_view command, const Status& status);

// The whole of the file at `path`; not_found naming it when it cannot be opened.
Expected<std::string> read_file(const std::string& path);

// Writes `bytes` to `path` atomically: a temporary file beside it, renamed over it.
Status write_file_atomically(const std::string& path, std::span<const std::byte> bytes);

// The shared secret of serve, fetch and perf: from --secret-file when given, else from the
// environment variable KVSTREAM_SECRET (never from the command line).
Expected<transport::Secret> load_secret(const std::string& secret_file);

// Comma-separated items, each turned into a T by `parse` (Expected<T> from the item's text),
// at least one: an empty list is an error naming `what`.
template <typename T, typename Parse>
Expected<std::vector<T>> parse_list(std::string_view text, std::string_view what, Parse parse) {
  std::vector<T> out;
  while (!text.empty()) {
    const std::size_t comma = std::min(text.find(','), text.size());
    KVS_ASSIGN_OR_RETURN(T item, parse(text.substr(0, comma)));
    out.push_back(std::move(item));
    text.remove_prefix(std::min(comma + 1, text.size()));
  }
  if (out.empty()) return Status(Errc::invalid_argument, "no " + std::string(what) + " given");
  return out;
}

// One finite number; an error names `what` and the text that is not one.
Expected<double> parse_number(std::string_view text, std::string_view what);

// "0.5,1e-3,2": parse_list of parse_number.
Expected<std::vector<double>> parse_numbers(std::string_view text, std::string_view what);

// `s` as a JSON string literal, quotes included.
std::string json_string(std::string_view s);

// Progress for long work, on stderr: silent for the first two seconds, then at most one line
// a second. Safe to advance from several threads.
class Progress {
 public:
  Progress(std::string label, std::size_t total);
  void advance();
  void finish();

 private:
  using Clock = std::chrono::steady_clock;
  std::string label_;
  std::size_t total_;
  std::atomic<std::size_t> done_{0};
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_print_ = start_;
  bool printed_ = false;
  std::mutex mu_;
};

struct Subcommand {
  std::string_view name;
  std::string_view summary;
  int (*run)(std::span<const std::string_view>);
};

// Runs the subcommand named by args[0] with the arguments after it; prints the list of
// subcommands for --help (exit 0), for no arguments or an unknown name (one line, exit 2).
int dispatch(std::string_view command, std::span<const Subcommand> subcommands,
             std::span<const std::string_view> args);

// A checkpoint and a token file, the inputs of most model-driven commands; errors name the
// file that was wrong.
struct ModelAndContexts {
  runner::Model model;
  std::vector<std::vector<std::int32_t>> contexts;
};
Expected<ModelAndContexts> load_model_and_contexts(const std::string& model_path,
                                                   const std::string& tokens_path);

// The first `limit` contexts (all of them for 0).
std::span<const std::vector<std::int32_t>> first_contexts(
    const std::vector<std::vector<std::int32_t>>& contexts, std::int64_t limit);

// Subcommands, each taking the arguments after its name.
int run_model(std::span<const std::string_view> args);
int run_demo(std::span<const std::string_view> args);
int run_codec(std::span<const std::string_view> args);
int run_perf(std::span<const std::string_view> args);
int run_serve(std::span<const std::string_view> args);
int run_fetch(std::span<const std::string_view> args);
int run_bench(std::span<const std::string_view> args);
// `codec` subcommands on context archives (cmd_archive.cpp).
int codec_encode(std::span<const std::string_view> args);
int codec_decode(std::span<const std::string_view> args);
int codec_inspect(std::span<const std::string_view> args);

}  // namespace kvstream::cli
