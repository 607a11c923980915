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

namespace {

Status bad_line(const std::string& what) {
  return Status(Errc::corrupt_data, what);
}

// The transform lines, after the level lines: "transform C head_dim interleaved|halves",
// "frequencies f...", then "analysis L ..." and "synthesis L ..." with (2C)^2 entries for each
// layer L in order.
Status read_transform_line(const std::string& key, std::istringstream& ls, KvTransform& t,
                           bool& started) {
  const auto read_floats = [&](std::size_t n, std::vector<float>& out) -> Status {
    for (std::size_t i = 0; i < n; ++i) {
      float f = 0;
      if (!(ls >> f)) return bad_line(fmt::format("'{}' entry {} missing", key, i));
      out.push_back(f);
    }
    return Status::ok();
  };
  const std::size_t n = std::size_t{4} * t.channels * t.channels;
  if (key == "transform") {
    std::string pairs;
    if (started || !(ls >> t.channels >> t.head_dim >> pairs) ||
        (pairs != "interleaved" && pairs != "halves") || t.channels == 0 || t.channels > 4096) {
      return bad_line("expected one 'transform C head_dim interleaved|halves' line");
    }
    t.pairs = pairs == "interleaved" ? RopePairs::interleaved : RopePairs::halves;
    started = true;
  } else if (!started) {
    return bad_line(fmt::format("'{}' before the 'transform' line", key));
  } else if (key == "frequencies") {
    if (!t.frequencies.empty() || !t.analysis.empty()) return bad_line("misplaced 'frequencies'");
    KVS_RETURN_IF_ERROR(read_floats(t.head_dim / 2, t.frequencies));
  } else {
    std::vector<float>& m = key == "analysis" ? t.analysis : t.synthesis;
    std::uint32_t layer = 0;
    if (!(ls >> layer) || layer != m.size() / n ||
        (key == "synthesis" && t.synthesis.size() >= t.analysis.size())) {
      return bad_line(
          fmt::format("'{}' lines out of order (analysis L, synthesis L, layer by "
                      "layer)",
                      key));
    }
    KVS_RETURN_IF_ERROR(read_floats(n, m));
  }
  std::string extra;
  if (ls >> extra) return bad_line(fmt::format("unexpected '{}'", extra));
  return Status::ok();
}

void write_transform(const KvTransform& t, std::string& text) {
  text += fmt::format("transform {} {} {}\n", t.channels, t.head_dim,
                      t.pairs == RopePairs::interleaved ? "interleaved" : "halves");
  if (!t.frequencies.empty()) {
    text += "frequencies";
    for (float f : t.frequencies)
      text += fmt::format(" {:.9g}", f);
    text += '\n';
  }
  const std::size_t n = std::size_t{4} * t.channels * t.channels;
  for (std::uint32_t l = 0; l < t.layers(); ++l) {
    for (const auto* m : {&t.analysis, &t.synthesis}) {
      text += fmt::format("{} {}", m == &t.analysis ? "analysis" : "synthesis", l);
      for (std::size_t i = 0; i < n; ++i)
        text += fmt::format(" {:.9g}", (*m)[l * n + i]);
      text += '\n';
    }
  }
}

}  // namespace

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
  KvTransform transform;
  bool has_transform = false;
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
    } else if (key == "transform" || key == "frequencies" || key == "analysis" ||
               key == "synthesis") {
      KVS_RETURN_IF_ERROR(read_transform_line(key, ls, transform, has_transform)
                              .with_context(fmt::format("{}:{}", path, lineno)));
    } else {
      std::uint32_t level = 0;
      double target = 0;
      if (has_transform || key != "level" || !(ls >> level >> target) || level != next_level) {
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
  if (has_transform) KVS_RETURN_IF_ERROR(p.set_transform(std::move(transform)).with_context(path));
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
  if (transform_) write_transform(*transform_, text);
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
