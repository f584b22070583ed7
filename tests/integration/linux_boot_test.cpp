// Boots Debian's own kernel (the Linux boot protocol, ACPI, SMP, the 8250 with its interrupt)
// with the test initramfs of tests/guests/linux/, whose init reads gbtest=MODE from the command
// line, and introspects it through the project's client.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "glassbox/client/session.h"
#include "kvmi_test_helpers.h"
#include "run_glassbox.h"

using namespace std::chrono_literals;
using glassbox::test::GlassboxProcess;
using glassbox::test::kvmi_support::TempDir;
namespace kvmi = glassbox::kvmi;

namespace {

// Booting Linux under emulation (the KVM lab) takes tens of seconds.
constexpr auto kBootTimeout = 240s;

class LinuxGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    kernel_ = glassbox::test::linux_kernel();
    // setup.sh installs linux-image-amd64; a machine without it cannot run these tests.
    ASSERT_FALSE(kernel_.empty())
        << "no /boot/vmlinuz-* here: run scripts/setup.sh (it installs linux-image-amd64) or set "
           "GLASSBOX_LINUX_KERNEL";
  }

  std::vector<std::string> run_args(const std::string& mode, int cpus,
                                    std::vector<std::string> extra = {}) const {
    std::vector<std::string> args = {"run",
                                     "--kernel",
                                     kernel_.string(),
                                     "--initrd",
                                     glassbox::test::linux_initramfs().string(),
                                     "--cpus",
                                     std::to_string(cpus),
                                     "--memory",
                                     "512M",
                                     "--cmdline",
                                     "console=ttyS0 panic=-1 gbtest=" + mode};
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  }

  std::filesystem::path kernel_;
};

// In the KVM lab (QEMU TCG's nested SVM) a Linux guest boots to user space in some runs and
// stalls early in boot in others, measured with 1 and 2 vCPUs, and `qemu-system-x86_64
// -enable-kvm` with 2 vCPUs stalls there the same way. Until the cause is known the full boots
// run where /dev/kvm is hardware KVM; the lab checks what boot does up to the kernel's SMP
// bring-up.
bool in_the_lab() {
  const char* lab = std::getenv("GLASSBOX_IN_LAB");
  return lab != nullptr && std::string(lab) == "1";
}
#define SKIP_FULL_BOOT_IN_THE_LAB()                                                       \
  do {                                                                                    \
    if (in_the_lab()) {                                                                   \
      GTEST_SKIP() << "full Linux boots stall intermittently under the KVM lab's nested " \
                      "SVM (QEMU/KVM too); they run on hardware KVM";                     \
    }                                                                                     \
  } while (0)

// What the boot protocol hands the kernel, as the kernel reports it: the e820 map, the command
// line, the ACPI tables (RSDP where glassbox put it, a MADT with both vCPUs) and kvmclock, all
// printed in the first second of boot, before the point where the lab's stalls were seen. (The
// second vCPU's INIT/SIPI bring-up is checked by the full boots, on hardware KVM.)
TEST_F(LinuxGuest, TheKernelSeesTheMemoryMapAcpiTablesAndBothVcpus) {
  GlassboxProcess vm(run_args("poweroff", 2));
  for (const char* line : {
           "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
           "BIOS-e820: [mem 0x0000000000100000-0x000000001fffffff] usable",
           "Command line: console=ttyS0 panic=-1 gbtest=poweroff",
           "ACPI: RSDP 0x00000000000E0000",
           "smpboot: Allowing 2 CPUs, 0 hotplug CPUs",
           "kvm-clock: Using msrs",
       }) {
    ASSERT_TRUE(vm.wait_for_output(line, kBootTimeout)) << line << "\n" << vm.output_so_far();
  }
  vm.send_signal(SIGTERM);
  EXPECT_EQ(vm.wait(60s).exit_status, 128 + SIGTERM);
}

// Boots to init on `cpus` vCPUs and expects its power-off through ACPI with status 0.
void expect_boot_to_init_and_poweroff(const std::vector<std::string>& args, int cpus) {
  auto result = glassbox::test::run_glassbox(args, kBootTimeout);
  EXPECT_FALSE(result.timed_out) << result.out << result.err;
  EXPECT_NE(
      result.out.find("glassbox-test: init is pid 1 with " + std::to_string(cpus) + " CPUs online"),
      std::string::npos)
      << result.out << result.err;
  EXPECT_NE(result.out.find("glassbox-test: powering off"), std::string::npos) << result.out;
  EXPECT_NE(result.err.find("guest powered off through ACPI (S5"), std::string::npos) << result.err;
  EXPECT_EQ(result.exit_status, 0) << result.err;
}

TEST_F(LinuxGuest, BootsOnOneVcpuRunsInitAndPowersOffWithStatusZero) {
  SKIP_FULL_BOOT_IN_THE_LAB();
  expect_boot_to_init_and_poweroff(run_args("poweroff", 1), 1);
}

TEST_F(LinuxGuest, BootsOnTwoVcpusRunsInitAndPowersOffWithStatusZero) {
  SKIP_FULL_BOOT_IN_THE_LAB();
  expect_boot_to_init_and_poweroff(run_args("poweroff", 2), 2);
}

TEST_F(LinuxGuest, RebootInsideTheGuestEndsTheVmThroughTheResetRegister) {
  SKIP_FULL_BOOT_IN_THE_LAB();
  auto result = glassbox::test::run_glassbox(run_args("reboot", 1), kBootTimeout);
  EXPECT_NE(result.out.find("glassbox-test: rebooting"), std::string::npos)
      << result.out << result.err;
  EXPECT_NE(result.err.find("guest reset the machine through the keyboard controller"),
            std::string::npos)
      << result.err;
  EXPECT_EQ(result.exit_status, 0) << result.err;
}

TEST_F(LinuxGuest, TheSerialConsoleTakesInput) {
  SKIP_FULL_BOOT_IN_THE_LAB();
  GlassboxProcess vm(run_args("echo", 1), /*console_input=*/true);
  ASSERT_TRUE(vm.wait_for_output("glassbox-test: type lines", kBootTimeout)) << vm.output_so_far();
  ASSERT_TRUE(vm.write_input("hello from the host\n"));
  EXPECT_TRUE(vm.wait_for_output("glassbox-test: got 'hello from the host'", 60s))
      << vm.output_so_far();
  ASSERT_TRUE(vm.write_input("quit\n"));
  auto result = vm.wait(120s);
  EXPECT_NE(result.out.find("glassbox-test: powering off"), std::string::npos) << result.out;
  EXPECT_EQ(result.exit_status, 0) << result.err;
}

TEST_F(LinuxGuest, ImagesGlassboxCannotBootAreRefusedWithTheReason) {
  TempDir dir;
  std::ifstream in(kernel_, std::ios::binary);
  std::vector<char> image((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(image.size(), 0x1000u);
  auto write = [&](const std::string& name, const std::vector<char>& bytes) {
    const auto path = dir.path() / name;
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<long>(bytes.size()));
    return path.string();
  };
  auto refused = [&](const std::string& path, const std::string& reason) {
    auto r = glassbox::test::run_glassbox(
        {"run", "--kernel", path, "--memory", "512M", "--console-input", "none"}, 60s);
    EXPECT_EQ(r.exit_status, 2) << r.err;
    EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(reason), std::string::npos) << r.err;
  };
  refused(write("garbage", std::vector<char>(8192, 'x')),
          "neither an ELF64 kernel nor a Linux bzImage");
  auto only32 = image;
  only32[0x236] = static_cast<char>(only32[0x236] & ~1);  // XLF_KERNEL_64 clear
  refused(write("only32", only32), "32-bit-only kernel");
  auto old = image;
  old[0x206] = 0x0b;  // protocol 2.11
  old[0x207] = 0x02;
  refused(write("old", old), "boot protocol 2.11");
  refused(write("truncated", std::vector<char>(image.begin(), image.begin() + 0x1000)),
          "is truncated");
  // Too little memory for the kernel to decompress itself: a clear --memory error.
  auto r = glassbox::test::run_glassbox(
      {"run", "--kernel", kernel_.string(), "--memory", "32M", "--console-input", "none"}, 60s);
  EXPECT_EQ(r.exit_status, 2) << r.err;
  EXPECT_NE(r.err.find("--memory 32 MiB is too small"), std::string::npos) << r.err;
}

// The introspection primitives on a Linux guest: a paused vCPU's registers are the kernel's,
// translating its RIP and LSTAR and reading them back gives the kernel's code, and MSR events
// come from the kernel's own writes.
TEST_F(LinuxGuest, IntrospectionPausesReadsAndTranslatesTheLinuxKernel) {
  SKIP_FULL_BOOT_IN_THE_LAB();
  TempDir dir;
  const auto socket = dir.path() / "kvmi.sock";
  GlassboxProcess vm(run_args("echo", 1, {"--introspect", "listen:unix:" + socket.string()}),
                     /*console_input=*/true);
  auto tool = glassbox::test::kvmi_support::connect_when_ready(socket);
  ASSERT_TRUE(tool);
  ASSERT_TRUE(vm.wait_for_output("glassbox-test: type lines", kBootTimeout)) << vm.output_so_far();
  constexpr std::uint32_t kLstar = 0xc0000082;
  for (std::uint16_t v = 0; v < 1; ++v) {
    ASSERT_TRUE(tool->pause_vcpu(v, true));
    auto event = tool->wait_event(60s);
    ASSERT_TRUE(event) << event.error().message;
    ASSERT_EQ(event->event_id(), static_cast<std::uint8_t>(kvmi::EventId::PauseVcpu));
    auto regs = tool->get_registers(v, std::span(&kLstar, 1));
    ASSERT_TRUE(regs) << regs.error().message;
    EXPECT_EQ(regs->mode, 8u);
    EXPECT_NE(regs->sregs.cr3, 0u);
    EXPECT_TRUE(regs->sregs.cr0 & (1u << 31));  // paging
    const std::uint64_t lstar = regs->msrs.at(0).data;
    // The kernel's syscall entry lives in the top 2 GiB (KASLR moves it only inside them).
    EXPECT_GE(lstar, 0xffffffff80000000ULL);
    auto gpa = tool->translate_gva(v, lstar);
    ASSERT_TRUE(gpa);
    ASSERT_NE(*gpa, kvmi::kInvalidGpa);
    auto code = tool->read_physical(*gpa, 16);
    ASSERT_TRUE(code);
    // entry_SYSCALL_64 starts with SWAPGS (0f 01 f8).
    const auto* bytes = reinterpret_cast<const unsigned char*>(code->data());
    EXPECT_EQ(bytes[0], 0x0f);
    EXPECT_EQ(bytes[1], 0x01);
    EXPECT_EQ(bytes[2], 0xf8);
    ASSERT_TRUE(tool->reply_event(*event, kvmi::EventAction::Continue));
  }
  // The guest runs on after the tool let it go.
  ASSERT_TRUE(vm.write_input("still alive\n"));
  EXPECT_TRUE(vm.wait_for_output("glassbox-test: got 'still alive'", 60s)) << vm.output_so_far();
  tool.reset();
  ASSERT_TRUE(vm.write_input("quit\n"));
  auto result = vm.wait(120s);
  EXPECT_EQ(result.exit_status, 0) << result.err;
}

}  // namespace
