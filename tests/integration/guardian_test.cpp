// examples/guardian end to end: the guest kernel in attack mode tries to patch its own text,
// overwrite a syscall-table entry and rewrite LSTAR. With the guardian attached every attempt is
// blocked from outside the guest and the guest still finishes normally; without it every attempt
// succeeds (so the guest's checks do see a successful attack).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "glassbox/client/session.h"
#include "run_glassbox.h"

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

fs::path guardian_binary() {
  return glassbox::test::glassbox_binary().parent_path() / "glassbox-example-guardian";
}

// gen_json.py writes the description next to the ELF.
fs::path guest_description() {
  return glassbox::test::guest_kernel().parent_path() / "glassbox-guest.json";
}

// The guardian as a child process; stdout and stderr go to one pipe, read as they come.
class Guardian {
 public:
  explicit Guardian(const std::vector<std::string>& args) {
    int out[2];
    if (pipe2(out, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category());
    std::vector<std::string> storage{guardian_binary().string()};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      dup2(out[1], STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    fd_ = out[0];
  }
  ~Guardian() {
    if (!reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(fd_);
  }
  Guardian(const Guardian&) = delete;
  Guardian& operator=(const Guardian&) = delete;

  void signal(int sig) { kill(pid_, sig); }

  bool wait_for_output(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (output_.find(needle) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= deadline || !pump(100)) {
        return output_.find(needle) != std::string::npos;
      }
    }
    return true;
  }

  // Exit status once it ends by itself (-1 and killed after the timeout).
  int wait(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (pump(100)) {
      if (std::chrono::steady_clock::now() >= deadline) {
        kill(pid_, SIGKILL);
        break;
      }
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  const std::string& output() const { return output_; }

 private:
  // Reads what is there; false at end of file.
  bool pump(int timeout_ms) {
    pollfd fds{fd_, POLLIN, 0};
    if (poll(&fds, 1, timeout_ms) <= 0) return true;
    char buf[4096];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;
    output_.append(buf, static_cast<std::size_t>(n));
    return true;
  }

  pid_t pid_ = -1;
  int fd_ = -1;
  bool reaped_ = false;
  std::string output_;
};

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "glassbox-guardian-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::system_error(errno, std::generic_category());
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

bool wait_for_path(const fs::path& path, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!fs::exists(path)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

std::vector<std::string> attack_vm(const fs::path& socket) {
  std::vector<std::string> args{"run",    "--kernel", glassbox::test::guest_kernel().string(),
                                "--cpus", "2",        "--cmdline",
                                "attack"};
  if (!socket.empty()) {
    args.push_back("--introspect");
    args.push_back("unix:" + socket.string());
    args.push_back("--start-paused");  // no guest instruction runs before the guardian is armed
  }
  return args;
}

TEST(GuardianTest, WithoutTheGuardianEveryAttackSucceeds) {
  auto r = glassbox::test::run_glassbox(attack_vm({}), 120s);
  ASSERT_FALSE(r.timed_out) << r.out << r.err;
  EXPECT_NE(r.out.find("attack kernel-text: succeeded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attack syscall-table: succeeded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attack lstar: succeeded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attack summary: 3 of 3 succeeded"), std::string::npos) << r.out;
}

TEST(GuardianTest, TheGuardianBlocksAllThreeAttacksAndTheGuestExitsZero) {
  TempDir dir;
  const fs::path socket = dir.path() / "guardian.sock";
  // The guardian listens first; the VMM connects to it and holds every vCPU (--start-paused)
  // until the guardian, armed, answers their pause events: the attacker cannot win a race.
  Guardian guardian({"--guest", guest_description().string(), "--accept", socket.string()});
  ASSERT_TRUE(wait_for_path(socket, 60s)) << guardian.output();
  auto r = glassbox::test::run_glassbox(attack_vm(socket), 120s);
  ASSERT_FALSE(r.timed_out) << r.out << r.err;
  EXPECT_EQ(r.exit_status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("attack kernel-text: blocked"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attack syscall-table: blocked"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attack lstar: blocked"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("attack summary: 0 of 3 succeeded"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("all processes done"), std::string::npos) << r.out;

  // The guardian noticed the VM leave, exited 0, and named the attacker in its log.
  EXPECT_EQ(guardian.wait(30s), 0) << guardian.output();
  const std::string& log = guardian.output();
  EXPECT_NE(log.find("blocked a write to the kernel-text"), std::string::npos) << log;
  EXPECT_NE(log.find("blocked a write to the syscall-table"), std::string::npos) << log;
  EXPECT_NE(log.find("blocked LSTAR"), std::string::npos) << log;
  EXPECT_NE(log.find("by attacker (pid "), std::string::npos) << log;
  EXPECT_NE(log.find("the VM went away"), std::string::npos) << log;
}

TEST(GuardianTest, SigintLiftsTheProtectionsAndTheVmRunsOn) {
  TempDir dir;
  const fs::path socket = dir.path() / "kvmi.sock";
  // Beacon mode keeps the VM up until a tool ends the beacon.
  glassbox::test::GlassboxProcess vmm({"run", "--kernel", glassbox::test::guest_kernel().string(),
                                       "--cpus", "2", "--cmdline", "beacon", "--introspect",
                                       "listen:unix:" + socket.string()});
  ASSERT_TRUE(wait_for_path(socket, 60s)) << vmm.output_so_far();
  ASSERT_TRUE(vmm.wait_for_output("syscall:", 30s)) << vmm.output_so_far();
  Guardian guardian({"--guest", guest_description().string(), "--connect", socket.string()});
  ASSERT_TRUE(guardian.wait_for_output("writes tracked on 2 vCPUs", 30s)) << guardian.output();
  guardian.signal(SIGINT);
  EXPECT_EQ(guardian.wait(30s), 0) << guardian.output();
  EXPECT_NE(guardian.output().find("protections lifted"), std::string::npos) << guardian.output();
  EXPECT_NE(guardian.output().find("blocked 0 kernel-text, 0 syscall-table and 0 LSTAR"),
            std::string::npos)
      << guardian.output();
  // The VM is still running and takes the next tool.
  std::unique_ptr<glassbox::client::Session> next;
  for (int i = 0; i < 50 && !next; ++i) {
    if (auto s = glassbox::client::Session::connect(socket)) {
      next = std::move(*s);
    } else {
      std::this_thread::sleep_for(100ms);
    }
  }
  ASSERT_TRUE(next) << vmm.output_so_far();
  auto count = next->get_vcpu_count();
  ASSERT_TRUE(count.has_value()) << count.error().message;
  EXPECT_EQ(*count, 2u);
  next->close();
  vmm.send_signal(SIGTERM);
  auto result = vmm.wait(30s);
  EXPECT_EQ(result.exit_status, 143) << result.err;
}

}  // namespace
