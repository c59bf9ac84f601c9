// ProgressBar: one self-redrawing status line on stderr for long work (data preparation, BPE
// training, the training loop): a bar, count, rate, ETA and free-form text. Not a logger: it draws
// only when its stream is a terminal, and prints nothing at all otherwise.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace lmkit {

class ProgressBar {
 public:
  // How counts are shown: Bytes as "12.3 MB" and "8.1 MB/s"; Count as "1.2k" with `unit` after
  // it ("tok", "step", "merge").
  enum class Unit { Count, Bytes };

  // total <= 0: unknown total (no bar, no ETA). Draws on `out` only when it is a terminal (or
  // after set_enabled(true)); redraws at most 10 times a second.
  ProgressBar(int64_t total, std::string label, Unit unit = Unit::Count, std::string unit_name = "",
              FILE *out = stderr);
  ~ProgressBar();  // finish() if it has not run
  ProgressBar(const ProgressBar &) = delete;
  ProgressBar &operator=(const ProgressBar &) = delete;

  // Sets the amount done and the free-form text shown after the ETA ("loss 2.31 | 41% MFU").
  // Cheap when it does not redraw; call it as often as you like (from one thread).
  void update(int64_t done, std::string_view extra = {});
  // Draws the final state and ends the line. Idempotent.
  void finish(std::string_view extra = {});

  void set_enabled(bool on) { enabled_ = on; }  // force drawing on or off (tests, --quiet)
  bool enabled() const { return enabled_; }
  void set_total(int64_t total) { total_ = total; }

  double elapsed() const;      // seconds since construction
  double rate() const;         // units per second, averaged over recent updates
  double eta_seconds() const;  // < 0 when unknown
  // The line as it would be drawn (no carriage return), at most `width` columns.
  std::string render(int width) const;

  // "1:02:03", "4:05", "0:07".
  static std::string format_duration(double seconds);
  // "512 B", "12.3 KB", "4.56 MB", "1.23 GB" (powers of 1000, as disk and network tools do).
  static std::string format_bytes(double bytes);
  // "950", "12.3k", "4.56M", "7.89G".
  static std::string format_count(double n);

 private:
  void draw(bool final);

  int64_t total_, done_ = 0;
  std::string label_, unit_name_, extra_;
  Unit unit_;
  FILE *out_;
  bool enabled_, finished_ = false;
  double start_, last_draw_ = -1.0;
  // Two reference points for the rate: it is measured over the last few seconds, so that a
  // slow start (a model warming up, a first file that is larger) does not skew the ETA forever.
  double ref_time_[2];
  int64_t ref_done_[2] = {0, 0};
  size_t last_width_ = 0;
};

}  // namespace lmkit
