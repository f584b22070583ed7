// KVMI_EVENT_BREAKPOINT, KVMI_EVENT_SINGLESTEP and KVMI_EVENT_HYPERCALL (spec/kvmi-v7.md §3.4.3,
// §3.4.4, §3.4.11) and the per-vCPU guest debug flags behind the first two.
//
// How each reaches the VMM differs per host (notes/kvm-backends.md §2, §3, §5): a #BP is a
// KVM_EXIT_DEBUG on hardware KVM (with USE_SW_BP) and an emulation failure with byte 0xCC on
// KVM-PVM (CPL0 only); a step is a KVM_EXIT_DEBUG with DR6.BS; the hypercall is the doorbell OUT
// everywhere and an intercepted VMCALL where the Xen intercept exists. vmm::VcpuThread sorts that
// out; here each becomes an event and the tool's answer becomes the VMM's next step.
#include <linux/kvm.h>

#include <spdlog/spdlog.h>

#include "glassbox/kvmi/errors.h"
#include "glassbox/kvmi/events.h"
#include "glassbox/kvmi/messages.h"
#include "introspection/intercepts.h"
#include "introspection/vcpu_events.h"
#include "vmm/machine.h"
#include "vmm/vcpu_thread.h"
#include "vmm/x86/page_walk.h"

namespace glassbox::introspection {

namespace {

constexpr std::uint64_t kCr4La57 = 1u << 12;

std::uint64_t gpa_of_rip(vmm::VcpuThread& vcpu) {
  const auto& sregs = vcpu.sregs();
  auto t = vmm::x86::translate(vcpu.machine().memory(), sregs.cr3, sregs.cs.base + vcpu.regs().rip,
                               (sregs.cr4 & kCr4La57) != 0);
  return t ? t->gpa : kvmi::kInvalidGpa;
}

}  // namespace

vmm::BreakpointVerdict SessionIntercepts::on_breakpoint(vmm::VcpuThread& vcpu,
                                                        std::uint8_t insn_len) {
  auto session = session_for(vcpu, kvmi::EventId::Breakpoint);
  if (!session) return vmm::BreakpointVerdict::kGuest;  // not the tool's: the guest's own #BP
  kvmi::EventBreakpoint payload{};
  payload.gpa = gpa_of_rip(vcpu);
  payload.insn_len = insn_len;
  const EventOutcome outcome =
      raise_event(vcpu, *session, kvmi::EventId::Breakpoint, bytes_of(payload));
  switch (outcome.action) {
    case kvmi::EventAction::Retry:
      // The tool's own breakpoint: it moved RIP past it or restored the original byte.
      return vmm::BreakpointVerdict::kHandled;
    case kvmi::EventAction::Crash:
      return vmm::BreakpointVerdict::kHandled;  // the VM is stopping
    default:
      // CONTINUE (or no answer): the guest gets its #BP (spec §3.4.4).
      return vmm::BreakpointVerdict::kGuest;
  }
}

void SessionIntercepts::on_single_step(vmm::VcpuThread& vcpu, bool failed) {
  auto session = session_for(vcpu, kvmi::EventId::Singlestep);
  if (!session) return;
  kvmi::EventSinglestep payload{};
  payload.failed = failed ? 1 : 0;
  (void)raise_event(vcpu, *session, kvmi::EventId::Singlestep, bytes_of(payload));
}

std::uint64_t SessionIntercepts::on_hypercall(vmm::VcpuThread& vcpu) {
  constexpr auto kNotDelivered = static_cast<std::uint64_t>(kvmi::Errno::NoSys);  // -KVM_ENOSYS
  // Only the KVMI call: RAX = 34 (KVM_HC_XEN_HVM_OP), RDI = 24 in 64-bit mode, else EBX = 24.
  const auto& regs = vcpu.regs();
  const bool long_mode = vcpu_mode(vcpu.sregs()) == 8;
  const std::uint64_t subfunction = long_mode ? regs.rdi : (regs.rbx & 0xffffffffu);
  if ((regs.rax & (long_mode ? ~0ull : 0xffffffffull)) != 34 || subfunction != 24) {
    return kNotDelivered;
  }
  auto session = session_for(vcpu, kvmi::EventId::Hypercall);
  if (!session) return kNotDelivered;
  (void)raise_event(vcpu, *session, kvmi::EventId::Hypercall);
  return 0;  // delivered (spec §3.4.3), whatever the answer
}

void apply_vcpu_debug(vmm::VcpuThread& vcpu, const VcpuIntrospection& state) {
  std::uint32_t flags = 0;
  // Hardware KVM exits on #BP only with USE_SW_BP; KVM-PVM hands every CPL0 INT3 over anyway.
  if (state.event_enabled(kvmi::EventId::Breakpoint)) flags |= KVM_GUESTDBG_USE_SW_BP;
  // While stepping, no interrupt is injected (spec §2.3.21): an interrupt taken mid-step would
  // save the stepping TF in the guest's frame and hand the guest a stray #DB later.
  if (state.singlestep) flags |= KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ;
  if (auto r = vcpu.set_guest_debug_flags(flags); !r) {
    spdlog::warn("introspection: vCPU {}: {}", vcpu.index(), r.error().message());
  }
}

}  // namespace glassbox::introspection
