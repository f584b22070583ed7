#include "signals.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace glassbox::ctl {

namespace {

// The handler runs on whichever thread the kernel picks (the session's reader thread included);
// write() is async-signal-safe there.
int g_signal_pipe_write = -1;

extern "C" void on_stop_signal(int sig) {
  const int saved = errno;
  const char byte = static_cast<char>(sig);
  [[maybe_unused]] auto n = write(g_signal_pipe_write, &byte, 1);
  errno = saved;
}

}  // namespace

StopSignals::StopSignals() {
  if (pipe2(fds_, O_CLOEXEC | O_NONBLOCK) != 0) {
    throw std::system_error(errno, std::generic_category(), "pipe2");
  }
  g_signal_pipe_write = fds_[1];
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (std::size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &action, &old_[i]);
}

StopSignals::~StopSignals() {
  for (std::size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &old_[i], nullptr);
  g_signal_pipe_write = -1;
  close(fds_[0]);
  close(fds_[1]);
}

int StopSignals::take() const {
  char byte = 0;
  return read(fds_[0], &byte, 1) == 1 ? byte : 0;
}

const char* stop_signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGHUP ? "SIGHUP" : "SIGTERM";
}

}  // namespace glassbox::ctl
