// Plain SVG: polylines for the series, "nice" ticks on both axes.
#include "train/loss_curve.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace lmkit {

namespace {

// About n "nice" tick values (1, 2, 5 x 10^k) covering [lo, hi].
std::vector<double> ticks(double lo, double hi, int n) {
  std::vector<double> t;
  if (!(hi > lo)) return {lo};
  const double raw = (hi - lo) / n, mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) {
      step = m * mag;
      break;
    }
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(v);
  return t;
}

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%g", v);
  return b;
}

std::string escape(const std::string &s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else o += c;
  }
  return o;
}

}  // namespace

std::string loss_curve_svg(const LossCurve &c, int width, int height) {
  const double L = 64, R = 20, T = 36, B = 48;
  double x0 = std::numeric_limits<double>::max(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto *s : {&c.train, &c.val})
    for (auto [x, y] : *s) {
      if (!std::isfinite(y)) continue;
      x0 = std::min(x0, x);
      x1 = std::max(x1, x);
      y0 = std::min(y0, y);
      y1 = std::max(y1, y);
    }
  if (c.baseline > 0) {
    y0 = std::min(y0, c.baseline);
    y1 = std::max(y1, c.baseline);
  }
  if (x0 > x1) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1;
  const double pad = (y1 - y0) * 0.05;
  y0 = std::max(0.0, y0 - pad);
  y1 += pad;
  auto px = [&](double x) { return L + (x - x0) / (x1 - x0) * (width - L - R); };
  auto py = [&](double y) { return T + (y1 - y) / (y1 - y0) * (height - T - B); };

  std::string s;
  s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) +
       "\" height=\"" + std::to_string(height) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + fmt(width / 2.0) + "\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">" +
       escape(c.title.empty() ? "loss" : c.title) + "</text>\n";
  for (double t : ticks(y0, y1, 6)) {
    s += "<line x1=\"" + fmt(L) + "\" x2=\"" + fmt(width - R) + "\" y1=\"" + fmt(py(t)) +
         "\" y2=\"" + fmt(py(t)) + "\" stroke=\"#e5e5e5\"/>\n";
    s += "<text x=\"" + fmt(L - 6) + "\" y=\"" + fmt(py(t) + 4) + "\" text-anchor=\"end\">" +
         fmt(t) + "</text>\n";
  }
  for (double t : ticks(x0, x1, 8))
    s += "<text x=\"" + fmt(px(t)) + "\" y=\"" + fmt(height - B + 18) +
         "\" text-anchor=\"middle\">" + fmt(t) + "</text>\n";
  s += "<text x=\"" + fmt(width / 2.0) + "\" y=\"" + fmt(height - 10.0) +
       "\" text-anchor=\"middle\">step</text>\n";
  s += "<rect x=\"" + fmt(L) + "\" y=\"" + fmt(T) + "\" width=\"" + fmt(width - L - R) +
       "\" height=\"" + fmt(height - T - B) + "\" fill=\"none\" stroke=\"#888\"/>\n";
  auto line = [&](const std::vector<std::pair<double, double>> &pts, const char *color,
                  bool dots) {
    std::string p;
    for (auto [x, y] : pts)
      if (std::isfinite(y)) p += fmt(px(x)) + "," + fmt(py(y)) + " ";
    if (!p.empty())
      s += std::string("<polyline fill=\"none\" stroke=\"") + color +
           "\" stroke-width=\"1.5\" points=\"" + p + "\"/>\n";
    if (dots)
      for (auto [x, y] : pts)
        if (std::isfinite(y))
          s += "<circle cx=\"" + fmt(px(x)) + "\" cy=\"" + fmt(py(y)) + "\" r=\"3\" fill=\"" +
               color + "\"/>\n";
  };
  if (c.baseline > 0) {
    s += "<line x1=\"" + fmt(L) + "\" x2=\"" + fmt(width - R) + "\" y1=\"" + fmt(py(c.baseline)) +
         "\" y2=\"" + fmt(py(c.baseline)) + "\" stroke=\"#999\" stroke-dasharray=\"5,4\"/>\n";
  }
  line(c.train, "#1f77b4", false);
  line(c.val, "#d62728", true);
  // Legend.
  double ly = T + 14;
  auto legend = [&](const char *color, const std::string &label, bool dashed) {
    s += "<line x1=\"" + fmt(width - R - 170) + "\" x2=\"" + fmt(width - R - 146) + "\" y1=\"" +
         fmt(ly - 4) + "\" y2=\"" + fmt(ly - 4) + "\" stroke=\"" + color + "\" stroke-width=\"2\"" +
         (dashed ? " stroke-dasharray=\"5,4\"" : "") + "/>\n";
    s += "<text x=\"" + fmt(width - R - 140) + "\" y=\"" + fmt(ly) + "\">" + escape(label) +
         "</text>\n";
    ly += 16;
  };
  legend("#1f77b4", "train", false);
  if (!c.val.empty()) legend("#d62728", "validation", false);
  if (c.baseline > 0) legend("#999", c.baseline_label, true);
  s += "</svg>\n";
  return s;
}

}  // namespace lmkit
