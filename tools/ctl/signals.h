// SIGINT, SIGTERM and SIGHUP as bytes on a pipe, for the commands that hold a session (pause,
// watch, protect, break --watch, step): they poll the pipe between events and undo what they set
// up before leaving, instead of dying with guest memory or the VMM's intercepts changed.
#pragma once

#include <signal.h>

#include <array>

namespace glassbox::ctl {

class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  int read_fd() const { return fds_[0]; }
  // The first signal received and not yet taken, or 0.
  int take() const;

 private:
  static constexpr std::array<int, 3> kSignals = {SIGINT, SIGTERM, SIGHUP};
  int fds_[2] = {-1, -1};
  std::array<struct sigaction, 3> old_{};
};

// "SIGINT", "SIGTERM", "SIGHUP".
const char* stop_signal_name(int sig);

}  // namespace glassbox::ctl
