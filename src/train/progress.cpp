// ProgressBar: throttled redraws of one status line with "\r", sized to the terminal.
// Not thread-safe: one thread owns a bar (workers report through an atomic counter).
#include "train/progress.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>

#include "core/timer.h"

namespace lmkit {

namespace {

int terminal_width(FILE *out) {
  struct winsize ws {};
  if (ioctl(fileno(out), TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return int(ws.ws_col);
  return 80;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// Three significant digits: 1.23, 12.3, 123.
std::string three_digits(double v) {
  return fixed(v, v < 10 ? 2 : v < 100 ? 1 : 0);
}

}  // namespace

ProgressBar::ProgressBar(int64_t total, std::string label, Unit unit, std::string unit_name,
                         FILE *out)
    : total_(total),
      label_(std::move(label)),
      unit_name_(std::move(unit_name)),
      unit_(unit),
      out_(out),
      enabled_(out != nullptr && isatty(fileno(out))) {
  start_ = now_seconds();
  ref_time_[0] = ref_time_[1] = start_;
}

ProgressBar::~ProgressBar() {
  finish();
}

void ProgressBar::update(int64_t done, std::string_view extra) {
  done_ = done;
  double now = now_seconds();
  // Rate window: the older reference point is 2-4 seconds back.
  if (now - ref_time_[1] >= 2.0) {
    ref_time_[0] = ref_time_[1];
    ref_done_[0] = ref_done_[1];
    ref_time_[1] = now;
    ref_done_[1] = done;
  }
  if (!enabled_ || finished_) return;
  extra_.assign(extra.data(), extra.size());
  if (last_draw_ >= 0 && now - last_draw_ < 0.1) return;
  last_draw_ = now;
  draw(false);
}

void ProgressBar::finish(std::string_view extra) {
  if (finished_) return;
  finished_ = true;
  if (!enabled_) return;
  if (!extra.empty()) extra_.assign(extra.data(), extra.size());
  draw(true);
}

double ProgressBar::elapsed() const {
  return now_seconds() - start_;
}

double ProgressBar::rate() const {
  double now = now_seconds();
  double dt = now - ref_time_[0];
  if (dt < 0.05) return 0.0;
  return double(done_ - ref_done_[0]) / dt;
}

double ProgressBar::eta_seconds() const {
  if (total_ <= 0) return -1.0;
  double r = rate();
  if (r <= 0) return -1.0;
  return double(std::max<int64_t>(0, total_ - done_)) / r;
}

std::string ProgressBar::format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  int64_t s = int64_t(std::llround(seconds));
  char buf[64];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", (long long)(s / 3600),
                  (long long)(s / 60 % 60), (long long)(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%lld:%02lld", (long long)(s / 60), (long long)(s % 60));
  return buf;
}

std::string ProgressBar::format_bytes(double b) {
  if (b < 1000) return fixed(b, 0) + " B";
  if (b < 1e6) return three_digits(b / 1e3) + " KB";
  if (b < 1e9) return three_digits(b / 1e6) + " MB";
  return three_digits(b / 1e9) + " GB";
}

std::string ProgressBar::format_count(double n) {
  if (n < 1000) return fixed(n, n == std::floor(n) ? 0 : 1);
  if (n < 1e6) return three_digits(n / 1e3) + "k";
  if (n < 1e9) return three_digits(n / 1e6) + "M";
  return three_digits(n / 1e9) + "G";
}

std::string ProgressBar::render(int width) const {
  auto amount = [&](double v) { return unit_ == Unit::Bytes ? format_bytes(v) : format_count(v); };
  std::string tail;  // everything right of the bar
  if (total_ > 0) {
    double frac = std::clamp(double(done_) / double(total_), 0.0, 1.0);
    tail += " " + fixed(100.0 * frac, 0) + "%";
  }
  tail += "  " + amount(double(done_));
  if (total_ > 0) tail += "/" + amount(double(total_));
  if (unit_ == Unit::Count && !unit_name_.empty()) tail += " " + unit_name_;
  double r = finished_ ? double(done_) / std::max(1e-9, elapsed()) : rate();
  if (r > 0)
    tail += "  " + amount(r) +
            (unit_ == Unit::Bytes ? "/s" : (unit_name_.empty() ? "/s" : " " + unit_name_ + "/s"));
  if (finished_)
    tail += "  in " + format_duration(elapsed());
  else if (double eta = eta_seconds(); eta >= 0)
    tail += "  ETA " + format_duration(eta);
  if (!extra_.empty()) tail += "  " + extra_;

  std::string line = label_;
  if (total_ > 0) {
    // The bar takes what is left of the line, between 10 and 30 columns.
    int room = width - int(label_.size()) - int(tail.size()) - 3;
    int bar = std::clamp(room, 10, 30);
    double frac = std::clamp(double(done_) / double(total_), 0.0, 1.0);
    int fill = int(frac * bar);
    line += " [";
    line.append(size_t(fill), '=');
    if (fill < bar) {
      line += '>';
      line.append(size_t(bar - fill - 1), ' ');
    }
    line += ']';
  }
  line += tail;
  if (width > 0 && int(line.size()) > width) {
    // Cut on a character boundary: the free-form text may hold UTF-8.
    size_t n = size_t(width);
    while (n > 0 && (uint8_t(line[n]) & 0xC0) == 0x80) --n;
    line.resize(n);
  }
  return line;
}

void ProgressBar::draw(bool final) {
  // One column short of the terminal: writing the last column makes some terminals wrap.
  std::string line = render(terminal_width(out_) - 1);
  std::string pad;
  if (line.size() < last_width_) pad.assign(last_width_ - line.size(), ' ');
  last_width_ = line.size();
  std::fprintf(out_, "\r%s%s%s", line.c_str(), pad.c_str(), final ? "\n" : "");
  std::fflush(out_);
}

}  // namespace lmkit
