// VMM benchmarks, all measured in one run so the ratios are meaningful on a noisy host:
//   1. the bare KVM exit floor: a guest OUT loop on a bare vCPU driven by a minimal KVM_RUN loop
//      (no glassbox machinery), round trips per second and µs per exit;
//   2. the same kind of exit through glassbox's exit loop and port I/O bus (the io_loop scenario
//      guest: OUT + IN to the UART scratch register), as a ratio to the floor;
//   3. `glassbox run` start-to-exit for the hello guest and for the guest kernel.
// Each figure is the median of several runs.
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bare_vcpu.h"
#include "bench_support.h"
#include "kvm/host_probe.h"
#include "kvm/long_mode.h"
#include "kvm/system.h"

// The io_loop scenario guest's inner loop (OUT then IN of the UART scratch register, compare,
// count), position-independent so it can be copied into a bare VM. Running the same instructions
// in both measurements matters here: on KVM-PVM every CPL0 instruction is emulated (~1 µs).
asm(R"(
  .pushsection .rodata
  .globl glassbox_bench_loop_start, glassbox_bench_loop_end
glassbox_bench_loop_start:
  mov $0x3ff, %dx
  xor %r13d, %r13d
  mov $-1, %r12
1:
  cmp %r12, %r13
  je 2f
  mov %r13d, %eax
  outb %al, %dx
  xor %eax, %eax
  inb %dx, %al
  cmp %r13b, %al
  jne 2f
  inc %r13
  jmp 1b
2:
  hlt
glassbox_bench_loop_end:
  .popsection
)");
extern "C" const std::uint8_t glassbox_bench_loop_start[], glassbox_bench_loop_end[];

namespace {

using Clock = std::chrono::steady_clock;

using glassbox::bench::median;

// µs per exit of the io_loop instruction mix at CPL0, driven by a bare KVM_RUN loop that only
// echoes the OUT value back to the IN (the least any VMM must do).
double bare_exit_floor_us(const glassbox::kvm::System& system, int exits, bool sync_regs) {
  std::uint8_t scratch = 0;
  return glassbox::bench::bare_loop_us(
      system,
      {glassbox_bench_loop_start,
       static_cast<std::size_t>(glassbox_bench_loop_end - glassbox_bench_loop_start)},
      exits, sync_regs, 0, [&](glassbox::kvm::Vcpu& vcpu) {
        kvm_run* run = vcpu.run();
        if (run->exit_reason != KVM_EXIT_IO) return false;
        auto* data = reinterpret_cast<std::uint8_t*>(run) + run->io.data_offset;
        if (run->io.direction == KVM_EXIT_IO_OUT)
          scratch = *data;
        else
          *data = scratch;
        return true;
      });
}

double run_glassbox_ms(const std::string& args) {
  const std::string cmd =
      std::string(GLASSBOX_BINARY) + " --log-level error run " + args + " >/dev/null 2>&1";
  const auto start = Clock::now();
  const int rc = std::system(cmd.c_str());
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  if (rc != 0) std::fprintf(stderr, "warning: '%s' exited with %d\n", cmd.c_str(), rc);
  return ms;
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::max(3, std::atoi(argv[1])) : 7;
  auto system = glassbox::kvm::System::open();
  if (!system) {
    std::fprintf(stderr, "%s\n", system.error().message().c_str());
    return 1;
  }
  auto quirks = glassbox::kvm::probe_host(*system);
  std::printf("host: %s\n", quirks ? glassbox::kvm::to_string(quirks->backend) : "unknown");
  std::printf("medians of %d runs\n\n", runs);

  constexpr int kExits = 20000;
  std::vector<double> floor_plain, floor_sync;
  for (int r = 0; r < runs; ++r) {
    floor_plain.push_back(bare_exit_floor_us(*system, kExits, false));
    floor_sync.push_back(bare_exit_floor_us(*system, kExits, true));
  }
  const double floor_us = median(floor_plain);
  const double floor_sync_us = median(floor_sync);

  // glassbox: two exits (OUT, IN) per io_loop iteration; the difference of a long and a short
  // run removes start-up and shutdown.
  const std::string guest = std::string(GLASSBOX_SCENARIO_DIR) + "/io_loop.elf";
  constexpr int kShort = 1000, kLong = 21000;
  std::vector<double> per_exit;
  for (int r = 0; r < runs; ++r) {
    const double short_ms =
        run_glassbox_ms("--kernel " + guest + " --cmdline " + std::to_string(kShort));
    const double long_ms =
        run_glassbox_ms("--kernel " + guest + " --cmdline " + std::to_string(kLong));
    per_exit.push_back((long_ms - short_ms) * 1000.0 / (2.0 * (kLong - kShort)));
  }
  const double glassbox_us = median(per_exit);

  std::vector<double> hello_ms, kernel1_ms, kernel2_ms;
  const std::string hello = std::string(GLASSBOX_SCENARIO_DIR) + "/hello.elf";
  for (int r = 0; r < runs; ++r) {
    hello_ms.push_back(run_glassbox_ms("--kernel " + hello));
    kernel1_ms.push_back(run_glassbox_ms("--kernel " GLASSBOX_GUEST_KERNEL " --cpus 1"));
    kernel2_ms.push_back(run_glassbox_ms("--kernel " GLASSBOX_GUEST_KERNEL " --cpus 2"));
  }

  std::printf("%-52s %12s %12s %8s\n", "measurement", "µs/exit", "exits/s", "ratio");
  std::printf("%-52s %12.2f %12.0f %8.2f\n", "bare KVM_RUN, same OUT/IN loop (floor)", floor_us,
              1e6 / floor_us, 1.0);
  std::printf("%-52s %12.2f %12.0f %8.2f\n", "bare KVM_RUN + sync regs (REGS|SREGS|EVENTS)",
              floor_sync_us, 1e6 / floor_sync_us, floor_sync_us / floor_us);
  std::printf("%-52s %12.2f %12.0f %8.2f\n", "glassbox exit loop + I/O bus (io_loop OUT/IN)",
              glassbox_us, 1e6 / glassbox_us, glassbox_us / floor_us);
  std::printf("\n%-52s %12s\n", "glassbox run, start to exit", "ms");
  std::printf("%-52s %12.1f\n", "hello guest, 1 vCPU", median(hello_ms));
  std::printf("%-52s %12.1f\n", "guest kernel, 1 vCPU (full workload)", median(kernel1_ms));
  std::printf("%-52s %12.1f\n", "guest kernel, 2 vCPUs (full workload)", median(kernel2_ms));
  return 0;
}
