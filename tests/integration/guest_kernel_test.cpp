// Boots glassbox's own guest kernel (guest/) with the real glassbox binary and checks what it
// prints: every worker's progress, the guest agent's hypercalls, the attack mode's report, a
// user-process fault that does not take the kernel down, and the final counters line.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "run_glassbox.h"

using glassbox::test::guest_kernel;
using glassbox::test::run_glassbox;
using glassbox::test::RunResult;

namespace {

constexpr int kWorkersPerCpu = 3;
constexpr int kAgentRounds = 5;

RunResult boot(int cpus, const std::string& cmdline = "") {
  std::vector<std::string> args = {"run", "--kernel", guest_kernel().string(), "--cpus",
                                   std::to_string(cpus)};
  if (!cmdline.empty()) {
    args.push_back("--cmdline");
    args.push_back(cmdline);
  }
  return run_glassbox(args, std::chrono::seconds(60));
}

bool contains(const std::string& out, const std::string& needle) {
  return out.find(needle) != std::string::npos;
}

// "all processes done: counters 1000 1000 1000" with one 1000 per worker.
std::string final_line(int cpus) {
  std::string line = "all processes done: counters";
  for (int i = 0; i < cpus * kWorkersPerCpu; i++) line += " 1000";
  return line + "\n";
}

// Worker w (1-based, pid w + 1; pid 1 is the agent) prints 25/50/75/100 % in order.
void expect_worker_progress(const std::string& out, int cpus) {
  for (int w = 1; w <= cpus * kWorkersPerCpu; w++) {
    size_t last = 0;
    for (int pct : {25, 50, 75, 100}) {
      std::string line = "proc " + std::to_string(w) + " (pid " + std::to_string(w + 1) +
                         "): " + std::to_string(pct) + "%\n";
      size_t at = out.find(line);
      ASSERT_NE(at, std::string::npos) << "missing \"" << line << "\" in:\n" << out;
      EXPECT_GE(at, last) << line << " out of order";
      last = at;
    }
  }
}

// The final line is the last thing printed, after every vCPU's statistics line.
void expect_clean_finish(const RunResult& r, int cpus) {
  EXPECT_EQ(r.exit_status, 0) << r.out << r.err;
  std::string last = final_line(cpus);
  ASSERT_GE(r.out.size(), last.size()) << r.out;
  EXPECT_EQ(r.out.substr(r.out.size() - last.size()), last) << r.out;
  for (int c = 0; c < cpus; c++) {
    std::regex stats("cpu " + std::to_string(c) + ": \\d+ context switches, \\d+ timer ticks\n");
    EXPECT_TRUE(std::regex_search(r.out, stats)) << r.out;
  }
  EXPECT_FALSE(contains(r.out, "KERNEL PANIC")) << r.out;
  // A bounded workload: seconds, not minutes, even with emulated CPL0 code.
  EXPECT_LT(r.elapsed, std::chrono::seconds(20));
}

class GuestKernel : public ::testing::TestWithParam<int> {};

TEST_P(GuestKernel, RunsEveryWorkerToCompletionAndPowersOffWithZero) {
  const int cpus = GetParam();
  auto r = boot(cpus);
  EXPECT_TRUE(contains(r.out, "glassbox guest: " + std::to_string(cpus) + " vCPUs")) << r.out;
  // The boot-time check picks a system-call entry (INT3 on KVM-PVM, SYSCALL on hardware KVM).
  EXPECT_TRUE(std::regex_search(r.out, std::regex("syscall: SYSCALL (enters|does not enter) CPL0")))
      << r.out;
  expect_worker_progress(r.out, cpus);
  // The guest agent raised every hypercall through the doorbell.
  for (int round = 1; round <= kAgentRounds; round++) {
    std::string line = "agent: KVMI hypercall " + std::to_string(round) + "/" +
                       std::to_string(kAgentRounds) + " via doorbell port 0x4b56";
    EXPECT_TRUE(contains(r.out, line)) << r.out;
  }
  EXPECT_FALSE(contains(r.out, "killed")) << r.out;
  EXPECT_FALSE(contains(r.out, "attack")) << r.out;
  expect_clean_finish(r, cpus);
}

TEST_P(GuestKernel, AttackModeReportsAllThreeAttacksSucceededAndKeepsRunning) {
  const int cpus = GetParam();
  auto r = boot(cpus, "attack");
  // One line per attempt, in order (other vCPUs' lines may come in between), then the summary.
  size_t last = 0;
  for (const char* line : {"attack kernel-text: succeeded\n", "attack syscall-table: succeeded\n",
                           "attack lstar: succeeded\n", "attack summary: 3 of 3 succeeded\n"}) {
    size_t at = r.out.find(line);
    ASSERT_NE(at, std::string::npos) << "missing \"" << line << "\" in:\n" << r.out;
    EXPECT_GE(at, last) << line << " out of order";
    last = at;
  }
  EXPECT_FALSE(contains(r.out, "blocked")) << r.out;
  // The originals were put back: the workers finish and the kernel powers off cleanly.
  expect_worker_progress(r.out, cpus);
  EXPECT_FALSE(contains(r.out, "killed")) << r.out;
  expect_clean_finish(r, cpus);
}

TEST_P(GuestKernel, UserProcessFaultIsReportedAndOnlyThatProcessDies) {
  const int cpus = GetParam();
  auto r = boot(cpus, "fault");
  // The faulter is the last process created: after the agent and the workers.
  const int pid = 1 + cpus * kWorkersPerCpu + 1;
  EXPECT_TRUE(contains(r.out, "faulter (pid " + std::to_string(pid) + ")")) << r.out;
  // It read supervisor-only kernel text from CPL3: #PF, error code 5 (present, user).
  std::regex killed("process " + std::to_string(pid) +
                    " killed: #PF at rip 0x4000[0-9a-f]{4} \\(error 0x5, cr2 0x1[0-9a-f]{5}\\)\n");
  EXPECT_TRUE(std::regex_search(r.out, killed)) << r.out;
  expect_worker_progress(r.out, cpus);
  expect_clean_finish(r, cpus);
}

TEST_P(GuestKernel, UnexpectedKernelFaultIsReportedWithStatusThree) {
  auto r = boot(GetParam(), "panic");
  EXPECT_EQ(r.exit_status, 3) << r.out << r.err;
  EXPECT_TRUE(std::regex_search(
      r.out,
      std::regex("KERNEL PANIC: cpu 0: exception 6 \\(#UD\\) error 0x0 at rip 0x1[0-9a-f]+")))
      << r.out;
  EXPECT_FALSE(contains(r.out, "all processes done")) << r.out;
}

INSTANTIATE_TEST_SUITE_P(Cpus, GuestKernel, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "vcpu"; });

// The build writes glassbox-guest.json next to the ELF for introspection tools.
TEST(GuestKernelDescription, JsonNamesTheSyscallTableTextRangeAndProcessCr3s) {
  auto path = guest_kernel();
  path.replace_extension(".json");
  std::ifstream in(path);
  ASSERT_TRUE(in) << path;
  auto doc = nlohmann::json::parse(in);
  auto hex = [](const nlohmann::json& v) { return std::stoull(v.get<std::string>(), nullptr, 16); };
  EXPECT_EQ(doc["format"], "glassbox-guest/1");
  const auto text_start = hex(doc["kernel_text"]["start"]);
  const auto text_end = hex(doc["kernel_text"]["end"]);
  EXPECT_GE(text_start, 0x100000u);
  EXPECT_LT(text_start, text_end);
  const auto table = hex(doc["syscall_table"]["address"]);
  EXPECT_EQ(table % 4096, 0u) << "the syscall table has a data page of its own";
  EXPECT_EQ(doc["syscall_table"]["entries"], 7);
  EXPECT_LT(text_start, hex(doc["syscall_entry"]));
  EXPECT_LT(hex(doc["syscall_entry"]), text_end);
  const auto& procs = doc["process_list"];
  const auto base = hex(procs["address"]);
  const auto stride = procs["stride"].get<std::uint64_t>();
  const auto cr3_offset = procs["fields"]["cr3"]["offset"].get<std::uint64_t>();
  ASSERT_GE(procs["cr3_addresses"].size(), 3u);
  for (size_t i = 0; i < procs["cr3_addresses"].size(); i++)
    EXPECT_EQ(hex(procs["cr3_addresses"][i]), base + i * stride + cr3_offset);
}

}  // namespace
