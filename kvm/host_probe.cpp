#include "kvm/host_probe.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "kvm/long_mode.h"

namespace glassbox::kvm {

const char* to_string(Backend backend) {
  switch (backend) {
    case Backend::kIntelVmx:
      return "hardware (Intel VMX)";
    case Backend::kAmdSvm:
      return "hardware (AMD SVM)";
    case Backend::kPvm:
      return "KVM-PVM (software, CPL0 emulated)";
    case Backend::kUnknown:
      break;
  }
  return "unknown";
}

const char* to_string(BreakpointExit exit) {
  switch (exit) {
    case BreakpointExit::kDebugExit:
      return "KVM_EXIT_DEBUG";
    case BreakpointExit::kEmulationFailure:
      return "emulation failure with 0xCC";
    case BreakpointExit::kNoExit:
      return "no exit (delivered to the guest)";
  }
  return "?";
}

const char* to_string(BreakpointReinjection rule) {
  return rule == BreakpointReinjection::kRipAtInt3 ? "inject with RIP at the INT3"
                                                   : "advance RIP past the INT3, then inject";
}

std::string HostQuirks::describe() const {
  std::ostringstream s;
  s << "backend: " << to_string(backend) << "\n"
    << "guest #BP reaches the VMM as: " << to_string(breakpoint_exit) << "\n"
    << "#BP re-injection: " << to_string(reinjection) << "\n"
    << "VMCALL reaches the VMM: " << (vmcall_reaches_vmm ? "yes" : "no (doorbell port only)")
    << "\n"
    << "sync regs: " << (sync_regs ? "yes" : "no")
    << ", MSR filter: " << (msr_filter ? "yes" : "no")
    << ", exception payload: " << (exception_payload ? "yes" : "no")
    << ", exit on emulation failure: " << (exit_on_emulation_failure ? "yes" : "no") << "\n"
    << "max vCPUs per VM: " << max_vcpus << "\n";
  return s.str();
}

std::string HostQuirks::to_json() const {
  std::ostringstream s;
  auto b = [](bool v) { return v ? "true" : "false"; };
  s << "{\"backend\":\"" << to_string(backend) << "\",\"breakpoint_exit\":\""
    << to_string(breakpoint_exit) << "\",\"breakpoint_reinjection\":\""
    << (reinjection == BreakpointReinjection::kRipAtInt3 ? "rip-at-int3" : "rip-after-int3")
    << "\",\"vmcall_reaches_vmm\":" << b(vmcall_reaches_vmm) << ",\"sync_regs\":" << b(sync_regs)
    << ",\"msr_filter\":" << b(msr_filter) << ",\"exception_payload\":" << b(exception_payload)
    << ",\"exit_on_emulation_failure\":" << b(exit_on_emulation_failure)
    << ",\"max_vcpus\":" << max_vcpus << "}";
  return s.str();
}

namespace {

Backend detect_backend() {
  // The module that provides /dev/kvm names the backend; /proc/cpuinfo flags back it up.
  namespace fs = std::filesystem;
  if (fs::exists("/sys/module/kvm_pvm")) return Backend::kPvm;
  if (fs::exists("/sys/module/kvm_intel")) return Backend::kIntelVmx;
  if (fs::exists("/sys/module/kvm_amd")) return Backend::kAmdSvm;
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    if (line.find(" vmx") != std::string::npos) return Backend::kIntelVmx;
    if (line.find(" svm") != std::string::npos) return Backend::kAmdSvm;
    break;
  }
  return Backend::kUnknown;
}

struct Munmap {
  std::size_t size;
  void operator()(std::uint8_t* p) const { munmap(p, size); }
};

// Scratch guest layout (GPA): GDT 0x6000, code 0x1000, #BP handler 0x1100, IDT 0x3000,
// stack top 0x5000, page tables from 0x8000. One 2 MiB slot is enough.
constexpr std::uint64_t kScratchSize = 2 << 20;
constexpr std::uint64_t kCode = 0x1000, kHandler = 0x1100, kIdt = 0x3000, kStack = 0x5000;
constexpr std::uint16_t kReportPort = 0xe0;

struct ProbeResult {
  BreakpointExit exit = BreakpointExit::kDebugExit;
  BreakpointReinjection reinjection = BreakpointReinjection::kRipAtInt3;
};

SysResult<ProbeResult> probe_breakpoints(const System& system) {
  auto vm = system.create_vm();
  if (!vm) return std::unexpected(vm.error());
  void* raw =
      mmap(nullptr, kScratchSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return sys_error("mmap scratch guest memory");
  std::unique_ptr<std::uint8_t, Munmap> mem(static_cast<std::uint8_t*>(raw), Munmap{kScratchSize});
  std::span<std::uint8_t> memory(mem.get(), kScratchSize);
  if (auto r = vm->set_user_memory_region(0, 0, kScratchSize, mem.get()); !r) {
    return std::unexpected(r.error());
  }

  // A page-table tree for 1 GiB needs 4 pages at 0x8000; the scratch slot covers only 2 MiB,
  // which is all the guest touches.
  const std::uint64_t cr3 = long_mode::write_identity_page_tables(
      std::span<std::uint8_t>(mem.get(), kScratchSize), 0x8000, 1ULL << 30);
  long_mode::write_gdt(memory.subspan(0x6000, 24));
  memory[kCode] = 0xcc;  // int3
  const std::uint8_t handler[] = {
      0x48, 0x8b,        0x04, 0x24,  // mov (%rsp), %rax   ; saved RIP of the #BP frame
      0xe7, kReportPort,              // out %eax, $0xe0
      0xf4,                           // hlt
      0xeb, 0xfd,                     // jmp .-1
  };
  std::memcpy(memory.data() + kHandler, handler, sizeof handler);
  std::uint8_t gate[16] = {};
  gate[0] = kHandler & 0xff;
  gate[1] = (kHandler >> 8) & 0xff;
  gate[2] = long_mode::kCodeSelector;
  gate[5] = 0x8e;  // present, DPL0, 64-bit interrupt gate
  std::memcpy(memory.data() + kIdt + 3 * 16, gate, sizeof gate);

  auto vcpu = vm->create_vcpu(0);
  if (!vcpu) return std::unexpected(vcpu.error());
  auto cpuid = system.supported_cpuid();
  if (!cpuid) return std::unexpected(cpuid.error());
  if (auto r = vcpu->set_cpuid(*cpuid); !r) return std::unexpected(r.error());
  auto sregs = vcpu->get_sregs();
  if (!sregs) return std::unexpected(sregs.error());
  long_mode::set_long_mode_sregs(*sregs, 0x6000, cr3);
  sregs->idt.base = kIdt;
  sregs->idt.limit = 256 * 16 - 1;
  if (auto r = vcpu->set_sregs(*sregs); !r) return std::unexpected(r.error());
  kvm_regs regs{};
  regs.rip = kCode;
  regs.rsp = kStack;
  regs.rflags = 2;
  if (auto r = vcpu->set_regs(regs); !r) return std::unexpected(r.error());
  kvm_guest_debug debug{};
  debug.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP;
  if (auto r = vcpu->set_guest_debug(debug); !r) return std::unexpected(r.error());

  ProbeResult result;
  auto run_to_exit = [&]() -> SysResult<std::uint32_t> {
    for (int attempts = 0; attempts < 100; ++attempts) {
      auto outcome = vcpu->run_once();
      if (!outcome) return std::unexpected(outcome.error());
      if (*outcome == Vcpu::RunOutcome::kExit) return vcpu->run()->exit_reason;
    }
    return sys_error("KVM_RUN (probe guest kept being interrupted)", EINTR);
  };

  auto exit = run_to_exit();
  if (!exit) return std::unexpected(exit.error());
  kvm_run* run = vcpu->run();
  if (*exit == KVM_EXIT_DEBUG && run->debug.arch.exception == 3) {
    result.exit = BreakpointExit::kDebugExit;
  } else if (*exit == KVM_EXIT_INTERNAL_ERROR &&
             run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION) {
    result.exit = BreakpointExit::kEmulationFailure;
  } else if (*exit == KVM_EXIT_IO && run->io.port == kReportPort) {
    // The INT3 reached the guest handler without an exit: nothing to re-inject.
    result.exit = BreakpointExit::kNoExit;
    result.reinjection = BreakpointReinjection::kRipAtInt3;
    return result;
  } else {
    return sys_error("host probe: unexpected exit " + std::to_string(*exit) + " for INT3", EPROTO);
  }

  // Hand the #BP to the guest with RIP left at the INT3 and see which return address its
  // handler receives: INT3+1 means the host computes it (hardware), INT3 means we must advance.
  debug.control = 0;
  if (auto r = vcpu->set_guest_debug(debug); !r) return std::unexpected(r.error());
  auto events = vcpu->get_events();
  if (!events) return std::unexpected(events.error());
  events->exception.injected = 1;
  events->exception.nr = 3;
  events->exception.has_error_code = 0;
  events->exception.pending = 0;
  events->flags = 0;
  if (auto r = vcpu->set_events(*events); !r) return std::unexpected(r.error());
  exit = run_to_exit();
  if (!exit) return std::unexpected(exit.error());
  if (*exit != KVM_EXIT_IO || run->io.port != kReportPort) {
    return sys_error("host probe: #BP re-injection ended with exit " + std::to_string(*exit),
                     EPROTO);
  }
  std::uint32_t saved_rip = 0;
  std::memcpy(&saved_rip, reinterpret_cast<std::uint8_t*>(run) + run->io.data_offset, 4);
  result.reinjection = saved_rip == kCode + 1 ? BreakpointReinjection::kRipAtInt3
                                              : BreakpointReinjection::kRipAfterInt3;
  return result;
}

}  // namespace

SysResult<HostQuirks> probe_host(const System& system) {
  HostQuirks q;
  q.backend = detect_backend();
  q.sync_regs = (system.check_extension(KVM_CAP_SYNC_REGS) &
                 (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS)) != 0;
  q.msr_filter = system.check_extension(KVM_CAP_X86_MSR_FILTER) != 0;
  q.exception_payload = system.check_extension(KVM_CAP_EXCEPTION_PAYLOAD) != 0;
  q.exit_on_emulation_failure = system.check_extension(KVM_CAP_EXIT_ON_EMULATION_FAILURE) != 0;
  q.max_vcpus = system.max_vcpus();
  // VMCALL reaches user space only through the Xen hypercall intercept, and only hardware KVM
  // may execute it safely (on KVM-PVM it hangs the vCPU).
  const int xen = system.check_extension(KVM_CAP_XEN_HVM);
  q.vmcall_reaches_vmm = (xen & KVM_XEN_HVM_CONFIG_INTERCEPT_HCALL) != 0 &&
                         (q.backend == Backend::kIntelVmx || q.backend == Backend::kAmdSvm);
  auto bp = probe_breakpoints(system);
  if (!bp) return std::unexpected(bp.error());
  q.breakpoint_exit = bp->exit;
  q.reinjection = bp->reinjection;
  return q;
}

}  // namespace glassbox::kvm
