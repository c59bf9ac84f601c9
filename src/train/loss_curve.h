// A loss-curve picture (SVG, written by lmkit itself): training loss per step and validation
// loss at eval steps, with axes, ticks and a legend. Not a plotting library.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace lmkit {

struct LossCurve {
  std::vector<std::pair<double, double>> train;  // (step, loss)
  std::vector<std::pair<double, double>> val;    // (step, val loss)
  double baseline = 0;                           // a horizontal reference line (0 = none)
  std::string baseline_label = "unigram baseline";
  std::string title;
};

std::string loss_curve_svg(const LossCurve &c, int width = 720, int height = 420);

}  // namespace lmkit
