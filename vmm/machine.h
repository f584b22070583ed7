// One virtual machine: guest RAM, the buses and their devices, and one thread per vCPU.
// Built by Machine::create() from a validated configuration; run by start() + wait_for_stop().
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "kvm/host_probe.h"
#include "kvm/system.h"
#include "kvm/vm.h"
#include "vmm/devices/doorbell.h"
#include "vmm/devices/serial_8250.h"
#include "vmm/guest_memory.h"
#include "vmm/io_bus.h"
#include "vmm/stop_reason.h"
#include "vmm/vcpu_intercepts.h"
#include "vmm/vcpu_thread.h"
#include "vmm/x86/boot_setup.h"

namespace glassbox::vmm {

struct MachineConfig {
  std::filesystem::path kernel;                 // glassbox ELF kernel or Linux bzImage (detected)
  std::optional<std::filesystem::path> initrd;  // Linux only
  std::string cmdline;
  int cpus = 1;
  std::uint64_t memory_bytes = 128ULL << 20;
  int console_fd = 1;         // the serial console goes here
  int console_input_fd = -1;  // and its input comes from here (-1: none)
  std::string name = "glassbox";
};

enum class BootProtocol {
  kGlassboxElf,  // the bundled guest's contract (include/glassbox/boot/boot_info.h)
  kLinux,        // the x86 Linux boot protocol, 64-bit entry (loader/linux_loader.h)
};

// Values the vCPUs start from.
struct BootState {
  BootProtocol protocol = BootProtocol::kGlassboxElf;
  std::uint64_t entry_gpa = 0;
  std::uint64_t cr3 = 0;
  std::uint64_t boot_params_gpa = 0;  // Linux: RSI of vCPU 0
  x86::CpuidPersonality cpuid;
};

class Machine {
 public:
  // Checks the configuration against the host and the kernel image, then builds the VM.
  // Errors are one line that names the offending argument.
  static std::expected<std::unique_ptr<Machine>, std::string> create(const MachineConfig& config,
                                                                     const kvm::System& system,
                                                                     const kvm::HostQuirks& quirks);
  ~Machine();

  void start();
  // Which boot protocol the kernel image asked for (read from its first bytes).
  static std::expected<BootProtocol, std::string> detect_boot_protocol(
      const std::filesystem::path& kernel);
  // Blocks until a stop was requested and every vCPU thread has ended.
  StopRequest wait_for_stop();
  // Thread-safe; the first request decides the exit status. Kicks every vCPU.
  void request_stop(StopRequest request);
  bool stop_requested() const { return stop_requested_.load(std::memory_order_acquire); }
  // Readable (eventfd) once a stop was requested, for poll()-based main loops.
  int stop_fd() const { return stop_fd_.get(); }

  GuestMemory& memory() { return memory_; }
  Bus& io_bus() { return io_bus_; }
  Bus& mmio_bus() { return mmio_bus_; }
  Doorbell& doorbell() { return *doorbell_; }
  kvm::Vm& vm() { return vm_; }
  const kvm::HostQuirks& quirks() const { return quirks_; }
  const BootState& boot() const { return boot_; }
  const std::vector<kvm_cpuid_entry2>& supported_cpuid() const { return supported_cpuid_; }
  int vcpu_count() const { return static_cast<int>(vcpus_.size()); }
  VcpuThread& vcpu(int index) { return *vcpus_.at(static_cast<std::size_t>(index)); }
  const MachineConfig& config() const { return config_; }
  // Set once, before start(): the introspection server's per-entry hook (see VcpuEntryGate).
  void set_entry_gate(VcpuEntryGate* gate) { entry_gate_ = gate; }
  VcpuEntryGate* entry_gate() const { return entry_gate_; }
  // Set once, before start(): who decides at exits a tool may own (see VcpuIntercepts). Without
  // one, the VMM's defaults apply (breakpoints to the guest, MSR writes land, ...).
  void set_intercepts(VcpuIntercepts* intercepts) {
    intercepts_ = intercepts != nullptr ? intercepts : &default_intercepts_;
  }
  VcpuIntercepts& intercepts() const { return *intercepts_; }
  // WRMSR of these MSRs exits to user space (KVM_EXIT_X86_WRMSR) on every vCPU; an empty set
  // removes the filter. Any thread. False when the host has no MSR filter.
  bool set_msr_write_intercepts(const std::set<std::uint32_t>& msrs);

 private:
  Machine(MachineConfig config, kvm::Vm vm, GuestMemory memory, const kvm::HostQuirks& quirks);
  // Kernel, initrd, zero page, ACPI tables and boot page tables of a Linux guest.
  std::expected<void, std::string> load_linux();

  MachineConfig config_;
  kvm::Vm vm_;
  GuestMemory memory_;
  kvm::HostQuirks quirks_;
  BootState boot_;
  std::vector<kvm_cpuid_entry2> supported_cpuid_;
  Bus io_bus_{"port I/O"};
  Bus mmio_bus_{"MMIO"};
  std::shared_ptr<Serial8250> serial_;
  std::shared_ptr<Doorbell> doorbell_;
  std::vector<std::unique_ptr<VcpuThread>> vcpus_;
  // Feeds config_.console_input_fd to the UART until the VM stops.
  std::thread console_input_;
  void pump_console_input();
  VcpuEntryGate* entry_gate_ = nullptr;
  VcpuIntercepts default_intercepts_;
  VcpuIntercepts* intercepts_ = &default_intercepts_;
  // KVM_CAP_X86_USER_SPACE_MSR(FILTER) was enabled in create(): filtered WRMSRs reach us.
  bool msr_exits_ = false;
  // Serialises filter replacements so the last set asked for is the one KVM keeps.
  std::mutex msr_filter_mutex_;

  std::atomic<bool> stop_requested_{false};
  std::mutex stop_mutex_;
  std::optional<StopRequest> stop_;
  UniqueFd stop_fd_;
};

// Parses sizes such as "256M", "1G", "512MiB", "65536" (bytes).
std::optional<std::uint64_t> parse_size(const std::string& text);

}  // namespace glassbox::vmm
