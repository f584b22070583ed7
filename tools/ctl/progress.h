// The progress bar `dump` draws on stderr. Only a terminal gets one: a pipe or a log file would
// collect hundreds of carriage-return frames, so non-terminals see just the final summary.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace glassbox::ctl {

// One frame, e.g. "[##########..........]  50%  512.0 KiB / 1.0 MiB  12.3 MB/s", `width` being
// the bar's inner width. Pure so it can be unit-tested.
std::string render_progress(std::uint64_t done, std::uint64_t total, double elapsed_seconds,
                            int width = 30);

class ProgressBar {
 public:
  // Draws on `out` only when `enabled` (callers pass isatty(fileno(out))).
  ProgressBar(std::uint64_t total, bool enabled, std::FILE* out = stderr);
  ~ProgressBar();  // leaves the cursor on a fresh line if a frame was drawn
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;

  // Redraws at most every 100 ms, so a fast dump does not spend its time on the terminal.
  void update(std::uint64_t done);
  // Draws the last frame (100 %) and ends the line.
  void finish();
  bool enabled() const { return enabled_; }

 private:
  void draw(std::uint64_t done);

  std::uint64_t total_;
  bool enabled_;
  std::FILE* out_;
  bool drawn_ = false;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace glassbox::ctl
