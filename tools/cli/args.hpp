// A small, strict command-line parser for the kvstream subcommands: `--name value` or
// `--name=value`, typed and range-checked options, generated --help. Errors are Status values
// whose message is one line naming the option.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kvstream/kv_cache.hpp"
#include "kvstream/status.hpp"

namespace kvstream::cli {

class ArgParser {
 public:
  ArgParser(std::string command, std::string summary);

  ArgParser& option(std::string name, std::string metavar, std::string help, std::string* out,
                    bool required = false);
  ArgParser& option(std::string name, std::string metavar, std::string help, std::int64_t* out,
                    std::int64_t min, std::int64_t max, bool required = false);
  ArgParser& option(std::string name, std::string metavar, std::string help, double* out,
                    double min, double max, bool required = false);
  // A KV dtype (f32, f16, bf16); an optional one stays empty unless given.
  ArgParser& option(std::string name, std::string metavar, std::string help, DType* out);
  ArgParser& option(std::string name, std::string metavar, std::string help,
                    std::optional<DType>* out);
  ArgParser& flag(std::string name, std::string help, bool* out);

  // Parses every argument; unknown options, missing values, out-of-range numbers and missing
  // required options are invalid_argument. `--help` anywhere sets help_requested() and stops.
  Status parse(std::span<const std::string_view> args);
  bool help_requested() const noexcept { return help_; }
  std::string usage() const;
  const std::string& command() const noexcept { return command_; }

 private:
  struct Opt {
    std::string name, metavar, help;
    bool required = false;
    bool is_flag = false;
    bool seen = false;
    std::function<Status(std::string_view)> set;
    std::string default_text;
  };
  Opt& add(std::string name, std::string metavar, std::string help, bool required);

  std::string command_;
  std::string summary_;
  std::vector<Opt> opts_;
  bool help_ = false;
};

}  // namespace kvstream::cli
