#include "run_glassbox.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <system_error>

namespace glassbox::test {

std::filesystem::path glassbox_binary() {
  return GLASSBOX_BINARY;
}
std::filesystem::path scenario_guest(const std::string& name) {
  return std::filesystem::path(GLASSBOX_SCENARIO_DIR) / (name + ".elf");
}
std::filesystem::path guest_kernel() {
  return GLASSBOX_GUEST_KERNEL;
}
std::filesystem::path linux_kernel() {
  if (const char* env = std::getenv("GLASSBOX_LINUX_KERNEL"); env && *env) return env;
  std::filesystem::path newest;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/boot", ec)) {
    const auto name = entry.path().filename().string();
    // Version order is close enough to name order for Debian's kernels.
    if (name.starts_with("vmlinuz-") && entry.path().filename() > newest.filename()) {
      newest = entry.path();
    }
  }
  return newest;
}
std::filesystem::path linux_initramfs() {
  return GLASSBOX_LINUX_INITRAMFS;
}

GlassboxProcess::GlassboxProcess(const std::vector<std::string>& args, bool console_input) {
  int out[2], err[2], in[2] = {-1, -1};
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 ||
      (console_input && pipe2(in, O_CLOEXEC) != 0)) {
    throw std::system_error(errno, std::generic_category(), "pipe2");
  }
  std::vector<std::string> argv_storage;
  argv_storage.push_back(glassbox_binary().string());
  argv_storage.insert(argv_storage.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  start_ = std::chrono::steady_clock::now();
  pid_ = fork();
  if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
  if (pid_ == 0) {
    // A VM must not outlive a test that crashed or was killed (a beacon guest spins forever).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    if (in[0] >= 0) {
      dup2(in[0], STDIN_FILENO);
    } else {
      int devnull = open("/dev/null", O_RDONLY);
      if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
  if (in[0] >= 0) close(in[0]);
  in_fd_ = in[1];
  // A VMM that exited must turn write_input() into false, not kill the test.
  if (in_fd_ >= 0) signal(SIGPIPE, SIG_IGN);
}

bool GlassboxProcess::write_input(const std::string& bytes) {
  std::size_t done = 0;
  while (in_fd_ >= 0 && done < bytes.size()) {
    const ssize_t n = ::write(in_fd_, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return in_fd_ >= 0;
}

GlassboxProcess::~GlassboxProcess() {
  if (!reaped_ && pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  if (out_fd_ >= 0) close(out_fd_);
  if (err_fd_ >= 0) close(err_fd_);
  if (in_fd_ >= 0) close(in_fd_);
}

void GlassboxProcess::send_signal(int sig) {
  if (!reaped_) kill(pid_, sig);
}

void GlassboxProcess::pump(int timeout_ms) {
  pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
  if (poll(fds, 2, timeout_ms) <= 0) return;
  char buf[65536];
  for (int i = 0; i < 2; ++i) {
    if (fds[i].revents & (POLLIN | POLLHUP)) {
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n > 0) (i == 0 ? result_.out : result_.err).append(buf, static_cast<size_t>(n));
    }
  }
}

std::string GlassboxProcess::output_so_far() {
  pump(0);
  return result_.out;
}

bool GlassboxProcess::wait_for_output(const std::string& needle,
                                      std::chrono::milliseconds timeout) {
  return wait_for(&RunResult::out, needle, timeout, 0);
}

bool GlassboxProcess::wait_for_log(const std::string& needle, std::chrono::milliseconds timeout,
                                   std::size_t from) {
  return wait_for(&RunResult::err, needle, timeout, from);
}

std::size_t GlassboxProcess::log_size() {
  pump(0);
  return result_.err.size();
}

bool GlassboxProcess::wait_for(std::string RunResult::*stream, const std::string& needle,
                               std::chrono::milliseconds timeout, std::size_t from) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while ((result_.*stream).find(needle, from) == std::string::npos) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    int status;
    if (!reaped_ && waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      result_.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    pump(20);
    if (reaped_) {
      pump(0);
      return (result_.*stream).find(needle, from) != std::string::npos;
    }
  }
  return true;
}

RunResult GlassboxProcess::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!reaped_) {
    int status;
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      reaped_ = true;
      result_.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      break;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      result_.timed_out = true;
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      reaped_ = true;
      result_.exit_status = 128 + SIGKILL;
      break;
    }
    pump(20);
  }
  // Drain whatever is left in the pipes (the writer is gone, so reads end with EOF).
  for (int fd : {out_fd_, err_fd_}) {
    char buf[65536];
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) {
      (fd == out_fd_ ? result_.out : result_.err).append(buf, static_cast<size_t>(n));
    }
  }
  result_.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - start_);
  return result_;
}

RunResult run_glassbox(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  GlassboxProcess p(args);
  return p.wait(timeout);
}

}  // namespace glassbox::test
