// Line charts as SVG, for benchmark figures that need no plotting package: one x axis (linear or
// log), one y axis (linear), a line of markers per series, a legend.
#pragma once

#include <string>
#include <vector>

namespace kvstream::cli {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;  // same length; NaN y: no point
};

struct Plot {
  std::string title, x_label, y_label;
  bool log_x = false;
  std::vector<PlotSeries> series;
  std::string svg() const;
};

}  // namespace kvstream::cli
