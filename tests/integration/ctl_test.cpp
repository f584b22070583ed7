// glassbox-ctl end to end: the real glassbox runs a real guest with introspection, and the real
// glassbox-ctl binary talks to it as a user would, from its command line to its exit status.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include <functional>

#include "glassbox/client/session.h"
#include "run_glassbox.h"

namespace fs = std::filesystem;
using glassbox::test::GlassboxProcess;

namespace {

// glassbox-ctl is built next to glassbox (both in ${CMAKE_BINARY_DIR}/bin).
fs::path ctl_binary() {
  return glassbox::test::glassbox_binary().parent_path() / "glassbox-ctl";
}

struct CtlResult {
  std::string out;
  std::string err;
  int exit_status = -1;
};

// glassbox-ctl as a child process with its stdout and stderr captured (pipes, so stderr is not a
// terminal and no progress bar may appear).
class CtlProcess {
 public:
  explicit CtlProcess(const std::vector<std::string>& args) {
    int out[2], err[2];
    if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
      throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    std::vector<std::string> storage{ctl_binary().string()};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ < 0) throw std::system_error(errno, std::generic_category(), "fork");
    if (pid_ == 0) {
      dup2(out[1], STDOUT_FILENO);
      dup2(err[1], STDERR_FILENO);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(out[1]);
    close(err[1]);
    out_fd_ = out[0];
    err_fd_ = err[0];
  }
  ~CtlProcess() {
    if (pid_ > 0 && !reaped_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(out_fd_);
    close(err_fd_);
  }
  CtlProcess(const CtlProcess&) = delete;
  CtlProcess& operator=(const CtlProcess&) = delete;

  void signal(int sig) { kill(pid_, sig); }

  // Waits until stderr contains `needle` (what the holding commands print once they are set up).
  bool wait_for_err(const std::string& needle, std::chrono::seconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (result_.err.find(needle) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
      if (poll(fds, 2, 100) <= 0) continue;
      char buf[65536];
      for (int i = 0; i < 2; ++i) {
        if (!(fds[i].revents & POLLIN)) continue;
        ssize_t n = read(fds[i].fd, buf, sizeof buf);
        if (n > 0) (i == 0 ? result_.out : result_.err).append(buf, static_cast<size_t>(n));
      }
    }
    return true;
  }

  CtlResult wait(std::chrono::seconds timeout = std::chrono::seconds(60)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    bool out_open = true, err_open = true;
    while (out_open || err_open) {
      if (std::chrono::steady_clock::now() >= deadline) {
        kill(pid_, SIGKILL);
        result_.err += "\n[ctl_test: killed after timeout]";
        break;
      }
      pollfd fds[2] = {{out_fd_, POLLIN, 0}, {err_fd_, POLLIN, 0}};
      if (poll(fds, 2, 100) <= 0) continue;
      char buf[65536];
      for (int i = 0; i < 2; ++i) {
        if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
        ssize_t n = read(fds[i].fd, buf, sizeof buf);
        if (n > 0) {
          (i == 0 ? result_.out : result_.err).append(buf, static_cast<size_t>(n));
        } else {
          (i == 0 ? out_open : err_open) = false;
        }
      }
    }
    int status = 0;
    waitpid(pid_, &status, 0);
    reaped_ = true;
    result_.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return result_;
  }

 private:
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  bool reaped_ = false;
  CtlResult result_;
};

CtlResult run_ctl(const std::vector<std::string>& args) {
  return CtlProcess(args).wait();
}

std::string describe(const CtlResult& r) {
  return "exit " + std::to_string(r.exit_status) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
}

// A scratch directory for sockets and files, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "glassbox-ctl-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      throw std::system_error(errno, std::generic_category(), "mkdtemp");
    }
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
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!fs::exists(path)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// A long-running 2-vCPU, 128 MiB guest (io_loop only touches registers and the UART, so its RAM
// above the boot structures is free scratch space) with the VMM listening for tools.
class CtlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = dir_.path() / "kvmi.sock";
    vmm_ = std::make_unique<GlassboxProcess>(std::vector<std::string>{
        "run", "--kernel", glassbox::test::scenario_guest("io_loop").string(), "--cmdline",
        "100000000", "--cpus", "2", "--memory", "128M", "--name", "ctl-test", "--introspect",
        "listen:unix:" + socket_.string()});
    ASSERT_TRUE(wait_for_path(socket_, std::chrono::seconds(60)))
        << "glassbox never created " << socket_ << "; its output:\n"
        << vmm_->output_so_far();
  }

  std::vector<std::string> ctl_args(std::initializer_list<std::string> args) const {
    std::vector<std::string> v{"--connect", "unix:" + socket_.string()};
    v.insert(v.end(), args);
    return v;
  }

  // The guest bytes at [gpa, gpa + size) read by the test itself through the client library.
  std::vector<std::byte> read_with_client(std::uint64_t gpa, std::uint64_t size) {
    auto session = glassbox::client::Session::connect(socket_);
    EXPECT_TRUE(session.has_value()) << session.error().message;
    std::vector<std::byte> bytes(size);
    if (!session) return bytes;
    for (std::uint64_t off = 0; off < size; off += 4096) {
      auto chunk = std::span(bytes).subspan(off, std::min<std::uint64_t>(4096, size - off));
      auto r = (*session)->read_physical(gpa + off, chunk);
      EXPECT_TRUE(r.has_value()) << r.error().message;
      if (!r) break;
    }
    return bytes;
  }

  TempDir dir_;
  fs::path socket_;
  std::unique_ptr<GlassboxProcess> vmm_;
};

TEST_F(CtlTest, InfoJsonReportsTwoVcpusAndTheVmIdentity) {
  auto r = run_ctl(ctl_args({"--json", "info"}));
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["vcpu_count"], 2);
  EXPECT_EQ(j["version"], 1);
  EXPECT_EQ(j["vm"]["name"], "ctl-test");
  EXPECT_EQ(j["vm"]["uuid"].get<std::string>().size(), 36u);
  // 128 MiB is 0x8000 frames; the VMM may map more (e.g. MMIO) but never less.
  EXPECT_GE(j["max_gfn"].get<std::uint64_t>(), 0x8000u);
}

TEST_F(CtlTest, InfoTextNamesEveryField) {
  auto r = run_ctl(ctl_args({"info"}));
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  for (const char* field : {"VM name:", "VM uuid:", "KVMI version:", "vCPUs:", "max gfn:"}) {
    EXPECT_NE(r.out.find(field), std::string::npos) << field << "\n" << describe(r);
  }
}

TEST_F(CtlTest, ReadShowsTheBootInfoMagic) {
  auto text = run_ctl(ctl_args({"read", "0x7000", "8"}));
  ASSERT_EQ(text.exit_status, 0) << describe(text);
  EXPECT_NE(text.out.find("|GLASSBOX|"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("0000000000007000  47 4c 41 53 53 42 4f 58"), std::string::npos)
      << text.out;

  auto json = run_ctl(ctl_args({"--json", "read", "0x7000", "8"}));
  ASSERT_EQ(json.exit_status, 0) << describe(json);
  auto j = nlohmann::json::parse(json.out);
  EXPECT_EQ(j["hex"], "474c415353424f58");  // "GLASSBOX"
  EXPECT_EQ(j["gpa"], "0x7000");
}

TEST_F(CtlTest, WriteThenReadRoundTrips) {
  auto w = run_ctl(ctl_args({"write", "0x7ff000", "de ad be ef 01 02"}));
  ASSERT_EQ(w.exit_status, 0) << describe(w);
  auto r = run_ctl(ctl_args({"--json", "read", "0x7ff000", "6"}));
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  EXPECT_EQ(nlohmann::json::parse(r.out)["hex"], "deadbeef0102");
}

TEST_F(CtlTest, WriteAndReadAcrossAPageBoundarySplitTheRequests) {
  // KVMI moves at most one page per message; ctl must split 0x7ffffe..0x800002 in two.
  auto w = run_ctl(ctl_args({"write", "0x7ffffe", "11223344"}));
  ASSERT_EQ(w.exit_status, 0) << describe(w);
  auto r = run_ctl(ctl_args({"--json", "read", "0x7ffffe", "4"}));
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  EXPECT_EQ(nlohmann::json::parse(r.out)["hex"], "11223344");
}

TEST_F(CtlTest, DumpOfOneMibEqualsTheBytesWrittenAndReadBack) {
  constexpr std::uint64_t kBase = 0x4000000;  // 64 MiB: untouched by io_loop
  constexpr std::size_t kSize = 1 << 20;
  std::vector<char> pattern(kSize);
  std::mt19937 rng(7);
  for (auto& c : pattern) c = static_cast<char>(rng());
  fs::path input = dir_.path() / "pattern.bin";
  std::ofstream(input, std::ios::binary).write(pattern.data(), kSize);

  auto w = run_ctl(ctl_args({"write", "0x4000000", "--file", input.string()}));
  ASSERT_EQ(w.exit_status, 0) << describe(w);

  fs::path out = dir_.path() / "dump.bin";
  auto d = run_ctl(ctl_args({"dump", "0x4000000", "1M", "--out", out.string()}));
  ASSERT_EQ(d.exit_status, 0) << describe(d);
  // stderr is a pipe here: only the summary, never a progress frame.
  EXPECT_EQ(d.err.find('\r'), std::string::npos) << d.err;
  EXPECT_NE(d.err.find("MB/s"), std::string::npos) << d.err;
  EXPECT_FALSE(fs::exists(out.string() + ".partial"));

  std::ifstream in(out, std::ios::binary);
  std::vector<char> dumped((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(dumped.size(), kSize);
  EXPECT_TRUE(dumped == pattern) << "dump differs from the bytes written";

  auto read_back = read_with_client(kBase, kSize);
  EXPECT_EQ(std::memcmp(read_back.data(), dumped.data(), kSize), 0)
      << "dump differs from the bytes the client library reads";
}

TEST_F(CtlTest, VmmErrorsExitOneAndNameTheKvmiError) {
  // Far beyond the 128 MiB guest: the VMM answers -KVM_ENOENT.
  auto r = run_ctl(ctl_args({"read", "0x10000000000", "16"}));
  EXPECT_EQ(r.exit_status, 1) << describe(r);
  EXPECT_NE(r.err.find("-KVM_ENOENT"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("0x10000000000"), std::string::npos) << describe(r);

  auto j = run_ctl(ctl_args({"--json", "read", "0x10000000000", "16"}));
  EXPECT_EQ(j.exit_status, 1) << describe(j);
  auto error = nlohmann::json::parse(j.out)["error"];
  EXPECT_EQ(error["kind"], "kvmi");
  EXPECT_EQ(error["code"], -2);

  // A failed dump leaves no output file behind.
  fs::path out = dir_.path() / "nothing.bin";
  auto d = run_ctl(ctl_args({"dump", "0x10000000000", "64K", "--out", out.string()}));
  EXPECT_EQ(d.exit_status, 1) << describe(d);
  EXPECT_FALSE(fs::exists(out));
  EXPECT_FALSE(fs::exists(out.string() + ".partial"));
}

TEST(CtlAcceptTest, AcceptWaitsForAVmmThatConnectsToTheTool) {
  TempDir dir;
  fs::path socket = dir.path() / "tool.sock";
  CtlProcess ctl({"--accept", "unix:" + socket.string(), "--timeout", "30", "--json", "info"});
  ASSERT_TRUE(wait_for_path(socket, std::chrono::seconds(60)));
  GlassboxProcess vmm({"run", "--kernel", glassbox::test::scenario_guest("io_loop").string(),
                       "--cmdline", "100000000", "--cpus", "2", "--introspect",
                       "unix:" + socket.string()});
  auto r = ctl.wait();
  ASSERT_EQ(r.exit_status, 0) << describe(r) << "\nVMM:\n" << vmm.output_so_far();
  EXPECT_EQ(nlohmann::json::parse(r.out)["vcpu_count"], 2);
}

TEST(CtlSecretTest, TheRightSecretIsAcceptedAndAWrongOneExitsOne) {
  TempDir dir;
  fs::path socket = dir.path() / "kvmi.sock";
  fs::path secret = dir.path() / "secret";
  fs::path wrong = dir.path() / "wrong";
  std::ofstream(secret) << "open sesame";
  std::ofstream(wrong) << "open barley";
  GlassboxProcess vmm({"run", "--kernel", glassbox::test::scenario_guest("io_loop").string(),
                       "--cmdline", "100000000", "--introspect", "listen:unix:" + socket.string(),
                       "--secret", secret.string()});
  ASSERT_TRUE(wait_for_path(socket, std::chrono::seconds(60))) << vmm.output_so_far();
  const std::string endpoint = "unix:" + socket.string();

  auto refused = run_ctl({"--connect", endpoint, "--secret", wrong.string(), "info"});
  EXPECT_EQ(refused.exit_status, 1) << describe(refused);
  EXPECT_NE(refused.err.find("--secret"), std::string::npos) << describe(refused);

  auto accepted = run_ctl({"--connect", endpoint, "--secret", secret.string(), "--json", "info"});
  ASSERT_EQ(accepted.exit_status, 0) << describe(accepted);
  EXPECT_EQ(nlohmann::json::parse(accepted.out)["vcpu_count"], 1);
}

TEST(CtlUsageTest, BadArgumentsExitTwoAndNameTheArgument) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{"--connect", "unix:/nonexistent", "read", "zz"}, "GPA"},
      {{"--connect", "unix:/nonexistent", "read", "0x7000", "5Q"}, "LEN"},
      {{"--connect", "unix:/nonexistent", "read"}, "GPA"},
      {{"--connect", "unix:/nonexistent", "write", "0x1000", "abc"}, "HEX"},
      {{"--connect", "unix:/nonexistent", "write", "0x1000"}, "HEX"},
      {{"--connect", "unix:/nonexistent", "dump", "0", "1M"}, "--out"},
      {{"--connect", "unix:/nonexistent", "dump", "0", "1M", "-o", "x", "--window", "0"},
       "--window"},
      {{"--connect", "/no/scheme", "info"}, "--connect"},
      {{"info"}, "--connect"},
      {{"--connect", "unix:/a", "--accept", "unix:/b", "info"}, "--connect/--accept"},
      {{"--connect", "unix:/nonexistent", "frobnicate"}, "frobnicate"},
  };
  for (const auto& c : cases) {
    auto r = run_ctl(c.args);
    EXPECT_EQ(r.exit_status, 2) << c.names << ": " << describe(r);
    EXPECT_NE(r.err.find(c.names), std::string::npos) << c.names << ": " << describe(r);
  }
}

TEST(CtlUsageTest, NoVmmListeningExitsOne) {
  auto r = run_ctl({"--connect", "unix:/nonexistent/kvmi.sock", "info"});
  EXPECT_EQ(r.exit_status, 1) << describe(r);
  EXPECT_NE(r.err.find("/nonexistent/kvmi.sock"), std::string::npos) << describe(r);
}

// ---- vCPU commands (regs, translate, inject, pause, resume) on glassbox's guest kernel ----

// The guest kernel on 2 vCPUs in beacon mode: vCPU 1 runs only the beacon, a CPL3 loop that
// keeps the VM up until a tool ends it (here: an injected #PF kills it and the guest powers off).
class CtlVcpuTest : public ::testing::Test {
 protected:
  // Whether the VMM can deliver KVMI_EVENT_BREAKPOINT on this host: it refuses the event where
  // guest INT3s never reach it (under QEMU TCG's nested SVM, the KVM lab).
  bool breakpoints_reach_the_vmm() const {
    auto tool = glassbox::client::Session::connect(socket_);
    if (!tool) return true;  // let the command under test report the trouble
    return (*tool)
        ->check_event(static_cast<std::uint16_t>(glassbox::kvmi::EventId::Breakpoint))
        .has_value();
  }
  static constexpr const char* kNoBreakpointsHere =
      "this host's KVM gives guest INT3s to the guest without an exit, so glassbox refuses "
      "KVMI_EVENT_BREAKPOINT here (glassbox host-info: 'no exit')";

  void SetUp() override {
    socket_ = dir_.path() / "kvmi.sock";
    vmm_ = std::make_unique<GlassboxProcess>(std::vector<std::string>{
        "run", "--kernel", glassbox::test::guest_kernel().string(), "--cpus", "2", "--cmdline",
        "beacon", "--introspect", "listen:unix:" + socket_.string()});
    ASSERT_TRUE(wait_for_path(socket_, std::chrono::seconds(60))) << vmm_->output_so_far();
    // Past boot: page tables, IDT and LSTAR are set up once the SYSCALL probe has printed.
    ASSERT_TRUE(vmm_->wait_for_output("syscall:", std::chrono::seconds(30)))
        << vmm_->output_so_far();
  }

  std::vector<std::string> ctl_args(std::initializer_list<std::string> args) const {
    std::vector<std::string> v{"--connect", "unix:" + socket_.string()};
    v.insert(v.end(), args);
    return v;
  }

  // Kills the beacon with an injected #PF and expects the guest to finish normally: proof that
  // the VM runs (and that no vCPU was left paused).
  void end_beacon_and_expect_a_clean_exit() {
    // An interrupt already on its way into the guest when the vCPU stopped takes precedence over
    // the injection (spec: TRAP then reports what was delivered, e.g. the timer's vector 32), so
    // inject again until the TRAP event says the #PF itself was delivered.
    CtlResult r;
    for (int attempt = 0; attempt < 50; ++attempt) {
      r = run_ctl(ctl_args({"inject", "--vcpu", "1", "PF", "--address", "0xbad000", "--user"}));
      ASSERT_EQ(r.exit_status, 0) << describe(r);
      if (r.out.find("TRAP delivered #PF") != std::string::npos) break;
    }
    ASSERT_NE(r.out.find("TRAP delivered #PF"), std::string::npos) << describe(r);
    EXPECT_TRUE(vmm_->wait_for_output("all processes done", std::chrono::seconds(60)))
        << vmm_->output_so_far() << "\nthe inject that should have ended the beacon:\n"
        << describe(r);
    auto result = vmm_->wait(std::chrono::seconds(60));
    EXPECT_EQ(result.exit_status, 0) << result.err;
  }

  TempDir dir_;
  fs::path socket_;
  std::unique_ptr<GlassboxProcess> vmm_;
};

TEST_F(CtlVcpuTest, RegsJsonShowsBothVcpusInLongModeWithLstar) {
  // vCPU 1 programs LSTAR a little after vCPU 0 prints the probe; read until both have.
  nlohmann::json j;
  bool both = false;
  for (int attempt = 0; attempt < 50 && !both; ++attempt) {
    auto r = run_ctl(ctl_args({"--json", "regs", "--msr", "0xc0000082"}));
    ASSERT_EQ(r.exit_status, 0) << describe(r);
    j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j["vcpus"].size(), 2u) << r.out;
    both = true;
    for (const auto& v : j["vcpus"]) {
      both = both && v["msrs"]["0xc0000082"].get<std::string>() != "0x0";
    }
    if (!both) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(both) << j.dump(2);
  EXPECT_TRUE(j["paused"].get<bool>());
  for (int i = 0; i < 2; ++i) {
    const auto& v = j["vcpus"][i];
    EXPECT_EQ(v["vcpu"], i);
    EXPECT_EQ(v["mode"], 8);
    for (const char* field :
         {"rax", "rsp", "rip", "rflags", "cr0", "cr2", "cr3", "cr4", "efer", "cs", "ss"}) {
      EXPECT_TRUE(v.contains(field)) << field;
    }
    EXPECT_EQ(v["cr0"].get<std::string>().substr(0, 4), "0x80") << "paging is on";
  }
  EXPECT_EQ(j["vcpus"][0]["msrs"]["0xc0000082"], j["vcpus"][1]["msrs"]["0xc0000082"]);

  // The text table, one vCPU, read on the fly, MSR by name.
  auto text = run_ctl(ctl_args({"regs", "--vcpu", "1", "--no-pause", "--msr", "lstar"}));
  ASSERT_EQ(text.exit_status, 0) << describe(text);
  for (const char* row :
       {"vcpu 1", "rip ", "cr3 ", "efer ", "cs ", "mode ", "8 (64-bit)", "lstar (0xc0000082)"}) {
    EXPECT_NE(text.out.find(row), std::string::npos) << row << "\n" << text.out;
  }
  EXPECT_EQ(text.out.find("vcpu 0"), std::string::npos) << text.out;

  auto missing = run_ctl(ctl_args({"regs", "--vcpu", "5"}));
  EXPECT_EQ(missing.exit_status, 2) << describe(missing);
  EXPECT_NE(missing.err.find("--vcpu"), std::string::npos) << describe(missing);
}

TEST_F(CtlVcpuTest, TranslateGivesTheGpaOfTheBeaconsCodeAndRefusesUnmappedAddresses) {
  // vCPU 1 may still be on the boot page tables (identity map) until it first switches to the
  // beacon's address space: ask until the answer comes from the beacon's own tables.
  CtlResult t;
  for (int attempt = 0; attempt < 600; ++attempt) {
    t = run_ctl(ctl_args({"--json", "translate", "0x40000000", "--vcpu", "1"}));
    if (t.exit_status != 0) break;
    const auto answer = nlohmann::json::parse(t.out, nullptr, false);
    if (answer.is_discarded() || answer.value("gpa", std::string()) != "0x40000000") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(t.exit_status, 0) << describe(t);
  auto j = nlohmann::json::parse(t.out);
  EXPECT_TRUE(j["mapped"].get<bool>());
  const std::string gpa = j["gpa"];
  ASSERT_EQ(gpa.substr(0, 2), "0x") << t.out;
  // User code lives in RAM below the 128 MiB default, page-aligned like the GVA.
  const auto value = std::stoull(gpa, nullptr, 16);
  EXPECT_EQ(value & 0xfff, 0u);
  EXPECT_LT(value, 128ull << 20);

  auto r = run_ctl(ctl_args({"--json", "read", gpa, "64"}));
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  const std::string hex = nlohmann::json::parse(r.out)["hex"];
  EXPECT_NE(hex, std::string(128, '0')) << "no code at " << gpa;

  auto text = run_ctl(ctl_args({"translate", "0x40000000", "--vcpu", "1"}));
  ASSERT_EQ(text.exit_status, 0) << describe(text);
  EXPECT_EQ(text.out, "0x40000000 -> " + gpa + "\n");

  auto unmapped = run_ctl(ctl_args({"translate", "0x7f0000000000", "--vcpu", "1"}));
  EXPECT_EQ(unmapped.exit_status, 1) << describe(unmapped);
  EXPECT_NE(unmapped.out.find("not mapped"), std::string::npos) << describe(unmapped);
  auto unmapped_json = run_ctl(ctl_args({"--json", "translate", "0x7f0000000000"}));
  EXPECT_EQ(unmapped_json.exit_status, 1) << describe(unmapped_json);
  EXPECT_FALSE(nlohmann::json::parse(unmapped_json.out)["mapped"].get<bool>());
}

TEST_F(CtlVcpuTest, InjectedPageFaultIsReportedByTheTrapAndKillsTheBeacon) {
  // An interrupt already being delivered when the vCPU stopped wins over the injection and the
  // TRAP event reports it instead (spec); inject again until the #PF is what was delivered.
  CtlResult r;
  nlohmann::json j;
  for (int attempt = 0; attempt < 50; ++attempt) {
    r = run_ctl(ctl_args({"--json", "inject", "--vcpu", "1", "14", "--error-code", "6", "--address",
                          "0xdead000", "--user"}));
    ASSERT_EQ(r.exit_status, 0) << describe(r);
    j = nlohmann::json::parse(r.out);
    if (j["delivered"]["vector"] == 14) break;
  }
  EXPECT_EQ(j["vcpu"], 1);
  EXPECT_EQ(j["at"]["cpl"], 3);
  EXPECT_EQ(j["delivered"]["vector"], 14);
  EXPECT_EQ(j["delivered"]["name"], "#PF");
  EXPECT_EQ(j["delivered"]["error_code"], 6);
  EXPECT_EQ(j["delivered"]["cr2"], "0xdead000");
  ASSERT_TRUE(vmm_->wait_for_output("cr2 0xdead000", std::chrono::seconds(30)))
      << vmm_->output_so_far();
  const std::string console = vmm_->output_so_far();
  const auto killed = console.find("killed: #PF");
  ASSERT_NE(killed, std::string::npos) << console;
  const auto line_start = console.rfind('\n', killed) + 1;
  EXPECT_EQ(console.compare(line_start, 8, "process "), 0) << console;
  EXPECT_NE(console.find("cr2 0xdead000", killed), std::string::npos) << console;
  // With the beacon gone every process ends and the guest powers off normally.
  auto result = vmm_->wait(std::chrono::seconds(60));
  EXPECT_EQ(result.exit_status, 0) << result.err;
}

TEST_F(CtlVcpuTest, PauseForOneSecondThenTheVmContinues) {
  const auto start = std::chrono::steady_clock::now();
  auto r = run_ctl(ctl_args({"pause", "--for", "1s"}));
  const auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  EXPECT_GE(elapsed, std::chrono::milliseconds(1000));
  EXPECT_NE(r.out.find("vcpu 0: rip 0x"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("vcpu 1: rip 0x"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("cr3 0x"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("s (--for elapsed)"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(socket_.string() + ".pause-pid"));
  end_beacon_and_expect_a_clean_exit();
}

TEST_F(CtlVcpuTest, ResumeFromAnotherProcessEndsABackgroundPause) {
  const fs::path pid_file = socket_.string() + ".pause-pid";
  auto none = run_ctl(ctl_args({"resume"}));
  EXPECT_EQ(none.exit_status, 1) << describe(none);
  EXPECT_NE(none.err.find("no pause"), std::string::npos) << describe(none);

  CtlProcess pause(ctl_args({"--json", "pause"}));
  ASSERT_TRUE(wait_for_path(pid_file, std::chrono::seconds(60)));
  // Held: it does not end on its own.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  ASSERT_TRUE(fs::exists(pid_file));

  auto resumed = run_ctl(ctl_args({"resume"}));
  EXPECT_EQ(resumed.exit_status, 0) << describe(resumed);
  EXPECT_NE(resumed.out.find("resumed"), std::string::npos) << describe(resumed);
  EXPECT_FALSE(fs::exists(pid_file)) << "resume returns once the holder is gone";
  auto held = pause.wait(std::chrono::seconds(20));
  ASSERT_EQ(held.exit_status, 0) << describe(held);
  auto j = nlohmann::json::parse(held.out);
  EXPECT_EQ(j["resumed_by"], "SIGTERM");
  EXPECT_EQ(j["vcpus"].size(), 2u);
  EXPECT_GE(j["held_seconds"].get<double>(), 0.5);
  end_beacon_and_expect_a_clean_exit();
}

TEST(CtlUsageTest, VcpuCommandsRefuseBadArgumentsWithExitTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{"regs", "--vcpu", "one"}, "--vcpu"},
      {{"regs", "--msr", "lstr"}, "--msr"},
      {{"regs", "--msr", "0x100000000"}, "--msr"},
      {{"pause", "--for", "soon"}, "--for"},
      {{"pause", "--for", "1y"}, "--for"},
      {{"translate"}, "GVA"},
      {{"translate", "0xzz"}, "GVA"},
      {{"translate", "0x1000", "--vcpu", "all"}, "--vcpu"},
      {{"inject", "14"}, "--vcpu"},
      {{"inject", "--vcpu", "1"}, "VECTOR"},
      {{"inject", "--vcpu", "1", "32"}, "VECTOR"},
      {{"inject", "--vcpu", "1", "#XX"}, "VECTOR"},
      {{"inject", "--vcpu", "1", "PF", "--error-code", "0x100000000"}, "--error-code"},
      {{"inject", "--vcpu", "1", "PF", "--address", "nowhere"}, "--address"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"--connect", "unix:/nonexistent"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = run_ctl(args);
    EXPECT_EQ(r.exit_status, 2) << c.names << ": " << describe(r);
    EXPECT_NE(r.err.find(c.names), std::string::npos) << c.names << ": " << describe(r);
  }
}

// ---- event commands (watch, protect, msr, break, step) ----

// The guest kernel's description for tools (gen_json.py writes it next to the ELF).
nlohmann::json guest_description() {
  std::ifstream in(glassbox::test::guest_kernel().parent_path() / "glassbox-guest.json");
  return nlohmann::json::parse(in);
}

std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    if (end > start) lines.push_back(nlohmann::json::parse(text.substr(start, end - start)));
    start = end + 1;
  }
  return lines;
}

// The guest's timer handler: the IDT gate of vector 0x20. The LAPIC timer (100 Hz) runs it at
// CPL0 on every vCPU, busy or idle, so breakpoints and steps there always come.
std::string timer_handler_gva(
    const std::function<CtlResult(std::initializer_list<std::string>)>& ctl) {
  const auto idt = std::stoull(guest_description()["idt"].get<std::string>(), nullptr, 16);
  auto r = ctl({"--json", "read", fmt::format("{:#x}", idt + 0x20 * 16), "16"});
  EXPECT_EQ(r.exit_status, 0) << describe(r);
  const std::string hex = nlohmann::json::parse(r.out)["hex"];
  auto byte = [&hex](int i) { return std::stoull(hex.substr(2 * i, 2), nullptr, 16); };
  std::uint64_t offset = byte(0) | byte(1) << 8 | byte(6) << 16 | byte(7) << 24;
  for (int i = 0; i < 4; ++i) offset |= byte(8 + i) << (32 + 8 * i);
  return fmt::format("{:#x}", offset);
}

TEST_F(CtlVcpuTest, StepPrintsEachStepOfTheVcpuAndTheGuestRunsOn) {
  // vCPU 0 runs the workers and the agent, whose system calls and doorbell exit to the VMM in
  // CPL0 code, where stepping can start (the beacon on vCPU 1 never leaves user mode).
  auto r = run_ctl(ctl_args({"--json", "step", "--vcpu", "0", "--count", "5", "--for", "30s"}));
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i]["event"], "singlestep") << lines[i];
    EXPECT_EQ(lines[i]["vcpu"], 0) << lines[i];
    EXPECT_EQ(lines[i]["step"], i + 1) << lines[i];
    // KVM-PVM steps only CPL0 code; hardware KVM steps user code too.
    EXPECT_TRUE(lines[i]["cpl"] == 0 || lines[i]["cpl"] == 3) << lines[i];
    EXPECT_EQ(lines[i]["rip"].get<std::string>().substr(0, 2), "0x");
  }
  EXPECT_NE(r.err.find("--count reached"), std::string::npos) << describe(r);

  auto text = run_ctl(ctl_args({"step", "--vcpu", "0", "--count", "2", "--for", "30s"}));
  ASSERT_EQ(text.exit_status, 0) << describe(text);
  EXPECT_NE(text.out.find("step 2: vcpu 0 rip 0x"), std::string::npos) << describe(text);
  // Stepping is off again: a new session that enables nothing but pause events sees no event.
  // (Whether the guest survives an interrupt delivered while it was stepped is the VMM's
  // business: see the README's event table.)
  auto quiet = run_ctl(ctl_args({"watch", "--events", "pause", "--for", "1s"}));
  EXPECT_EQ(quiet.exit_status, 0) << describe(quiet);
  EXPECT_EQ(quiet.out, "") << describe(quiet);
}

TEST_F(CtlVcpuTest, BreakWatchCatchesTheTimerHandlerStepsOverItAndPutsTheByteBack) {
  if (!breakpoints_reach_the_vmm()) GTEST_SKIP() << kNoBreakpointsHere;
  auto ctl = [this](std::initializer_list<std::string> a) { return run_ctl(ctl_args(a)); };
  const std::string gva = timer_handler_gva(ctl);
  auto t = ctl({"--json", "translate", gva});
  ASSERT_EQ(t.exit_status, 0) << describe(t);
  const std::string gpa = nlohmann::json::parse(t.out)["gpa"];
  auto before = ctl({"--json", "read", gpa, "1"});
  ASSERT_EQ(before.exit_status, 0) << describe(before);

  auto r = ctl({"break", "--watch", "--gva", gva, "--count", "4", "--for", "60s"});
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  auto hits = json_lines(r.out);
  ASSERT_EQ(hits.size(), 4u) << r.out;
  for (std::size_t i = 0; i < hits.size(); ++i) {
    EXPECT_EQ(hits[i]["event"], "breakpoint") << hits[i];
    EXPECT_EQ(hits[i]["hit"], i + 1) << hits[i];
    EXPECT_EQ(hits[i]["gpa"], gpa) << hits[i];
    EXPECT_EQ(hits[i]["rip"], gva) << hits[i];
  }
  auto after = ctl({"--json", "read", gpa, "1"});
  EXPECT_EQ(nlohmann::json::parse(after.out)["hex"], nlohmann::json::parse(before.out)["hex"])
      << "the original byte is back";
  // Stepping over kept the timer working: the guest still finishes its work.
  end_beacon_and_expect_a_clean_exit();
}

TEST_F(CtlVcpuTest, BreakPlantsARecordedInt3AndRemoveRestoresIt) {
  const std::string gva = guest_description()["attack_text_target"];  // never executed
  auto t = run_ctl(ctl_args({"--json", "translate", gva}));
  ASSERT_EQ(t.exit_status, 0) << describe(t);
  const std::string gpa = nlohmann::json::parse(t.out)["gpa"];
  auto before = run_ctl(ctl_args({"--json", "read", gpa, "1"}));
  const std::string original = nlohmann::json::parse(before.out)["hex"];
  ASSERT_NE(original, "cc");

  auto plant = run_ctl(ctl_args({"--json", "break", "--gva", gva}));
  ASSERT_EQ(plant.exit_status, 0) << describe(plant);
  EXPECT_EQ(nlohmann::json::parse(plant.out)["byte"], "0x" + original.substr(original[0] == '0'));
  EXPECT_EQ(nlohmann::json::parse(run_ctl(ctl_args({"--json", "read", gpa, "1"})).out)["hex"],
            "cc");
  EXPECT_TRUE(fs::exists(socket_.string() + ".breakpoints.json"));

  auto twice = run_ctl(ctl_args({"break", "--gva", gva}));
  EXPECT_EQ(twice.exit_status, 1) << describe(twice);
  EXPECT_NE(twice.err.find("already planted"), std::string::npos) << describe(twice);

  auto removed = run_ctl(ctl_args({"break", "--gva", gva, "--remove"}));
  ASSERT_EQ(removed.exit_status, 0) << describe(removed);
  EXPECT_EQ(nlohmann::json::parse(run_ctl(ctl_args({"--json", "read", gpa, "1"})).out)["hex"],
            original);
  EXPECT_FALSE(fs::exists(socket_.string() + ".breakpoints.json"));
  auto again = run_ctl(ctl_args({"break", "--gva", gva, "--remove"}));
  EXPECT_EQ(again.exit_status, 1) << describe(again);
  EXPECT_NE(again.err.find("no breakpoint planted"), std::string::npos) << describe(again);
  end_beacon_and_expect_a_clean_exit();
}

TEST_F(CtlVcpuTest, WatchEndsOnSigintAndDisablesItsEvents) {
  CtlProcess watch(ctl_args({"watch", "--events", "pf,hypercall", "--vcpu", "all"}));
  ASSERT_TRUE(watch.wait_for_err("Ctrl-C ends", std::chrono::seconds(60)));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  watch.signal(SIGINT);
  auto r = watch.wait(std::chrono::seconds(30));
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  EXPECT_NE(r.err.find("watch: pf,hypercall on all 2 vCPUs"), std::string::npos) << describe(r);
  EXPECT_NE(r.err.find("SIGINT"), std::string::npos) << describe(r);
  // Nothing stays enabled: the guest runs at full speed to its end.
  end_beacon_and_expect_a_clean_exit();
}

TEST_F(CtlVcpuTest, MsrTracksLstarAndRefusesAnMsrOutsideTheRanges) {
  auto r = run_ctl(ctl_args({"--json", "msr", "--vcpu", "all", "--msr", "lstar", "--enable"}));
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["msr"], "0xc0000082");
  EXPECT_EQ(j["vcpus"].size(), 2u);
  EXPECT_TRUE(j["tracked"].get<bool>());
  auto off = run_ctl(ctl_args({"msr", "--vcpu", "0", "--msr", "0xc0000082", "--disable"}));
  ASSERT_EQ(off.exit_status, 0) << describe(off);
  EXPECT_NE(off.out.find("lstar (0xc0000082): writes no longer tracked on vCPU 0"),
            std::string::npos)
      << describe(off);
  auto bad = run_ctl(ctl_args({"msr", "--vcpu", "0", "--msr", "0x2000", "--enable"}));
  EXPECT_EQ(bad.exit_status, 1) << describe(bad);
  EXPECT_NE(bad.err.find("-KVM_EINVAL"), std::string::npos) << describe(bad);
  end_beacon_and_expect_a_clean_exit();
}

// A tool waiting on --accept before the VMM starts sees the guest from its first instruction:
// here the attack mode's attempts, which come early.
class CtlAttackTest : public ::testing::Test {
 protected:
  std::unique_ptr<GlassboxProcess> start_vm() {
    return std::make_unique<GlassboxProcess>(std::vector<std::string>{
        "run", "--kernel", glassbox::test::guest_kernel().string(), "--cpus", "2", "--cmdline",
        "attack", "--introspect", "unix:" + socket_.string(), "--start-paused"});
  }
  std::vector<std::string> ctl_args(std::initializer_list<std::string> args) const {
    std::vector<std::string> v{"--accept", "unix:" + socket_.string(), "--timeout", "30"};
    v.insert(v.end(), args);
    return v;
  }
  TempDir dir_;
  fs::path socket_ = dir_.path() / "tool.sock";
};

TEST_F(CtlAttackTest, WatchShowsTheAgentsHypercalls) {
  CtlProcess watch(ctl_args({"watch", "--events", "hypercall", "--count", "3", "--for", "60s"}));
  ASSERT_TRUE(wait_for_path(socket_, std::chrono::seconds(60)));
  auto vm = start_vm();
  auto r = watch.wait(std::chrono::seconds(90));
  ASSERT_EQ(r.exit_status, 0) << describe(r) << "\nVMM:\n" << vm->output_so_far();
  auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.out;
  for (const auto& line : lines) {
    EXPECT_EQ(line["event"], "hypercall") << line;
    EXPECT_EQ(line["vcpu"], 0) << "the agent runs on vCPU 0: " << line;
    EXPECT_EQ(line["cpl"], 3) << line;
  }
  auto result = vm->wait(std::chrono::seconds(90));
  EXPECT_EQ(result.exit_status, 0) << result.err;
}

TEST_F(CtlAttackTest, ProtectDropsTheAttackersSyscallTableWrite) {
  const std::string table = guest_description()["syscall_table"]["address"];  // identity-mapped
  CtlProcess protect(
      ctl_args({"protect", table, "--access", "rx", "--count", "1", "--for", "60s"}));
  ASSERT_TRUE(wait_for_path(socket_, std::chrono::seconds(60)));
  auto vm = start_vm();
  // --start-paused: the guest's first instruction waits until protect is armed and answers the
  // vCPUs' pause events, so the attacker always meets the restriction.
  auto r = protect.wait(std::chrono::seconds(90));
  ASSERT_EQ(r.exit_status, 0) << describe(r) << "\nVMM:\n" << vm->output_so_far();
  auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.out;
  EXPECT_EQ(lines[0]["event"], "pf");
  EXPECT_EQ(lines[0]["access"], "w");
  EXPECT_EQ(lines[0]["action"], "retry");
  EXPECT_EQ(std::stoull(lines[0]["gpa"].get<std::string>(), nullptr, 16) & ~0xfffull,
            std::stoull(table, nullptr, 16));
  auto result = vm->wait(std::chrono::seconds(90));
  EXPECT_EQ(result.exit_status, 0) << result.err;
  EXPECT_NE(result.out.find("attack syscall-table: blocked"), std::string::npos) << result.out;
}

TEST_F(CtlAttackTest, WatchShowsTheAttackersLstarWrite) {
  const auto entry =
      std::stoull(guest_description()["syscall_entry"].get<std::string>(), nullptr, 16);
  CtlProcess watch(ctl_args({"watch", "--events", "msr", "--msr", "lstar", "--for", "60s"}));
  ASSERT_TRUE(wait_for_path(socket_, std::chrono::seconds(60)));
  auto vm = start_vm();
  ASSERT_TRUE(vm->wait_for_output("attack summary", std::chrono::seconds(60)))
      << vm->output_so_far();
  watch.signal(SIGINT);
  auto r = watch.wait(std::chrono::seconds(30));
  ASSERT_EQ(r.exit_status, 0) << describe(r);
  bool saw_attack = false;
  const auto lines = json_lines(r.out);
  ASSERT_FALSE(lines.empty()) << "watch was armed before the guest started (--start-paused)";
  for (const auto& line : lines) {
    EXPECT_EQ(line["event"], "msr") << line;
    EXPECT_EQ(line["msr"], "0xc0000082") << line;
    EXPECT_EQ(line["action"], "continue") << line;
    // The default lets every write through, the attacker's included.
    EXPECT_EQ(line["written"], line["new"]) << line;
    saw_attack = saw_attack || std::stoull(line["new"].get<std::string>(), nullptr, 16) != entry;
  }
  EXPECT_TRUE(saw_attack) << r.out;
  auto result = vm->wait(std::chrono::seconds(90));
  EXPECT_EQ(result.exit_status, 0) << result.err;
  EXPECT_NE(result.out.find("attack lstar: succeeded"), std::string::npos) << result.out;
}

TEST(CtlUsageTest, EventCommandsRefuseBadArgumentsWithExitTwo) {
  struct Case {
    std::vector<std::string> args;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{"watch"}, "--events"},
      {{"watch", "--events", "breakpoint,bogus"}, "--events"},
      {{"watch", "--events", "unhook"}, "--events"},
      {{"watch", "--events", "pf", "--reply", "skip"}, "--reply"},
      {{"watch", "--events", "msr", "--msr-value", "old"}, "--msr-value"},
      {{"watch", "--events", "msr", "--msr", "lstr"}, "--msr"},
      {{"watch", "--events", "pf", "--count", "0"}, "--count"},
      {{"watch", "--events", "pf", "--vcpu", "x"}, "--vcpu"},
      {{"protect", "0x1000"}, "--access"},
      {{"protect", "0x2000..0x1000", "--access", "r"}, "RANGE"},
      {{"protect", "0x1000", "--access", "rq"}, "--access"},
      {{"protect", "0x1000", "--access", "r", "--reply", "later"}, "--reply"},
      {{"msr", "--vcpu", "0", "--msr", "lstar"}, "--enable/--disable"},
      {{"msr", "--vcpu", "0", "--msr", "lstar", "--enable", "--disable"}, "--enable"},
      {{"msr", "--msr", "lstar", "--enable"}, "--vcpu"},
      {{"break", "--vcpu", "0"}, "--gva"},
      {{"break", "--gva", "0x1000", "--count", "3"}, "--count"},
      {{"break", "--gva", "0x1000", "--remove", "--watch"}, "--remove"},
      {{"step", "--count", "3"}, "--vcpu"},
      {{"step", "--vcpu", "all"}, "--vcpu"},
      {{"step", "--vcpu", "0", "--for", "soon"}, "--for"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args{"--connect", "unix:/nonexistent"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = run_ctl(args);
    EXPECT_EQ(r.exit_status, 2) << c.names << ": " << describe(r);
    EXPECT_NE(r.err.find(c.names), std::string::npos) << c.names << ": " << describe(r);
  }
}

}  // namespace
