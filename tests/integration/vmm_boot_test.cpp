// Boots each scenario guest with the real glassbox binary on /dev/kvm and checks its console
// output and exit status, with one and two vCPUs.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>
#include <string>

#include "run_glassbox.h"

using glassbox::test::GlassboxProcess;
using glassbox::test::run_glassbox;
using glassbox::test::RunResult;
using glassbox::test::scenario_guest;

namespace {

RunResult boot(const std::string& guest, int cpus, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"run", "--kernel", scenario_guest(guest).string(), "--cpus",
                                   std::to_string(cpus)};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_glassbox(args);
}

class ScenarioGuest : public ::testing::TestWithParam<int> {};

TEST_P(ScenarioGuest, HelloPrintsAndPowersOffWithZero) {
  auto r = boot("hello", GetParam());
  EXPECT_EQ(r.out, "Hello from a glassbox guest!\n");
  EXPECT_EQ(r.exit_status, 0) << r.err;
}

TEST_P(ScenarioGuest, PortIoRoundTripsReachTheUart) {
  auto r = boot("io_loop", GetParam(), {"--cmdline", "5000"});
  EXPECT_EQ(r.out, "io loop round trips: 5000\n");
  EXPECT_EQ(r.exit_status, 0) << r.err;
}

TEST_P(ScenarioGuest, UnclaimedMmioReadsAllOnesAndLapicAnswers) {
  auto r = boot("mmio", GetParam());
  EXPECT_EQ(r.out, "mmio unclaimed read: 0x00000000ffffffff\nlapic id: 0\n");
  EXPECT_EQ(r.exit_status, 0) << r.err;
  // The VMM says which address no device claimed.
  EXPECT_NE(r.err.find("0xd0000000"), std::string::npos) << r.err;
}

TEST_P(ScenarioGuest, Int3AtCpl0ReachesTheGuestHandlerWithTheRightReturnAddress) {
  auto r = boot("int3", GetParam());
  EXPECT_EQ(r.out, "breakpoint handler: return address ok\nresumed after int3\n");
  EXPECT_EQ(r.exit_status, 0) << r.err;
}

TEST_P(ScenarioGuest, WrmsrTakesEffectAndUnknownMsrRaisesGp) {
  auto r = boot("wrmsr", GetParam());
  EXPECT_EQ(r.out, "lstar reads back 0xffffffff81234567\n#GP on unknown MSR handled\nwrmsr done\n");
  EXPECT_EQ(r.exit_status, 0) << r.err;
}

TEST_P(ScenarioGuest, EveryVcpuComesOnlineWithItsIndex) {
  const int cpus = GetParam();
  auto r = boot("smp", cpus);
  EXPECT_EQ(r.exit_status, 0) << r.err;
  for (int i = 0; i < cpus; ++i) {
    EXPECT_NE(r.out.find("vcpu " + std::to_string(i) + " online\n"), std::string::npos) << r.out;
  }
  EXPECT_NE(r.out.find("vcpus: " + std::to_string(cpus) + " online\n"), std::string::npos) << r.out;
}

TEST_P(ScenarioGuest, TripleFaultStopsTheVmWithADiagnostic) {
  auto r = boot("triple_fault", GetParam());
  EXPECT_EQ(r.out, "about to triple fault\n");
  EXPECT_EQ(r.exit_status, 125);
  EXPECT_NE(r.err.find("triple-faulted"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("rip="), std::string::npos) << "register dump missing: " << r.err;
}

INSTANTIATE_TEST_SUITE_P(Vcpus, ScenarioGuest, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "vcpu"; });

TEST(GlassboxRun, SigtermStopsARunningVmCleanly) {
  // A long I/O loop keeps the guest busy; SIGTERM must end the VM promptly with 128+15.
  GlassboxProcess p({"run", "--kernel", scenario_guest("io_loop").string(), "--cmdline",
                     "100000000", "--cpus", "2"});
  // Once it runs, stop it.
  ASSERT_TRUE(p.wait_for_log("vCPUs running")) << p.output_so_far();
  p.send_signal(SIGTERM);
  auto r = p.wait(std::chrono::seconds(10));
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.exit_status, 128 + SIGTERM) << r.err;
  EXPECT_NE(r.err.find("stopped by SIGTERM"), std::string::npos) << r.err;
}

TEST(GlassboxRun, SigintStopsARunningVmCleanly) {
  GlassboxProcess p(
      {"run", "--kernel", scenario_guest("io_loop").string(), "--cmdline", "100000000"});
  ASSERT_TRUE(p.wait_for_log("vCPUs running")) << p.output_so_far();
  p.send_signal(SIGINT);
  auto r = p.wait(std::chrono::seconds(10));
  EXPECT_EQ(r.exit_status, 128 + SIGINT) << r.err;
}

// Bad arguments: one line naming the argument, exit status 2, no VM started.
struct BadArgs {
  std::string name;
  std::vector<std::string> args;
  std::string must_mention;
};

class BadCli : public ::testing::TestWithParam<BadArgs> {};

TEST_P(BadCli, IsRejectedWithOneLineNamingTheArgument) {
  auto r = run_glassbox(GetParam().args);
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_NE(r.err.find(GetParam().must_mention), std::string::npos) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.out.empty());
}

std::string not_an_elf() {
  // Per process: every test process writes these while ctest runs others in parallel.
  auto path = std::filesystem::temp_directory_path() /
              ("glassbox-not-an-elf-" + std::to_string(getpid()) + ".bin");
  std::ofstream(path) << "this is not a kernel\n";
  return path.string();
}

std::string elf32() {
  auto path = std::filesystem::temp_directory_path() /
              ("glassbox-elf32-" + std::to_string(getpid()) + ".bin");
  std::string bytes(64, '\0');
  bytes[0] = 0x7f, bytes[1] = 'E', bytes[2] = 'L', bytes[3] = 'F', bytes[4] = 1 /* ELFCLASS32 */;
  std::ofstream(path, std::ios::binary) << bytes;
  return path.string();
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BadCli,
    ::testing::Values(
        BadArgs{"MissingKernelFile", {"run", "--kernel", "/nonexistent/kernel.elf"}, "--kernel"},
        BadArgs{"NotAnElf",
                {"run", "--kernel", not_an_elf()},
                "neither an ELF64 kernel nor a Linux bzImage"},
        BadArgs{"Elf32", {"run", "--kernel", elf32()}, "32-bit"},
        BadArgs{"MemoryTooSmall",
                {"run", "--kernel", scenario_guest("hello").string(), "--memory", "1M"},
                "--memory"},
        BadArgs{"MemoryNotASize",
                {"run", "--kernel", scenario_guest("hello").string(), "--memory", "lots"},
                "--memory"},
        BadArgs{"ZeroCpus",
                {"run", "--kernel", scenario_guest("hello").string(), "--cpus", "0"},
                "--cpus"},
        BadArgs{"TooManyCpus",
                {"run", "--kernel", scenario_guest("hello").string(), "--cpus", "100000"},
                "--cpus"},
        BadArgs{"NoKernel", {"run"}, "--kernel"},
        BadArgs{"UnknownOption",
                {"run", "--kernel", scenario_guest("hello").string(), "--bogus"},
                "--bogus"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
