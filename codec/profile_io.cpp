// Reading and writing CodecProfile files (codec/FORMAT.md, "Profiles").
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "kvstream/codec.hpp"

namespace kvstream {

Expected<CodecProfile> CodecProfile::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status(Errc::not_found, fmt::format("cannot open profile '{}'", path));
  const auto bad = [&](std::size_t line, const std::string& what) {
    return Status(Errc::corrupt_data, fmt::format("{}:{}: {}", path, line, what));
  };
  std::string line;
  std::size_t lineno = 0;
  std::uint32_t layers = 0, heads = 0, levels = 0, next_level = 1;
  int stage = 0;  // 0 magic, 1 layers, 2 groups, 3 levels, 4 level lines
  static constexpr const char* kKeys[] = {"", "layers", "groups", "levels"};
  std::vector<float> steps;
  std::vector<double> targets;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    std::string key;
    ls >> key;
    if (stage == 0) {
      int version = 0;
      if (key != "kvstream-profile" || !(ls >> version) || version != 1) {
        return bad(lineno, "expected 'kvstream-profile 1'");
      }
    } else if (stage <= 3) {
      std::uint32_t v = 0;
      if (key != kKeys[stage] || !(ls >> v) || v == 0 || (stage == 3 && v > kMaxLevel) ||
          v > 65536) {
        return bad(lineno, fmt::format("expected '{} N'", kKeys[stage]));
      }
      (stage == 1 ? layers : stage == 2 ? heads : levels) = v;
    } else {
      std::uint32_t level = 0;
      double target = 0;
      if (key != "level" || !(ls >> level >> target) || level != next_level) {
        return bad(lineno, fmt::format("expected 'level {} <target> <steps>'", next_level));
      }
      targets.push_back(target);
      for (std::uint32_t i = 0; i < 2 * layers * heads; ++i) {
        float step = 0;
        if (!(ls >> step) || !(step > 0.0f) || !std::isfinite(step)) {
          return bad(lineno, fmt::format("step {} of level {} missing or not positive", i, level));
        }
        steps.push_back(step);
      }
      std::string extra;
      if (ls >> extra) return bad(lineno, fmt::format("unexpected '{}'", extra));
      ++next_level;
    }
    if (stage < 4) ++stage;
  }
  if (stage < 4 || next_level != levels + 1) {
    return Status(Errc::corrupt_data,
                  fmt::format("{}: ends before all {} levels are given", path, levels));
  }
  KVS_ASSIGN_OR_RETURN(CodecProfile p, from_steps(layers, heads, levels, std::move(steps)));
  p.set_targets(std::move(targets));
  return p;
}

Status CodecProfile::save(const std::string& path) const {
  std::string text = fmt::format("kvstream-profile 1\nlayers {}\ngroups {}\nlevels {}\n", layers_,
                                 groups_, levels_);
  for (std::uint32_t level = 1; level <= levels_; ++level) {
    text +=
        fmt::format("level {} {:.6g}", level, level <= targets_.size() ? targets_[level - 1] : 0.0);
    const std::size_t per_level = std::size_t{2} * layers_ * groups_;
    for (std::size_t i = 0; i < per_level; ++i) {
      text += fmt::format(" {:.6g}", steps_[(level - 1) * per_level + i]);
    }
    text += '\n';
  }
  const std::string tmp = fmt::format("{}.tmp.{}", path, getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return Status(Errc::io_error, fmt::format("cannot write profile '{}'", tmp));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return Status(Errc::io_error,
                  fmt::format("cannot rename profile to '{}': {}", path, std::strerror(err)));
  }
  return Status::ok();
}

}  // namespace kvstream
