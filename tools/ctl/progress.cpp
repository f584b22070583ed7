#include "progress.h"

#include <fmt/format.h>

#include <algorithm>

#include "format.h"

namespace glassbox::ctl {

std::string render_progress(std::uint64_t done, std::uint64_t total, double elapsed_seconds,
                            int width) {
  done = std::min(done, total);
  const double fraction = total == 0 ? 1.0 : static_cast<double>(done) / static_cast<double>(total);
  const int filled = std::clamp(static_cast<int>(fraction * width), 0, width);
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.append(static_cast<std::size_t>(width - filled), '.');
  return fmt::format("[{}] {:3}%  {} / {}  {}", bar, static_cast<int>(fraction * 100.0),
                     format_bytes(done), format_bytes(total), format_rate(done, elapsed_seconds));
}

ProgressBar::ProgressBar(std::uint64_t total, bool enabled, std::FILE* out)
    : total_(total), enabled_(enabled), out_(out), start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
  // An early exit (an error mid-dump) must not leave the shell prompt after a half-drawn bar.
  if (drawn_ && !finished_) std::fputc('\n', out_);
}

void ProgressBar::update(std::uint64_t done) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  draw(done);
}

void ProgressBar::finish() {
  if (!enabled_ || finished_) return;
  draw(total_);
  std::fputc('\n', out_);
  finished_ = true;
}

void ProgressBar::draw(std::uint64_t done) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  // "\r" + erase-to-end-of-line: a shorter frame must not leave the tail of a longer one.
  std::fprintf(out_, "\r%s\x1b[K", render_progress(done, total_, elapsed).c_str());
  std::fflush(out_);
  drawn_ = true;
}

}  // namespace glassbox::ctl
