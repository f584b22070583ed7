// How the exits a tool may own become KVMI events (spec/kvmi-v7.md §3.4, notes/kvm-backends.md
// §13). The server installs one SessionIntercepts on the machine (vmm::VcpuIntercepts); at each
// such exit it finds the attached session and, if the tool enabled the event on that vCPU, raises
// the event and turns the tool's answer into what the VMM does next. With no tool attached, or the
// event not enabled, the VMM's defaults apply.
//
// One file per kind of exit:
//   intercept_breakpoint.cpp  BREAKPOINT, SINGLESTEP, HYPERCALL, and the per-vCPU guest debug
//   intercept_msr.cpp         MSR (the VM-wide MSR filter built from every vCPU's tracked MSRs)
//   intercept_page.cpp        PF (VM_SET_PAGE_ACCESS restrictions enforced with memory slots)
#pragma once

#include <functional>
#include <memory>

#include "introspection/session.h"
#include "vmm/vcpu_intercepts.h"

namespace glassbox::introspection {

class SessionIntercepts final : public vmm::VcpuIntercepts {
 public:
  // Returns the attached session, or null.
  using SessionSource = std::function<std::shared_ptr<Session>()>;
  explicit SessionIntercepts(SessionSource current) : current_(std::move(current)) {}

  vmm::BreakpointVerdict on_breakpoint(vmm::VcpuThread& vcpu, std::uint8_t insn_len) override;
  std::uint64_t on_hypercall(vmm::VcpuThread& vcpu) override;
  void on_single_step(vmm::VcpuThread& vcpu, bool failed) override;
  std::optional<std::uint64_t> on_msr_write(vmm::VcpuThread& vcpu, std::uint32_t msr,
                                            std::uint64_t value) override;
  vmm::RamAccessVerdict on_ram_access(vmm::VcpuThread& vcpu, vmm::RamAccess& access) override;
  bool on_fetch_fault(vmm::VcpuThread& vcpu) override;
  bool on_emulation_failure(vmm::VcpuThread& vcpu, std::span<const std::uint8_t> insn) override;

 private:
  // The attached, open session if the tool enabled `event` on this vCPU; null otherwise.
  std::shared_ptr<Session> session_for(vmm::VcpuThread& vcpu, kvmi::EventId event) const;

  SessionSource current_;
};

// ---- Set-up and undo of the KVM mechanisms behind the events (vCPU thread, in jobs) ----

// VCPU_CONTROL_EVENTS / VCPU_CONTROL_SINGLESTEP changed what this vCPU intercepts: bring its
// guest debug flags in line (intercept_breakpoint.cpp).
void apply_vcpu_debug(vmm::VcpuThread& vcpu, const VcpuIntrospection& state);

// VCPU_CONTROL_MSR changed a vCPU's tracked MSRs: rebuild the VM-wide write filter from every
// vCPU's set (intercept_msr.cpp). Returns false when KVM refused the filter.
bool apply_msr_intercepts(Session& session);
// Removes the filter (session end); serialized with apply_msr_intercepts. The session must be
// closed already, so no later apply reinstalls it.
void clear_msr_intercepts(Session& session);

// The session ended (tool gone or unhooked): every interception it set up is undone — the MSR
// filter, the page restrictions — so the guest runs on unchanged (spec §5.5). The per-vCPU guest
// debug flags are reset by release_vcpus() on each vCPU's own thread.
void undo_vm_interceptions(Session& session);

}  // namespace glassbox::introspection
