#include "introspection/machine_target.h"

#include "introspection/memory_target.h"
#include "vmm/machine.h"

namespace glassbox::introspection {

HostFacts host_facts_from(const kvm::HostQuirks& quirks) {
  HostFacts facts;
  // v7 reports single-step only on VMX (spec §2.3.1). KVM-PVM single-steps CPL0 code only
  // (notes/kvm-backends.md §3), which is not what a tool asking for the feature expects.
  // Guest debug single-step works at every CPL on hardware KVM (VMX and SVM).
  const bool hardware =
      quirks.backend == kvm::Backend::kIntelVmx || quirks.backend == kvm::Backend::kAmdSvm;
  facts.singlestep = hardware;
  facts.can_singlestep = hardware || quirks.backend == kvm::Backend::kPvm;
  facts.msr_filter = quirks.msr_filter;
  facts.can_intercept_breakpoint = quirks.breakpoint_exit != kvm::BreakpointExit::kNoExit;
  // CR, XSETBV and descriptor exits never reach user space on stock KVM (spec §P2).
  facts.can_intercept_cr = false;
  facts.can_intercept_xsetbv = false;
  facts.can_intercept_descriptor = false;
  return facts;
}

namespace {

// Guest memory as for any GuestMemory, plus the machine's vCPU threads for vCPU jobs.
class MachineTarget final : public GuestMemoryTarget {
 public:
  explicit MachineTarget(vmm::Machine& machine)
      : GuestMemoryTarget(machine.memory(), static_cast<std::uint32_t>(machine.vcpu_count()),
                          host_facts_from(machine.quirks())),
        machine_(machine) {}

  vmm::VcpuThread* vcpu_thread(std::uint32_t index) override {
    if (index >= static_cast<std::uint32_t>(machine_.vcpu_count())) return nullptr;
    return &machine_.vcpu(static_cast<int>(index));
  }

  int set_page_access(std::uint64_t gfn, std::uint8_t access) override {
    return machine_.memory().set_page_access(machine_.vm(), gfn, access);
  }
  std::uint8_t page_access(std::uint64_t gfn) const override {
    return machine_.memory().page_access(gfn);
  }
  void clear_page_access() override { machine_.memory().clear_page_access(machine_.vm()); }

  bool set_msr_write_intercepts(const std::set<std::uint32_t>& msrs) override {
    return machine_.set_msr_write_intercepts(msrs);
  }

 private:
  vmm::Machine& machine_;
};

}  // namespace

std::unique_ptr<VmTarget> make_machine_target(vmm::Machine& machine) {
  return std::make_unique<MachineTarget>(machine);
}

}  // namespace glassbox::introspection
