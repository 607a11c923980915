#include "cli/args.hpp"

#include <fmt/format.h>

#include <charconv>
#include <cstdlib>

namespace kvstream::cli {

ArgParser::ArgParser(std::string command, std::string summary)
    : command_(std::move(command)), summary_(std::move(summary)) {}

ArgParser::Opt& ArgParser::add(std::string name, std::string metavar, std::string help,
                               bool required) {
  Opt& o = opts_.emplace_back();
  o.name = std::move(name);
  o.metavar = std::move(metavar);
  o.help = std::move(help);
  o.required = required;
  return o;
}

ArgParser& ArgParser::option(std::string name, std::string metavar, std::string help,
                             std::string* out, bool required) {
  Opt& o = add(std::move(name), std::move(metavar), std::move(help), required);
  if (!out->empty()) o.default_text = *out;
  o.set = [out, n = o.name](std::string_view v) {
    if (v.empty()) return Status(Errc::invalid_argument, fmt::format("{} needs a value", n));
    *out = std::string(v);
    return Status::ok();
  };
  return *this;
}

ArgParser& ArgParser::option(std::string name, std::string metavar, std::string help,
                             std::int64_t* out, std::int64_t min, std::int64_t max, bool required) {
  Opt& o = add(std::move(name), std::move(metavar), std::move(help), required);
  if (!required) o.default_text = std::to_string(*out);
  o.set = [out, min, max, n = o.name](std::string_view v) {
    std::int64_t x = 0;
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), x);
    if (ec != std::errc() || end != v.data() + v.size()) {
      return Status(Errc::invalid_argument, fmt::format("{} expects an integer, got '{}'", n, v));
    }
    if (x < min || x > max) {
      return Status(Errc::invalid_argument,
                    fmt::format("{} must be in {}..{}, got {}", n, min, max, x));
    }
    *out = x;
    return Status::ok();
  };
  return *this;
}

ArgParser& ArgParser::option(std::string name, std::string metavar, std::string help, double* out,
                             double min, double max, bool required) {
  Opt& o = add(std::move(name), std::move(metavar), std::move(help), required);
  if (!required) o.default_text = fmt::format("{}", *out);
  o.set = [out, min, max, n = o.name](std::string_view v) {
    const std::string s(v);
    char* end = nullptr;
    const double x = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size()) {
      return Status(Errc::invalid_argument, fmt::format("{} expects a number, got '{}'", n, v));
    }
    if (!(x >= min && x <= max)) {
      return Status(Errc::invalid_argument,
                    fmt::format("{} must be in {}..{}, got {}", n, min, max, v));
    }
    *out = x;
    return Status::ok();
  };
  return *this;
}

ArgParser& ArgParser::option(std::string name, std::string metavar, std::string help, DType* out) {
  Opt& o = add(std::move(name), std::move(metavar), std::move(help), false);
  o.default_text = std::string(dtype_name(*out));
  o.set = [out, n = o.name](std::string_view v) {
    auto d = parse_dtype(v);
    if (!d) return d.error().with_context(n);
    *out = *d;
    return Status::ok();
  };
  return *this;
}

ArgParser& ArgParser::option(std::string name, std::string metavar, std::string help,
                             std::optional<DType>* out) {
  Opt& o = add(std::move(name), std::move(metavar), std::move(help), false);
  o.set = [out, n = o.name](std::string_view v) {
    auto d = parse_dtype(v);
    if (!d) return d.error().with_context(n);
    *out = *d;
    return Status::ok();
  };
  return *this;
}

ArgParser& ArgParser::flag(std::string name, std::string help, bool* out) {
  Opt& o = add(std::move(name), "", std::move(help), false);
  o.is_flag = true;
  o.set = [out](std::string_view) {
    *out = true;
    return Status::ok();
  };
  return *this;
}

Status ArgParser::parse(std::span<const std::string_view> args) {
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a == "--help" || a == "-h") {
      help_ = true;
      return Status::ok();
    }
    if (a.substr(0, 2) != "--") {
      return Status(Errc::invalid_argument, fmt::format("unexpected argument '{}'", a));
    }
    std::string_view name = a;
    std::string_view value;
    bool inline_value = false;
    if (const auto eq = a.find('='); eq != std::string_view::npos) {
      name = a.substr(0, eq);
      value = a.substr(eq + 1);
      inline_value = true;
    }
    Opt* opt = nullptr;
    for (Opt& o : opts_) {
      if (o.name == name) opt = &o;
    }
    if (opt == nullptr) {
      return Status(Errc::invalid_argument, fmt::format("unknown option '{}'", name));
    }
    if (opt->seen) {
      return Status(Errc::invalid_argument, fmt::format("{} given twice", name));
    }
    opt->seen = true;
    if (opt->is_flag) {
      if (inline_value) {
        return Status(Errc::invalid_argument, fmt::format("{} takes no value", name));
      }
    } else if (!inline_value) {
      if (i + 1 >= args.size()) {
        return Status(Errc::invalid_argument, fmt::format("{} needs a value", name));
      }
      value = args[++i];
    }
    KVS_RETURN_IF_ERROR(opt->set(value));
  }
  for (const Opt& o : opts_) {
    if (o.required && !o.seen) {
      return Status(Errc::invalid_argument, fmt::format("missing required option {}", o.name));
    }
  }
  return Status::ok();
}

std::string ArgParser::usage() const {
  std::string out = fmt::format("usage: {} [options]\n\n{}\n\noptions:\n", command_, summary_);
  for (const Opt& o : opts_) {
    std::string left = o.is_flag ? o.name : fmt::format("{} {}", o.name, o.metavar);
    std::string right = o.help;
    if (o.required) right += " (required)";
    if (!o.default_text.empty()) right += fmt::format(" [default: {}]", o.default_text);
    out += fmt::format("  {:<22} {}\n", left, right);
  }
  out += fmt::format("  {:<22} {}\n", "--help", "show this help and exit");
  return out;
}

}  // namespace kvstream::cli
