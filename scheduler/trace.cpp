#include "trace.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <random>

namespace kvstream::scheduler {

namespace {

Expected<double> number(std::string_view s, std::size_t line, const char* what) {
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) {
    return Status(Errc::invalid_argument,
                  fmt::format("trace line {}: {} '{}' is not a number", line, what, s));
  }
  return v;
}

}  // namespace

Expected<Trace> Trace::parse(std::string_view text) {
  Trace t;
  std::size_t line_no = 0;
  while (!text.empty()) {
    const std::size_t eol = std::min(text.find('\n'), text.size());
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(std::min(eol + 1, text.size()));
    ++line_no;
    line = line.substr(0, line.find('#'));
    std::vector<std::string_view> fields;
    for (std::size_t i = 0; i < line.size();) {
      while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i])))
        ++i;
      std::size_t j = i;
      while (j < line.size() && !std::isspace(static_cast<unsigned char>(line[j])))
        ++j;
      if (j > i) fields.push_back(line.substr(i, j - i));
      i = j;
    }
    if (fields.empty()) continue;
    if (fields.size() != 2) {
      return Status(Errc::invalid_argument,
                    fmt::format("trace line {}: want '<seconds> <Gbit/s>', got {} fields", line_no,
                                fields.size()));
    }
    KVS_ASSIGN_OR_RETURN(const double start, number(fields[0], line_no, "time"));
    KVS_ASSIGN_OR_RETURN(const double gbit, number(fields[1], line_no, "rate"));
    if (t.segments_.empty() ? start != 0 : start <= t.segments_.back().start) {
      return Status(
          Errc::invalid_argument,
          fmt::format("trace line {}: times must start at 0 and increase, got {}", line_no, start));
    }
    if (!(gbit > 0))
      return Status(Errc::invalid_argument,
                    fmt::format("trace line {}: rate {} Gbit/s is not positive", line_no, gbit));
    t.segments_.push_back({start, gbit * kBytesPerGbit});
  }
  if (t.segments_.empty()) return Status(Errc::invalid_argument, "trace: no segments");
  return t;
}

Trace Trace::constant(double gbit_per_s) {
  Trace t;
  t.segments_.push_back({0, gbit_per_s * kBytesPerGbit});
  return t;
}

Trace Trace::step(double before_gbit, double after_gbit, double at) {
  Trace t = constant(before_gbit);
  t.segments_.push_back({at, after_gbit * kBytesPerGbit});
  return t;
}

Trace Trace::uniform(double lo_gbit, double hi_gbit, double period, double duration,
                     std::uint64_t seed) {
  // mt19937_64's output is fixed by the standard; the distributions are not, so scale by hand.
  std::mt19937_64 gen(seed);
  Trace t;
  for (double s = 0; s < duration || t.segments_.empty(); s += period) {
    const double u = static_cast<double>(gen() >> 11) * 0x1.0p-53;
    t.segments_.push_back({s, (lo_gbit + u * (hi_gbit - lo_gbit)) * kBytesPerGbit});
  }
  return t;
}

double Trace::rate_at(double t) const {
  const auto it = std::upper_bound(segments_.begin(), segments_.end(), t,
                                   [](double v, const Segment& s) { return v < s.start; });
  return it == segments_.begin() ? segments_.front().bytes_per_s : std::prev(it)->bytes_per_s;
}

double Trace::finish(double start, double bytes) const {
  auto it = std::upper_bound(segments_.begin(), segments_.end(), start,
                             [](double v, const Segment& s) { return v < s.start; });
  if (it != segments_.begin()) --it;
  double t = start;
  for (;; ++it) {
    const double rate = it->bytes_per_s;
    const auto after = std::next(it);
    if (after == segments_.end() || t + bytes / rate <= after->start) return t + bytes / rate;
    bytes -= (after->start - t) * rate;
    t = after->start;
  }
}

double Trace::mean_rate(double from, double to) const {
  if (!(to > from)) return rate_at(from);
  double bytes = 0;
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    const double a = std::max(from, segments_[i].start);
    const double b = i + 1 < segments_.size() ? std::min(to, segments_[i + 1].start) : to;
    if (b > a) bytes += (b - a) * segments_[i].bytes_per_s;
  }
  return bytes / (to - from);
}

std::string Trace::to_text() const {
  std::string out = "# seconds Gbit/s\n";
  for (const Segment& s : segments_)
    out += fmt::format("{} {}\n", s.start, s.bytes_per_s / kBytesPerGbit);
  return out;
}

}  // namespace kvstream::scheduler
