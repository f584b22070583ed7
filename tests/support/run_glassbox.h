// Runs the real `glassbox` binary as a child process, the way a user runs it, and captures its
// serial console (stdout), its log (stderr) and its exit status. Used by every integration test.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace glassbox::test {

struct RunResult {
  std::string out;       // guest serial console
  std::string err;       // VMM log and diagnostics
  int exit_status = -1;  // exit code, or 128 + signal if the VMM died from a signal
  bool timed_out = false;
  std::chrono::milliseconds elapsed{0};
};

// Paths filled in by CMake (compile definitions), so tests run from any directory.
std::filesystem::path glassbox_binary();
std::filesystem::path scenario_guest(const std::string& name);  // tests/guests/NAME.elf
std::filesystem::path guest_kernel();                           // guest/glassbox-guest.elf
// The Linux guest: Debian's kernel ($GLASSBOX_LINUX_KERNEL, else the newest /boot/vmlinuz-*;
// empty when there is none) and the test initramfs (tests/guests/linux/).
std::filesystem::path linux_kernel();
std::filesystem::path linux_initramfs();

// Runs `glassbox ARGS...`; kills it with SIGKILL after `timeout` (timed_out = true).
RunResult run_glassbox(const std::vector<std::string>& args,
                       std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A glassbox process started in the background (for tests that talk to it while it runs).
class GlassboxProcess {
 public:
  // With `console_input`, the VMM's stdin is a pipe fed by write_input(); otherwise /dev/null.
  explicit GlassboxProcess(const std::vector<std::string>& args, bool console_input = false);
  ~GlassboxProcess();  // SIGKILL + reap if still running
  GlassboxProcess(const GlassboxProcess&) = delete;
  GlassboxProcess& operator=(const GlassboxProcess&) = delete;

  int pid() const { return pid_; }
  void send_signal(int sig);
  // Waits for exit; returns the collected output. Kills it after `timeout`.
  RunResult wait(std::chrono::milliseconds timeout = std::chrono::seconds(60));
  // Waits until the serial output contains `needle` (true) or the timeout passes (false).
  bool wait_for_output(const std::string& needle,
                       std::chrono::milliseconds timeout = std::chrono::seconds(30));
  std::string output_so_far();
  // Sends bytes to the guest's serial console (needs console_input). False once it is gone.
  bool write_input(const std::string& bytes);
  // Waits until the VMM's log (stderr) contains `needle` at or after offset `from`.
  bool wait_for_log(const std::string& needle,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30),
                    std::size_t from = 0);
  // How much of the log was collected so far (a `from` for wait_for_log).
  std::size_t log_size();

 private:
  void pump(int timeout_ms);
  bool wait_for(std::string RunResult::*stream, const std::string& needle,
                std::chrono::milliseconds timeout, std::size_t from);
  int pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  int in_fd_ = -1;
  RunResult result_;
  bool reaped_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace glassbox::test
