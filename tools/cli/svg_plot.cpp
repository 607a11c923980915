#include "cli/svg_plot.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace kvstream::cli {

namespace {

constexpr const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                   "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                                   "#bcbd22", "#17becf", "#000000", "#aec7e8"};

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else
      out += c;
  }
  return out;
}

}  // namespace

std::string Plot::svg() const {
  constexpr double W = 720, H = 440, L = 70, R = 190, T = 40, B = 50;
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y1 = 0;
  for (const PlotSeries& s : series) {
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i]);
      y1 = std::max(y1, s.y[i]);
    }
  }
  if (!(x1 > x0)) x1 = x0 + 1;
  if (!(y1 > 0)) y1 = 1;
  y1 *= 1.08;
  const auto fx = [&](double x) {
    const double a = log_x ? std::log10(x0) : x0, b = log_x ? std::log10(x1) : x1;
    const double v = log_x ? std::log10(x) : x;
    return L + (v - a) / (b - a) * (W - L - R);
  };
  const auto fy = [&](double y) { return H - B - y / y1 * (H - T - B); };
  std::string out = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{}\" "
      "font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n<text x=\"{}\" y=\"22\" font-size=\"14\">{}</text>\n",
      W, H, L, escape(title));
  out += fmt::format(
      "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"black\"/>\n"
      "<line x1=\"{0}\" y1=\"{3}\" x2=\"{0}\" y2=\"{1}\" stroke=\"black\"/>\n",
      L, H - B, W - R, T);
  for (int i = 0; i <= 5; ++i) {
    const double y = y1 * i / 5;
    out += fmt::format(
        "<line x1=\"{0}\" y1=\"{1:.1f}\" x2=\"{2}\" y2=\"{1:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.3g}</text>\n",
        L, fy(y), W - R, L - 6, fy(y) + 4, y);
  }
  std::vector<double> ticks;
  for (const PlotSeries& s : series)
    for (double x : s.x)
      if (std::find(ticks.begin(), ticks.end(), x) == ticks.end()) ticks.push_back(x);
  for (double x : ticks) {
    out += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{:.3g}</text>\n", fx(x),
                       H - B + 16, x);
  }
  out += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (L + W - R) / 2,
                     H - 12, escape(x_label));
  out += fmt::format(
      "<text x=\"16\" y=\"{0}\" text-anchor=\"middle\" transform=\"rotate(-90 16 {0})\">{1}"
      "</text>\n",
      (T + H - B) / 2, escape(y_label));
  for (std::size_t k = 0; k < series.size(); ++k) {
    const PlotSeries& s = series[k];
    const char* color = kColors[k % std::size(kColors)];
    std::string points;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i])) continue;
      points += fmt::format("{:.1f},{:.1f} ", fx(s.x[i]), fy(s.y[i]));
      out += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"/>\n", fx(s.x[i]),
                         fy(s.y[i]), color);
    }
    out +=
        fmt::format("<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"{}\"/>\n",
                    points, color, k == 0 ? 2.5 : 1.2);
    const double ly = T + 14 + 18.0 * static_cast<double>(k);
    out += fmt::format(
        "<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"{3}\" stroke-width=\"2\"/>"
        "<text x=\"{4}\" y=\"{5}\">{6}</text>\n",
        W - R + 12, ly, W - R + 32, color, W - R + 38, ly + 4, escape(s.name));
  }
  return out + "</svg>\n";
}

}  // namespace kvstream::cli
