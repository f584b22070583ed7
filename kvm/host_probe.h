// What kind of KVM this host has and how the mechanisms glassbox relies on behave on it.
//
// Two kinds matter (notes/kvm-backends.md): hardware KVM (VMX/SVM), where a guest #BP arrives as
// KVM_EXIT_DEBUG and is re-injected with RIP left at the INT3, and KVM-PVM (software), where an
// INT3 at CPL0 comes back as an emulation failure with byte 0xCC and must be re-injected with RIP
// already past it, and where VMCALL at CPL0 hangs the vCPU. The breakpoint behaviour is measured
// on a scratch VM; the rest is read from facts the kernel exposes (loaded modules, capabilities).
#pragma once

#include <string>

#include "kvm/error.h"
#include "kvm/system.h"

namespace glassbox::kvm {

enum class Backend { kIntelVmx, kAmdSvm, kPvm, kUnknown };

enum class BreakpointExit {
  kDebugExit,         // KVM_EXIT_DEBUG with exception 3 (hardware KVM)
  kEmulationFailure,  // KVM_EXIT_INTERNAL_ERROR / EMULATION with insn byte 0xCC (KVM-PVM)
  kNoExit,            // INT3 went straight to the guest IDT even with USE_SW_BP
};

// Where RIP must point when a #BP is handed (back) to the guest with KVM_SET_VCPU_EVENTS so that
// the guest's handler sees the address after the INT3.
enum class BreakpointReinjection { kRipAtInt3, kRipAfterInt3 };

struct HostQuirks {
  Backend backend = Backend::kUnknown;
  BreakpointExit breakpoint_exit = BreakpointExit::kDebugExit;
  BreakpointReinjection reinjection = BreakpointReinjection::kRipAtInt3;
  // VMCALL/VMMCALL reaches user space (Xen hypercall intercept present on hardware KVM). When
  // false the guest must not use VMCALL for the KVMI hypercall: it is lost on hardware and hangs
  // the vCPU on KVM-PVM.
  bool vmcall_reaches_vmm = false;
  bool sync_regs = false;
  bool msr_filter = false;
  bool exception_payload = false;
  bool exit_on_emulation_failure = false;
  int max_vcpus = 1;

  std::string describe() const;  // one human-readable line per fact
  std::string to_json() const;
};

const char* to_string(Backend backend);
const char* to_string(BreakpointExit exit);
const char* to_string(BreakpointReinjection rule);

// Probes the host once (creates and destroys a small scratch VM; takes a few milliseconds).
SysResult<HostQuirks> probe_host(const System& system);

}  // namespace glassbox::kvm
